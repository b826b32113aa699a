"""Every conformance case resolves as SmartFrog's reference parser resolved it, or fails as it failed.

The cases live outside the repository (``../shared/conformance`` beside the checkout, or the folder
named by ``SD_ACTORS_CONFORMANCE``); see their README for the method used here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sd_actors.descriptions import (
    Apply,
    ComponentDescription,
    DescriptionError,
    Reference,
    parse_file,
    parse_string,
    value_kind,
)
from sd_actors.descriptions._names import canonical_function

REPOSITORY = Path(__file__).resolve().parents[2]
CONFORMANCE = Path(os.environ.get("SD_ACTORS_CONFORMANCE", REPOSITORY.parent / "shared" / "conformance"))

# Deliberate deviations from the reference parser, case by case, with the reason (also listed in
# descriptions/README.md). A deviating case is still run: it must give sd-actors' documented answer.
# Each deviation says what sd-actors does instead: "accepts" (resolves where SmartFrog failed),
# "rejects" (raises a DescriptionError where SmartFrog resolved) or "differs" (resolves to another tree).
_INCLUDE_BESIDE = ("sd-actors looks for an #include beside the including file first (then -I folders, then "
                   "its library); SmartFrog looked only on its class path and did not find the file")
DEVIATIONS: dict[str, tuple[str, str]] = {
    "micro/m01_basic_values.sf": ("differs", "a decimal without suffix (1.5) is read as 1.5; SmartFrog gives 1.0"),
    "micro/m01b_float_exponent.sf": ("accepts", "2e3 is read as 2000.0; SmartFrog chops the 3 and fails"),
    "micro/m01c_float_leading_dot.sf": ("accepts", ".5 is read as 0.5; SmartFrog chops the 5 and fails"),
    "micro/m01d_float_forms.sf": ("differs", "0.25 is read as 0.25; SmartFrog chops it to 0.2"),
    "micro/m07_operators.sf": ("differs", '("" ++ 1.5) gives "1.5"; SmartFrog reads 1.5 as 1.0 and gives "1.0"'),
    "herry/test/herry3.sf": ("accepts", _INCLUDE_BESIDE),
    "hp/org/smartfrog/test/system/compiler/tcp41.sf": ("accepts", _INCLUDE_BESIDE),
    "hp/org/smartfrog/test/system/compiler/test1.sf": ("accepts", _INCLUDE_BESIDE),
    "hp/org/smartfrog/test/system/assertions/testcompounds/testFailureWrongMessageNested.sf": (
        "rejects",
        (
            "CONSTANT names a static field of SmartFrog's Java test classes "
            "(TestCompoundImpl.TERMINATION_MESSAGE_MISMATCH); sd-actors has no Java classes and says so"
        ),
    ),
}


# Values that differ from run to run (random numbers, today's date): compared by kind only.
NONDETERMINISTIC: dict[str, set[str]] = {
    "hp/org/smartfrog/test/system/functions/tcp15.sf": {"sfConfig:throw1", "sfConfig:throw2"},
    "hp/org/smartfrog/test/system/functions/tcp17.sf": {"sfConfig:today"},
}


def _cases() -> list[tuple[str, Path]]:
    if not (CONFORMANCE / "cases").is_dir():
        return []
    found = []
    for path in sorted((CONFORMANCE / "cases").rglob("*.sf")):
        relative = path.relative_to(CONFORMANCE / "cases").as_posix()
        found.append((relative, path))
    return found


CASES = _cases()


def test_conformance_cases_are_present() -> None:
    assert CASES, (
        f"no conformance cases in {CONFORMANCE}: put SmartFrog's conformance folder at ../shared/conformance "
        "beside the checkout, or name it with SD_ACTORS_CONFORMANCE"
    )


def _include_dirs(relative: str, path: Path) -> list[Path]:
    dirs = [path.parent, CONFORMANCE / "lib"]
    if relative.startswith("hp/"):
        dirs.append(CONFORMANCE / "cases" / "hp")
    return dirs


@pytest.mark.parametrize(("relative", "path"), CASES, ids=[c[0] for c in CASES])
def test_case_resolves_as_the_reference_parser_resolved_it(relative: str, path: Path) -> None:
    expected_out = CONFORMANCE / "expected" / (relative + ".out")
    expected_err = CONFORMANCE / "expected" / (relative + ".err")
    deviation = DEVIATIONS.get(relative)
    dirs = _include_dirs(relative, path)

    outcome = deviation[0] if deviation else None
    if outcome == "accepts":
        parse_file(path, include_dirs=dirs)
        return
    if outcome == "rejects" or (expected_err.exists() and not expected_out.exists()):
        with pytest.raises(DescriptionError):
            parse_file(path, include_dirs=dirs)
        return

    actual = parse_file(path, include_dirs=dirs)
    # The reference printer writes CONSTANT names unquoted, even "" and "...": quote them to re-read.
    printed = re.sub(r"CONSTANT (\.*);", r'CONSTANT "\1";', expected_out.read_text())
    expected = parse_string("sfConfig extends {\n" + printed + "\n}\n",
                            filename=str(expected_out), include_dirs=dirs)
    loose = NONDETERMINISTIC.get(relative, set())
    differences = [d for d in _differences(expected, actual, "sfConfig") if d.split(": ")[0] not in loose]
    if outcome == "differs":
        assert differences, f"{relative} is listed as a deviation but now matches: remove it from DEVIATIONS"
        return
    assert not differences, "\n".join(differences[:10])


_UNIQUE = re.compile(r"unique\d+")


def _differences(expected: object, actual: object, where: str):  # type: ignore[no-untyped-def]
    if isinstance(expected, ComponentDescription) and isinstance(actual, ComponentDescription):
        if expected.eager != actual.eager:
            yield f"{where}: eager {actual.eager}, expected {expected.eager}"
        e_keys, a_keys = expected.keys(), actual.keys()
        if [k if not _UNIQUE.fullmatch(k) else "uniqueN" for k in e_keys] != \
                [k if not _UNIQUE.fullmatch(k) else "uniqueN" for k in a_keys]:
            yield f"{where}: attributes {a_keys}, expected {e_keys}"
            return
        for e_key, a_key in zip(e_keys, a_keys, strict=True):
            if expected.tags(e_key) != actual.tags(a_key):
                yield f"{where}:{e_key}: tags {sorted(actual.tags(a_key))}, expected {sorted(expected.tags(e_key))}"
            yield from _differences(expected[e_key], actual[a_key], f"{where}:{e_key}")
        return
    if isinstance(expected, Apply) and isinstance(actual, Apply):
        if (expected.kind, expected.lazy) != (actual.kind, actual.lazy):
            yield f"{where}: {actual.kind} lazy={actual.lazy}, expected {expected.kind} lazy={expected.lazy}"
        yield from _differences(expected.body, actual.body, where + "/" + expected.kind)
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            yield f"{where}: {actual!r}, expected {expected!r}"
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from _differences(e, a, f"{where}[{i}]")
        return
    if isinstance(expected, str) and isinstance(actual, str) and where.endswith("sfFunctionClass"):
        if (canonical_function(expected) or expected) != (canonical_function(actual) or actual):
            yield f"{where}: {actual!r}, expected {expected!r}"
        return
    if isinstance(expected, Reference) and isinstance(actual, Reference):
        if expected != actual:
            yield f"{where}: {actual}, expected {expected}"
        return
    if value_kind(expected) != value_kind(actual) or expected != actual:
        if value_kind(expected) == value_kind(actual):
            yield f"{where}: {actual!r}, expected {expected!r}"
            return
        yield f"{where}: {value_kind(actual)} {actual!r}, expected {value_kind(expected)} {expected!r}"
