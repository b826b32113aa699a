"""A resolved description printed with ``to_sf`` re-parses to the same tree, kinds included.

The property is checked on generated descriptions shaped like resolved ones (no links left except
LAZY and DATA references, no functions left except LAZY ones), on the example descriptions and on
a sample of the conformance cases.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sd_actors.descriptions import (
    TBD,
    Apply,
    ComponentDescription,
    DescriptionError,
    Double,
    Long,
    Reference,
    RefPart,
    parse_file,
    parse_string,
    to_sf,
    value_kind,
)

EXAMPLES: Final = Path(str(importlib.resources.files("sd_actors.descriptions") / "examples"))
REPOSITORY: Final = Path(__file__).resolve().parents[2]
CONFORMANCE: Final = Path(os.environ.get("SD_ACTORS_CONFORMANCE", REPOSITORY.parent / "shared" / "conformance"))

ROUND_TRIP: Final = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

KEYWORDS: Final = (
    "extends", "true", "false", "LAZY", "DATA", "NULL", "TBD", "ROOT", "PARENT", "THIS", "HERE", "ATTRIB",
    "PROPERTY", "IPROPERTY", "ENVPROPERTY", "IENVPROPERTY", "CONSTANT", "HOST", "PROCESS", "OPTIONAL", "APPLY",
    "ASSERT", "IF", "THEN", "ELSE", "FI", "SWITCH", "ENDSWITCH", "VAR",
)


def round_trip(config: ComponentDescription, include_dirs: Sequence[Path] = ()) -> ComponentDescription:
    return parse_string(to_sf(config), include_dirs=include_dirs)


# -------------------------------------------------------------------------------------------- names
# A WORD: a letter, then letters, digits and the special characters . _ - + @ # ~ $ % ^ &
WORDS: Final = st.from_regex(r"[A-Za-z_$\u00c0-\u00d6][A-Za-z0-9_$.\-+@#~%^&\u00e0-\u00f6]{0,10}", fullmatch=True)
# Anything else must be quoted by the printer: spaces, punctuation, keywords, unicode, escapes, "".
QUOTED_NAMES: Final = st.one_of(st.text(max_size=10), st.sampled_from(KEYWORDS), st.sampled_from(["--", "a:b", "1x"]))


def _usable_name(name: str) -> bool:
    # phase.* names turn a component into a function or a user phase when it is parsed again;
    # a resolved description never has them.
    return not name.startswith("phase.") and name != "phaseList"


NAMES: Final = st.one_of(WORDS, WORDS, QUOTED_NAMES).filter(_usable_name)
# sfTemp attributes are dropped by resolution, so a resolved description has none.
TAGS: Final = st.frozensets(st.one_of(st.sampled_from(["sfFinal", "sfLocal", "sfOverride"]), NAMES), max_size=3) \
    .filter(lambda tags: "sfTemp" not in tags)

# ------------------------------------------------------------------------------------------- values
INTEGERS: Final = st.integers(-(2**31), 2**31 - 1)
LONGS: Final = st.integers(-(2**63), 2**63 - 1).map(Long)
# Floats are single precision: quarters below 2**16 are exact in 32 bits and print exactly, so
# they survive whether a Float is kept in 64 or in 32 bits (see the xfail test for other values).
FLOATS: Final = st.integers(-(2**18), 2**18).map(lambda quarters: quarters / 4)
DOUBLES: Final = st.floats(allow_nan=False, allow_infinity=False).map(Double)
STRINGS: Final = st.one_of(
    st.text(max_size=20),
    st.text(alphabet='\\"\n\t\b\r\f\'#\x00\x01\x7f', max_size=10),
    st.text(alphabet=st.characters(min_codepoint=0x80), max_size=10),
)
SCALARS: Final = st.one_of(
    STRINGS, INTEGERS, LONGS, FLOATS, DOUBLES, st.booleans(), st.none(), st.binary(max_size=12),
)

NAMED_PART_KINDS: Final = ("PROPERTY", "IPROPERTY", "ENVPROPERTY", "IENVPROPERTY", "CONSTANT", "HOST")


@st.composite
def references(draw: st.DrawFn, *, data: bool | None = None) -> Reference:
    """A LAZY or DATA reference (the only references a resolved description keeps)."""
    parts: list[RefPart] = []
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["ATTRIB", "HERE", "ROOT", "PARENT", "THIS", "PROCESS", *NAMED_PART_KINDS]))
        if kind in ("ROOT", "PARENT", "THIS", "PROCESS"):
            parts.append(RefPart(kind))
        elif (kind == "ATTRIB" and index == 0) or (kind == "HERE" and index > 0):
            # Written as a bare name: it must be a WORD (quoted names: see the xfail test below).
            parts.append(RefPart(kind, draw(WORDS.filter(lambda w: w not in KEYWORDS))))
        else:
            parts.append(RefPart(kind, draw(NAMES)))
    is_data = draw(st.booleans()) if data is None else data
    if not draw(st.booleans()):
        return Reference(tuple(parts), lazy=not is_data, data=is_data)
    if not draw(st.booleans()):  # OPTIONAL without a default
        return Reference(tuple(parts), lazy=not is_data, data=is_data, optional=True)
    default = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3)))
    return Reference(tuple(parts), lazy=not is_data, data=is_data, optional=True, default=default)


VECTORS: Final = st.recursive(
    st.lists(st.one_of(SCALARS, references(data=True)), max_size=4),
    lambda children: st.lists(st.one_of(SCALARS, children), max_size=4),
    max_leaves=12,
)


def component(
    attributes: list[tuple[str, frozenset[str], object]], *, eager: bool = True
) -> ComponentDescription:
    cd = ComponentDescription(None, eager=eager)
    for name, tags, value in attributes:
        cd.set(name, value, tags=tags)
    return cd


def components(values: st.SearchStrategy[object]) -> st.SearchStrategy[ComponentDescription]:
    attributes = st.lists(st.tuples(NAMES, TAGS, values), max_size=5, unique_by=lambda attribute: attribute[0])
    return st.builds(component, attributes, eager=st.booleans())


@st.composite
def lazy_applies(draw: st.DrawFn) -> Apply:
    """A LAZY APPLY/ASSERT: a function left for run time (its arguments are LAZY references or literals)."""
    kind = draw(st.sampled_from(["APPLY", "ASSERT"]))
    body = component(draw(st.lists(st.tuples(NAMES, st.just(frozenset[str]()), st.one_of(SCALARS, references())),
                                   max_size=3, unique_by=lambda attribute: attribute[0])))
    function = "Sum" if kind == "APPLY" else "CheckAssertions"
    body.set("sfFunctionClass", f"org.smartfrog.sfcore.languages.sf.functions.{function}")
    return Apply(kind, body, lazy=True)


LEAVES: Final = st.one_of(SCALARS, VECTORS, references(), lazy_applies())
VALUES: Final = st.recursive(LEAVES, components, max_leaves=25)
CONFIGS: Final = components(VALUES)


# ---------------------------------------------------------------------------------------- properties
@ROUND_TRIP
@given(CONFIGS)
def test_a_resolved_description_prints_as_text_that_parses_back_to_the_same_tree(
    config: ComponentDescription,
) -> None:
    text = to_sf(config)

    again = parse_string(text)

    assert again == config, text


@settings(ROUND_TRIP, max_examples=100)
@given(CONFIGS)
def test_printing_a_reparsed_description_gives_the_same_text(config: ComponentDescription) -> None:
    text = to_sf(config)

    again = to_sf(parse_string(text))

    assert again == text


@settings(ROUND_TRIP, max_examples=100)
@given(SCALARS)
def test_every_value_kind_survives_the_round_trip(value: object) -> None:
    config = component([("value", frozenset(), value)])

    again = round_trip(config)

    assert value_kind(again["value"]) == value_kind(value)
    assert again == config


def test_equality_of_descriptions_compares_kinds_so_the_round_trip_test_can_see_them() -> None:
    integer, long, float_, double = (component([("v", frozenset(), v)]) for v in (1, Long(1), 1.0, Double(1.0)))

    assert integer != long
    assert float_ != double
    assert component([("v", frozenset(), True)]) != integer


# -------------------------------------------------------------------------------- known descriptions
EXAMPLE_NAMES: Final = sorted(path.name for path in EXAMPLES.glob("*.sf"))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_prints_as_text_that_parses_back_to_the_same_tree(name: str) -> None:
    config = parse_file(EXAMPLES / name)

    again = round_trip(config)

    assert again == config


def _conformance_sample() -> list[tuple[str, Path]]:
    """Every micro case (one language feature each) and every fourth of the others, in a fixed order."""
    cases = CONFORMANCE / "cases"
    if not cases.is_dir():
        return []
    found = sorted((path.relative_to(cases).as_posix(), path) for path in cases.rglob("*.sf"))
    accepted = [(relative, path) for relative, path in found
                if (CONFORMANCE / "expected" / (relative + ".out")).exists()]
    micro = [case for case in accepted if case[0].startswith("micro/")]
    others = [case for case in accepted if not case[0].startswith("micro/")]
    return micro + others[::4]


CONFORMANCE_SAMPLE: Final = _conformance_sample()


def _include_dirs(relative: str, path: Path) -> list[Path]:
    # As tests/descriptions/test_conformance.py: beside the case, the shared lib, and the hp tree.
    dirs = [path.parent, CONFORMANCE / "lib"]
    if relative.startswith("hp/"):
        dirs.append(CONFORMANCE / "cases" / "hp")
    return dirs


def test_the_conformance_sample_is_present() -> None:
    assert CONFORMANCE_SAMPLE, f"no conformance cases in {CONFORMANCE} (set SD_ACTORS_CONFORMANCE)"


@pytest.mark.parametrize(("relative", "path"), CONFORMANCE_SAMPLE, ids=[case[0] for case in CONFORMANCE_SAMPLE])
def test_a_resolved_conformance_case_prints_as_text_that_parses_back_to_the_same_tree(
    relative: str, path: Path
) -> None:
    dirs = _include_dirs(relative, path)
    try:
        config = parse_file(path, include_dirs=dirs)
    except DescriptionError:
        pytest.skip("sd-actors rejects this case (a listed deviation)")

    again = round_trip(config, include_dirs=dirs)

    assert again == config


# ------------------------------------------------------------------ values that need a special printing
@pytest.mark.parametrize("text", ['LAZY ATTRIB "a b"', 'LAZY a:HERE "b c"', 'DATA ATTRIB "LAZY"'],
                         ids=["ATTRIB first", "HERE later", "keyword name"])
def test_a_reference_through_a_quoted_name_survives_the_round_trip(text: str) -> None:
    config = parse_string(f"sfConfig extends {{\n  x {text};\n}}\n")

    again = round_trip(config)

    assert again == config


def test_a_float_with_many_digits_survives_the_round_trip() -> None:
    config = parse_string("sfConfig extends {\n  x 0.123456789f;\n}\n")

    again = round_trip(config)

    assert again == config


@pytest.mark.parametrize("expression", ["1e999D", "(1.0 / 0.0)", "(1e308D * 10.0D)", "(-1.0f / 0.0f)"])
def test_an_infinite_number_survives_the_round_trip(expression: str) -> None:
    config = parse_string(f"sfConfig extends {{\n  x {expression};\n}}\n")

    again = round_trip(config)

    assert again == config


def test_a_nan_float_survives_the_round_trip_as_a_nan_float() -> None:
    config = parse_string("sfConfig extends {\n  x (0.0 / 0.0);\n}\n")

    again = round_trip(config)

    value = again["x"]
    assert value_kind(value) == "Float"
    assert isinstance(value, float)
    assert math.isnan(value)


def test_a_vector_holding_a_component_survives_the_round_trip() -> None:
    config = parse_string("sfConfig extends {\n  c extends {\n    a 1;\n  }\n  x [c];\n}\n")

    again = round_trip(config)

    assert again == config


def test_a_tbd_inside_a_vector_survives_the_round_trip() -> None:
    config = component([("x", frozenset(), [TBD, 1])])

    again = round_trip(config)

    assert again == config
