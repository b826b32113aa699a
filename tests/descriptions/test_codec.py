"""A resolved description encoded with ``encode_description`` decodes to the tree its ``.sf`` text parses to.

The property is checked as the text round trip is (tests/descriptions/test_roundtrip.py): on
generated descriptions shaped like resolved ones, the examples, the library, the conformance cases
and generated pools. Whatever bytes a decoder is given, it returns a description or raises
UndecodableDescription saying what is wrong.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.resources
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgpack
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
    UndecodableDescription,
    UnsupportedEncodingVersion,
    decode_description,
    description_from,
    encode_description,
    parse_file,
    parse_root,
    parse_string,
    to_json_value,
    to_sf,
)
from tests.descriptions.test_roundtrip import CONFIGS, CONFORMANCE, EXAMPLES, SCALARS, component

LIBRARY: Final = Path(str(importlib.resources.files("sd_actors.descriptions") / "library"))
CODEC: Final = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


def nodes(cd: ComponentDescription) -> Iterator[ComponentDescription]:
    """``cd`` and every description inside it (in vectors and function bodies too), in order."""
    yield cd
    for value in cd.values():
        yield from _nodes_in(value)


def _nodes_in(value: object) -> Iterator[ComponentDescription]:
    if isinstance(value, ComponentDescription):
        yield from nodes(value)
    elif isinstance(value, Apply):
        yield from nodes(value.body)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes_in(item)


def parents(cd: ComponentDescription) -> list[int | None]:
    """Each description's parent, as its index in ``nodes(cd)`` (None for the top)."""
    index = {id(node): number for number, node in enumerate(nodes(cd))}
    return [None if node.parent is None else index.get(id(node.parent), -1) for node in nodes(cd)]


def assert_decodes_as_its_text_parses(config: ComponentDescription) -> None:
    text = to_sf(config)

    decoded = decode_description(encode_description(config))

    parsed = parse_string(text, filename="<sent>", use_library=False)
    assert to_sf(decoded) == text
    assert decoded == parsed
    assert to_json_value(decoded) == to_json_value(parsed)
    assert parents(decoded) == parents(parsed)


# ---------------------------------------------------------------------------------------- properties
@CODEC
@given(CONFIGS)
def test_a_resolved_description_decodes_to_the_tree_its_text_parses_to(config: ComponentDescription) -> None:
    assert_decodes_as_its_text_parses(config)


@CODEC
@given(SCALARS)
def test_every_value_kind_survives_encoding(value: object) -> None:
    config = component([("value", frozenset(), value)])

    decoded = decode_description(encode_description(config))

    assert type(decoded["value"]) is type(value)
    assert decoded == config


def test_the_same_description_always_encodes_to_the_same_bytes() -> None:
    config = parse_string('sfConfig extends {\n  [sfFinal, b, a, c] x 1;\n  [z, y] y 2;\n}\n')

    assert encode_description(config) == encode_description(parse_string(to_sf(config)))


@pytest.mark.parametrize("value", [math.inf, -math.inf, Double(math.inf), -0.0, Double(-0.0)],
                         ids=["inf", "-inf", "Double inf", "-0.0", "Double -0.0"])
def test_a_float_with_no_literal_survives_encoding_with_its_kind(value: float) -> None:
    config = component([("x", frozenset(), value)])

    decoded = decode_description(encode_description(config))

    assert to_sf(decoded) == to_sf(config)
    assert type(decoded["x"]) is type(value)
    assert math.copysign(1.0, decoded["x"]) == math.copysign(1.0, value)  # type: ignore[arg-type]


def test_a_nan_survives_encoding_as_a_nan_of_its_kind() -> None:
    config = component([("f", frozenset(), math.nan), ("d", frozenset(), Double(math.nan))])

    decoded = decode_description(encode_description(config))

    assert type(decoded["f"]) is float
    assert type(decoded["d"]) is Double
    assert math.isnan(decoded["f"])  # type: ignore[arg-type]
    assert math.isnan(decoded["d"])  # type: ignore[arg-type]


def test_an_optional_reference_keeps_a_null_default_apart_from_no_default() -> None:
    parts = (RefPart("ATTRIB", "a"),)
    config = component([("none", frozenset(), Reference(parts, lazy=True, optional=True)),
                        ("null", frozenset(), Reference(parts, lazy=True, optional=True, default=None))])

    decoded = decode_description(encode_description(config))

    assert decoded == config
    assert to_sf(decoded) == to_sf(config)


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    LARGE = 3


@pytest.mark.parametrize("value", [Colour.RED, Size.LARGE, [Colour.RED]], ids=["str enum", "int enum", "in a vector"])
def test_a_value_of_a_subclass_of_a_plain_kind_is_encoded_as_it_prints(value: object) -> None:
    config = component([("x", frozenset(), value)])

    decoded = decode_description(encode_description(config))

    assert to_sf(decoded) == to_sf(config)
    assert decoded == parse_string(to_sf(config))


@pytest.mark.parametrize("value", [(1, 2), {"a": 1}, object()], ids=["tuple", "dict", "object"])
def test_a_value_no_description_can_hold_is_not_encoded(value: object) -> None:
    config = component([("x", frozenset(), value)])

    with pytest.raises(TypeError, match=f"cannot encode a {type(value).__name__} in a description"):
        encode_description(config)


def test_a_description_holding_an_attribute_not_placed_yet_is_not_encoded(tmp_path: Path) -> None:
    config = parse_root(_write(tmp_path, "a extends { b extends { } }\na:b:c 1;\n"), phases=("type",))

    with pytest.raises(TypeError, match=r"attribute a:b:c is not placed yet"):
        encode_description(config)


# -------------------------------------------------------------------------------- known descriptions
@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.sf")))
def test_every_example_decodes_to_the_tree_its_text_parses_to(name: str) -> None:
    assert_decodes_as_its_text_parses(parse_file(EXAMPLES / name))


@pytest.mark.parametrize("include", sorted(path.relative_to(LIBRARY).as_posix() for path in LIBRARY.rglob("*.sf")))
def test_every_library_file_survives_encoding_with_its_templates(include: str) -> None:
    # The whole file, templates, schemas and functions included: more kinds than any sfConfig.
    # (Not resolved, its schemas are shared by the components that use them: parents differ.)
    root = parse_root(LIBRARY / include)

    decoded = decode_description(encode_description(root))

    assert to_sf(decoded) == to_sf(root)
    assert decoded == root


def _conformance_cases() -> list[tuple[str, Path]]:
    cases = CONFORMANCE / "cases"
    if not cases.is_dir():
        return []
    return sorted((path.relative_to(cases).as_posix(), path) for path in cases.rglob("*.sf")
                  if (CONFORMANCE / "expected" / (path.relative_to(cases).as_posix() + ".out")).exists())


CONFORMANCE_CASES: Final = _conformance_cases()


def test_the_conformance_cases_are_present() -> None:
    assert CONFORMANCE_CASES, f"no conformance cases in {CONFORMANCE} (set SD_ACTORS_CONFORMANCE)"


@pytest.mark.parametrize(("relative", "path"), CONFORMANCE_CASES, ids=[case[0] for case in CONFORMANCE_CASES])
def test_a_resolved_conformance_case_decodes_to_the_tree_its_text_parses_to(relative: str, path: Path) -> None:
    # As tests/descriptions/test_conformance.py: beside the case, the shared lib, and the hp tree.
    dirs = [path.parent, CONFORMANCE / "lib", *([CONFORMANCE / "cases" / "hp"] if relative.startswith("hp/") else [])]
    try:
        config = parse_file(path, include_dirs=dirs)
    except DescriptionError:
        pytest.skip("sd-actors rejects this case (a listed deviation)")

    assert_decodes_as_its_text_parses(config)


def pool_text(hosts: int, machines_per_host: int) -> str:
    """A pool like examples/pool.sf: per host a shell, a storage backend, machines linked LAZY to both."""
    lines = ['#include "ch/cern/openlab/smartdomains/components.sf"', "sfConfig extends Compound {"]
    for host in range(hosts):
        lines.append(f'  host{host} extends Compound {{ sfProcessHost "h{host}.example.org"; '
                     "shell extends BashShell; disks extends LoopbackStorageBackend { shell LAZY ATTRIB shell; }")
        lines.extend(f'    vm{vm} extends VM {{ domainName "h{host}-vm{vm}"; memory {256 + vm}; '
                     "storageBackend LAZY ATTRIB disks; }" for vm in range(machines_per_host))
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("hosts", "machines"), [(1, 1), (3, 7), (10, 100)], ids=["1x1", "3x7", "10x100"])
def test_a_generated_pool_decodes_to_the_tree_its_text_parses_to(hosts: int, machines: int) -> None:
    assert_decodes_as_its_text_parses(parse_string(pool_text(hosts, machines)))


def test_an_encoded_pool_is_smaller_than_its_text() -> None:
    config = parse_string(pool_text(10, 100))

    assert len(encode_description(config)) < len(to_sf(config).encode())


# --------------------------------------------------------------------------------------- bad input
SMALL: Final = parse_string('sfConfig extends {\n  a 1;\n  b [| 2L, 3.5D, "x" |];\n  c extends DATA { '
                            "d LAZY ATTRIB a; }\n  [sfFinal] e LAZY APPLY { sfFunctionClass \"Sum\"; a 1; b 2; }\n}\n")


def _document(component: object, *, version: object = 1) -> bytes:
    return msgpack.packb(["sd-actors description", version, component], use_bin_type=True)  # type: ignore[no-any-return]


def test_every_truncation_of_an_encoding_is_refused_as_cut_short() -> None:
    data = encode_description(SMALL)

    for length in range(len(data)):
        with pytest.raises(UndecodableDescription) as excinfo:
            decode_description(data[:length])

        assert "cut short" in str(excinfo.value)


def test_an_encoding_with_bytes_after_its_end_is_refused() -> None:
    with pytest.raises(UndecodableDescription, match="not msgpack"):
        decode_description(encode_description(SMALL) + b"\x00")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not msgpack"),
    (msgpack.packb({"a": 1}), "not an encoded description"),
    (msgpack.packb(["sd-actors journal", 1, []]), "not an encoded description"),
    (b"sfConfig extends { a 1; }", "not"),
], ids=["empty", "a map", "another format", "sf text"])
def test_bytes_that_are_not_an_encoded_description_are_refused_as_such(data: bytes, message: str) -> None:
    with pytest.raises(UndecodableDescription, match=message):
        decode_description(data)


@pytest.mark.parametrize("version", [2, 0, "1", None], ids=["newer", "zero", "a string", "none"])
def test_an_encoding_of_another_format_version_is_refused_naming_both_versions(version: object) -> None:
    data = _document([4, True, {}], version=version)

    with pytest.raises(UnsupportedEncodingVersion) as excinfo:
        decode_description(data)

    assert excinfo.value.version == version
    assert f"has format version {version!r}; this sd-actors reads version 1" in str(excinfo.value)


@pytest.mark.parametrize(("component", "message"), [
    ([4, True, {"a": {"b": 1}}], "damaged at a: expected a value, found {'b': 1}"),
    ([4, True, {"a": [9, 1]}], "damaged at a: unknown kind of value 9"),
    ([4, True, {"a": [True, 1]}], "damaged at a: expected a value, found [True, 1]"),
    ([4, True, {"a": []}], "damaged at a: expected a value, found []"),
    ([4, True, {"a": [1, "x"]}], "damaged at a: expected [1, int] for a Long"),
    ([4, True, {"a": [1, 2**63]}], "damaged at a: Long 9223372036854775808 is out of range"),
    ([4, True, {"a": 2**31}], "damaged at a: Integer 2147483648 is out of range"),
    ([4, True, {"a": [2, 1]}], "damaged at a: expected [2, float] for a Double"),
    ([4, True, {"a": [3, 1]}], "damaged at a: expected [3] for TBD"),
    ([4, True, {"a": [0, 1, [0, {}]]}], "damaged at a[1][0]: expected a value"),
    ([4, True, {"a": [4, True, {"b": [4, 1, {}]}]}], "damaged at a:b: a component's eager flag is 1"),
    ([4, True, {"a": [4, True, []]}], "damaged at a: a component's attributes are"),
    ([4, True, {"a": 1}, {"b": ["sfFinal"]}], "tags of 'b', which is not an attribute"),
    ([4, True, {"a": 1}, {"a": "sfFinal"}], "the tags of 'a' are 'sfFinal', not a list of names"),
    ([4, True, {"a": 1}, {"a": []}], "the tags of 'a' are"),
    ([4, True, {"a": 1}, [1]], "a component's tags are"),
    ([4, True, {"a": [5, 1, ["ATTRIB"]]}], "damaged at a: reference parts must be pairs"),
    ([4, True, {"a": [5, 1, ["NOWHERE", "b"]]}], "damaged at a: unknown reference part 'NOWHERE' 'b'"),
    ([4, True, {"a": [5, 1, ["ROOT", "b"]]}], "damaged at a: unknown reference part 'ROOT' 'b'"),
    ([4, True, {"a": [5, 1, ["ATTRIB", None]]}], "damaged at a: unknown reference part 'ATTRIB' None"),
    ([4, True, {"a": [5, 8, ["ROOT", None]]}], "damaged at a: unknown reference flags 8"),
    ([4, True, {"a": [5, 1, ["ROOT", None], 1]}], "a reference that is not OPTIONAL has a default"),
    ([4, True, {"a": [5, "LAZY", ["ROOT", None]]}], "expected [5, flags, parts]"),
    ([4, True, {"a": [6, "CALL", True, [4, True, {}]]}], "expected [6, 'APPLY' or 'ASSERT', lazy, body]"),
    ([4, True, {"a": [6, "APPLY", True, {}]}], "damaged at a: expected a component, found {}"),
    ([0, 1], "damaged at the top: expected a component"),
    ([4, True], "damaged at the top: expected a component"),
], ids=lambda case: case if isinstance(case, str) else None)
def test_a_damaged_encoding_is_refused_saying_what_is_wrong_and_where(component: object, message: str) -> None:
    with pytest.raises(UndecodableDescription) as excinfo:
        decode_description(_document(component))

    assert message in str(excinfo.value)


def test_an_attribute_name_that_is_not_a_string_is_refused() -> None:
    data = _document([4, True, {b"a": 1}])

    with pytest.raises(UndecodableDescription, match="an attribute name is b'a', not a string"):
        decode_description(data)


def test_an_encoding_nested_too_deeply_is_refused() -> None:
    # msgpack.packb refuses to make it: 2,000 components, each the only attribute "a" of the one above.
    data = b"\x93\xb5sd-actors description\x01" + b"\x93\x04\xc3\x81\xa1a" * 2000 + b"\x93\x04\xc3\x80"

    with pytest.raises(UndecodableDescription, match="nested too deeply"):
        decode_description(data)


MSGPACK_VALUES: Final = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=5),
              st.binary(max_size=5), st.sampled_from([0, 1, 2, 3, 4, 5, 6, "ROOT", "ATTRIB", "APPLY"])),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=3), children,
                                                                                max_size=4)),
    max_leaves=30,
)


@CODEC
@given(st.one_of(MSGPACK_VALUES, st.builds(lambda attributes: [4, True, attributes],
                                           st.dictionaries(st.text(max_size=3), MSGPACK_VALUES, max_size=4))))
def test_any_msgpack_value_decodes_to_a_description_or_is_refused(component: object) -> None:
    try:
        decoded = decode_description(_document(component))
    except UndecodableDescription:
        return

    assert decode_description(encode_description(decoded)) == decoded


@CODEC
@given(st.binary(max_size=200), st.integers(0, 1000))
def test_any_bytes_spliced_into_an_encoding_decode_or_are_refused(garbage: bytes, at: int) -> None:
    data = encode_description(SMALL)
    at = min(at, len(data))

    with contextlib.suppress(UndecodableDescription):
        assert isinstance(decode_description(data[:at] + garbage + data[at + len(garbage):]), ComponentDescription)


# ------------------------------------------------------------------------------------- receiving
def test_a_description_sent_with_its_tree_is_decoded_from_the_tree() -> None:
    text = to_sf(SMALL)

    received = description_from("not parsed", encode_description(SMALL), filename="<app>")

    assert to_sf(received) == text


def test_a_description_sent_without_a_tree_is_parsed_from_its_text() -> None:
    received = description_from(to_sf(SMALL), b"", filename="<app>")

    assert received == SMALL


def test_a_text_sent_without_a_tree_reports_its_errors_under_the_given_name() -> None:
    with pytest.raises(DescriptionError, match=r"^<app>:1:"):
        description_from("sfConfig extends {", b"", filename="<app>")


def test_a_tree_of_a_newer_format_version_gives_way_to_the_text() -> None:
    received = description_from(to_sf(SMALL), _document([4, True, {}], version=2), filename="<app>")

    assert received == SMALL


def test_a_tree_alone_of_a_newer_format_version_is_refused_saying_to_upgrade() -> None:
    with pytest.raises(UnsupportedEncodingVersion) as excinfo:
        description_from("", _document([4, True, {}], version=2), filename="<app>")

    assert str(excinfo.value).startswith("the encoded description has format version 2; this sd-actors reads "
                                          "version 1")
    assert excinfo.value.hint is not None
    assert "same sd-actors version" in excinfo.value.hint


def test_a_damaged_tree_is_refused_naming_the_description_and_not_replaced_by_the_text() -> None:
    damaged = encode_description(SMALL)[:-3]

    with pytest.raises(UndecodableDescription) as excinfo:
        description_from(to_sf(SMALL), damaged, filename="<pool>")

    assert str(excinfo.value).startswith("the description sent with <pool> could not be decoded: ")
    assert excinfo.value.hint is not None
    assert "send" in excinfo.value.hint


def test_a_decoded_description_is_a_fresh_tree_like_a_parsed_one() -> None:
    decoded = decode_description(encode_description(SMALL))

    assert decoded.parent is None
    assert all(not node.frozen and node.state == 0 and node.prototypes is None for node in nodes(decoded))
    assert decoded["c"].eager is False  # type: ignore[attr-defined]
    assert decoded.tags("e") == frozenset({"sfFinal"})
    assert TBD is decode_description(encode_description(component([("t", frozenset(), TBD)])))["t"]
    assert type(decoded["b"][0]) is Long  # type: ignore[index]


def _write(folder: Path, text: str) -> Path:
    path = folder / "description.sf"
    path.write_text(text, encoding="utf-8")
    return path
