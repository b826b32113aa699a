"""Messages travel as one msgpack map per frame, and come back equal, or as a WireError that says why."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack
import pytest

from sd_actors.net import (
    PROTOCOL_VERSION,
    BadField,
    Frame,
    FrameTooLarge,
    InvalidMessageClass,
    MalformedFrame,
    MessageRegistry,
    MissingField,
    UnexpectedField,
    UnknownKind,
    UnregisteredMessage,
    UnsupportedVersion,
    wire_message,
)
from tests.net.messages import Color, Empty, Everything, Leaf, Level, OtherLeaf, Ping, Tree, make_registry

if TYPE_CHECKING:
    from collections.abc import Callable
    from decimal import Decimal as OnlyForTypeCheckers

MAX_SIZE: Final = 1 << 20


def frame_bytes(
    body: object, *, kind: object = "test.everything", version: object = 1, request_id: object = 0
) -> bytes:
    """A frame written by hand, so that it can break every rule."""
    data: bytes = msgpack.packb({"v": version, "k": kind, "i": request_id, "b": body})
    return data


# -- round trips ------------------------------------------------------------------------------------

ROUND_TRIPS: Final = [
    ("str", Everything(text="héllo, wörld")),
    ("empty str", Everything(text="")),
    ("int", Everything(number=-(2**63))),
    ("big int", Everything(number=2**64 - 1)),
    ("float", Everything(ratio=-1.5e300)),
    ("bool", Everything(flag=True)),
    ("bytes", Everything(blob=bytes(range(256)))),
    ("None", Everything(nothing=None)),
    ("str enum", Everything(color=Color.BLUE)),
    ("int enum", Everything(level=Level.HIGH)),
    ("literal", Everything(mode="safe")),
    ("tuple of str", Everything(names=("a", "b", "c"))),
    ("fixed tuple", Everything(pair=("memory", 512))),
    ("tuple of pairs as a map", Everything(table=(("memory", 512), ("vcpus", 2)))),
    ("nested message", Everything(leaf=Leaf(name="disk"))),
    ("optional message absent", Everything(leaf=None)),
    ("tuple of a union of messages", Everything(leaves=(Leaf(name="a"), OtherLeaf(size=3), Leaf(name="b")))),
    ("union, first alternative", Everything(either=7)),
    ("union, second alternative", Everything(either="seven")),
    ("message that contains itself", Tree(name="root", children=(Tree(name="a", children=(Tree(name="b"),)),))),
    ("message without fields", Empty()),
    ("every field at once", Everything(
        text="t", number=1, ratio=0.5, flag=True, blob=b"\x00", color=Color.BLUE, level=Level.HIGH, mode="safe",
        names=("x",), pair=("p", 2), table=(("k", 1),), leaf=Leaf(name="l"), leaves=(OtherLeaf(size=1),),
        either="e",
    )),
]


@pytest.mark.parametrize("message", [case[1] for case in ROUND_TRIPS], ids=[case[0] for case in ROUND_TRIPS])
def test_every_kind_of_field_comes_back_equal_and_of_the_same_type(message: object) -> None:
    registry = make_registry()

    frame = registry.decode(registry.encode(message, request_id=42), max_size=MAX_SIZE)

    assert frame == Frame(message=message, request_id=42)
    assert _types(frame.message) == _types(message)


def _types(value: object) -> object:
    """The value's shape with the type at every level, so that 1 and 1.0, or () and [], differ."""
    if isinstance(value, tuple):
        return ("tuple", tuple(_types(item) for item in value))
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return (type(value), tuple((name, _types(getattr(value, name))) for name in fields))
    return (type(value), value)


def test_a_frame_is_one_msgpack_map_of_version_kind_request_id_and_body() -> None:
    registry = make_registry()

    data = registry.encode(Everything(leaf=Leaf(name="disk"), table=(("a", 1),)), request_id=9)

    frame = msgpack.unpackb(data)
    assert frame["v"] == PROTOCOL_VERSION == 1
    assert frame["k"] == "test.everything"
    assert frame["i"] == 9
    assert frame["b"]["leaf"] == {"k": "test.leaf", "b": {"name": "disk"}}
    assert frame["b"]["table"] == [["a", 1]]
    assert frame["b"]["color"] == "red"


def test_an_int_given_for_a_float_field_travels_as_a_float() -> None:
    registry = make_registry()

    frame = registry.decode(registry.encode(Everything(ratio=2)), max_size=MAX_SIZE)

    assert isinstance(frame.message, Everything)
    assert type(frame.message.ratio) is float


def test_a_missing_field_with_a_default_takes_the_default() -> None:
    registry = make_registry()

    frame = registry.decode(frame_bytes({"text": "only this"}), max_size=MAX_SIZE)

    assert frame.message == Everything(text="only this")


def test_classes_nested_in_fields_are_registered_with_their_container() -> None:
    registry = MessageRegistry([Everything])

    assert registry.kinds == ("test.everything", "test.leaf", "test.other_leaf")
    assert registry.kind_of(Leaf) == "test.leaf"


# -- what decode refuses ----------------------------------------------------------------------------

MALFORMED: Final = [
    ("not msgpack", b"\xc1", "not msgpack"),
    ("empty", b"", "not msgpack"),
    ("truncated", msgpack.packb({"v": 1, "k": "test.ping", "i": 0, "b": {"text": "x"}})[:-2], "not msgpack"),
    ("trailing bytes", msgpack.packb({"v": 1}) + b"\x00", "not msgpack"),
    ("invalid utf-8", b"\xa2\xff\xfe", "not msgpack"),
    ("integer map key", b"\x81\x01\x02", "not msgpack"),
    ("not a map", msgpack.packb([1, "test.ping", 0, {}]), "expected a map, found an array of 4"),
    ("a bare string", msgpack.packb("hello"), "expected a map, found str"),
    ("missing keys", msgpack.packb({"v": 1, "k": "test.ping"}), "missing key(s) 'b', 'i'"),
    ("unexpected key", msgpack.packb({"v": 1, "k": "test.ping", "i": 0, "b": {}, "x": 1}), "unexpected key(s) 'x'"),
    ("kind not a string", frame_bytes({}, kind=5), "the kind 'k' is int, not a string"),
    ("negative request id", frame_bytes({}, request_id=-1), "the request id 'i' is int, not an int"),
    ("request id not an int", frame_bytes({}, request_id="1"), "the request id 'i' is str"),
    ("body not a map", frame_bytes([1, 2]), "the body 'b' is an array of 2, not a map"),
]


@pytest.mark.parametrize(("data", "problem"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_bytes_that_are_not_a_frame_are_a_malformed_frame(data: bytes, problem: str) -> None:
    registry = make_registry()

    with pytest.raises(MalformedFrame) as excinfo:
        registry.decode(data, max_size=MAX_SIZE)

    assert problem in excinfo.value.problem
    assert "hint:" in str(excinfo.value)


@pytest.mark.parametrize("version", [2, 0, "1", None], ids=["newer", "older", "a string", "None"])
def test_a_frame_of_another_protocol_version_names_both_versions(version: object) -> None:
    registry = make_registry()

    with pytest.raises(UnsupportedVersion) as excinfo:
        registry.decode(frame_bytes({}, version=version), max_size=MAX_SIZE)

    assert excinfo.value.found == version
    assert excinfo.value.supported == PROTOCOL_VERSION
    assert f"protocol version {version!r}, this side speaks version 1" in str(excinfo.value)


def test_the_version_is_checked_before_the_shape_so_a_future_frame_is_named_as_such() -> None:
    registry = make_registry()

    with pytest.raises(UnsupportedVersion):
        registry.decode(msgpack.packb({"v": 2, "kind": "deploy", "body": {}}), max_size=MAX_SIZE)


def test_a_frame_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    registry = make_registry()
    data = registry.encode(Ping(text="x" * 100))

    with pytest.raises(FrameTooLarge) as excinfo:
        registry.decode(data, max_size=len(data) - 1)

    assert (excinfo.value.size, excinfo.value.max_size) == (len(data), len(data) - 1)
    assert registry.decode(data, max_size=len(data)).message == Ping(text="x" * 100)


def test_an_unknown_kind_suggests_the_closest_known_one() -> None:
    registry = make_registry()

    with pytest.raises(UnknownKind) as excinfo:
        registry.decode(frame_bytes({}, kind="test.pingg"), max_size=MAX_SIZE)

    assert excinfo.value.kind == "test.pingg"
    assert excinfo.value.hint == "did you mean 'test.ping'?"


def test_an_unknown_kind_with_nothing_close_says_the_peer_may_differ() -> None:
    registry = make_registry()

    with pytest.raises(UnknownKind) as excinfo:
        registry.decode(frame_bytes({}, kind="x" * 1000), max_size=MAX_SIZE)

    assert "another sd-actors release" in excinfo.value.hint
    assert len(str(excinfo.value)) < 300, "a peer's kind name is shortened before it reaches a log"


BAD_FIELDS: Final = [
    ("str for int", {"number": "5"}, "test.everything.number", "int (64 bits)", "str"),
    ("bool for int", {"number": True}, "test.everything.number", "int (64 bits)", "bool"),
    ("int for bool", {"flag": 1}, "test.everything.flag", "bool", "int"),
    ("str for bytes", {"blob": "abc"}, "test.everything.blob", "bytes", "str"),
    ("bytes for str", {"text": b"abc"}, "test.everything.text", "str", "bytes"),
    ("str for float", {"ratio": "1.5"}, "test.everything.ratio", "float", "str"),
    ("int for None", {"nothing": 0}, "test.everything.nothing", "None", "int"),
    ("unknown enum value", {"color": "green"}, "test.everything.color", "Color (one of 'red', 'blue')", "str 'green'"),
    ("enum value of the wrong type", {"level": "1"}, "test.everything.level", "Level (one of 1, 2)", "str '1'"),
    ("value outside the literal", {"mode": "slow"}, "test.everything.mode", "'fast' | 'safe'", "str 'slow'"),
    ("map for a tuple", {"names": {"a": 1}}, "test.everything.names", "tuple[str, ...]", "a map"),
    ("wrong item in a tuple", {"names": ["a", 2]}, "test.everything.names[1]", "str", "int"),
    ("fixed tuple too long", {"pair": ["a", 1, 2]}, "test.everything.pair", "tuple[str, int]", "an array of 3"),
    ("wrong item in a pair of the map", {"table": [["a", 1], ["b", "2"]]}, "test.everything.table[1][1]",
     "int (64 bits)", "str"),
    ("other message kind", {"leaf": {"k": "test.other_leaf", "b": {"size": 1}}}, "test.everything.leaf",
     "Leaf | None", "a map"),
    ("message without its envelope", {"leaf": {"name": "x"}}, "test.everything.leaf", "Leaf | None", "a map"),
    ("bad field inside a nested message", {"leaf": {"k": "test.leaf", "b": {"name": 3}}}, "test.everything.leaf.name",
     "str", "int"),
    ("bad field deep in a union of messages", {"leaves": [{"k": "test.other_leaf", "b": {"size": "big"}}]},
     "test.everything.leaves[0].size", "int (64 bits)", "str"),
    ("no union alternative fits", {"either": 1.5}, "test.everything.either", "int | str", "float"),
]


@pytest.mark.parametrize(
    ("body", "field", "expected", "found"), [case[1:] for case in BAD_FIELDS], ids=[case[0] for case in BAD_FIELDS]
)
def test_a_field_of_the_wrong_type_names_the_field_the_expected_and_the_found_type(
    body: dict[str, Any], field: str, expected: str, found: str
) -> None:
    registry = make_registry()

    with pytest.raises(BadField) as excinfo:
        registry.decode(frame_bytes(body), max_size=MAX_SIZE)

    assert (excinfo.value.field, excinfo.value.expected, excinfo.value.found) == (field, expected, found)
    assert str(excinfo.value).startswith(f"field {field!r}: expected {expected}, found {found}; hint: ")


def test_a_missing_required_field_is_named_with_its_type() -> None:
    registry = make_registry()

    with pytest.raises(MissingField) as excinfo:
        registry.decode(frame_bytes({"children": []}, kind="test.tree"), max_size=MAX_SIZE)

    assert excinfo.value.field == "test.tree.name"
    assert str(excinfo.value).startswith("field 'test.tree.name' (str) is missing")


def test_a_field_the_class_does_not_have_suggests_the_closest_one() -> None:
    registry = make_registry()

    with pytest.raises(UnexpectedField) as excinfo:
        registry.decode(frame_bytes({"nmae": "x"}, kind="test.tree"), max_size=MAX_SIZE)

    assert excinfo.value.field == "test.tree.nmae"
    assert excinfo.value.hint == "did you mean 'name'?"


def test_a_value_the_message_itself_refuses_is_a_bad_field_not_a_crash() -> None:
    registry = make_registry()

    with pytest.raises(BadField) as excinfo:
        registry.decode(frame_bytes({"value": -3}, kind="test.positive"), max_size=MAX_SIZE)

    assert excinfo.value.field == "test.positive"
    assert "ValueError: value must be positive, not -3" in excinfo.value.found


def test_nesting_deeper_than_the_stack_allows_is_a_malformed_frame() -> None:
    registry = make_registry()
    body: dict[str, object] = {"name": "leaf"}
    for _ in range(240):  # 720 msgpack levels: within msgpack's limits, beyond Python's stack
        body = {"name": "n", "children": [{"k": "test.tree", "b": body}]}

    with pytest.raises(MalformedFrame, match="nested too deeply"):
        registry.decode(frame_bytes(body, kind="test.tree"), max_size=MAX_SIZE)


# -- what encode refuses -----------------------------------------------------------------------------

BAD_MESSAGES: Final = [
    ("a list where a tuple belongs", Everything(names=["a"]), "test.everything.names"),  # type: ignore[arg-type]
    ("an int over 64 bits", Everything(number=2**64), "test.everything.number"),
    ("a str where an enum belongs", Everything(color="red"), "test.everything.color"),  # type: ignore[arg-type]
    ("a message of another class", Everything(leaf=Ping(text="x")), "test.everything.leaf"),  # type: ignore[arg-type]
    ("a wrong item deep inside", Tree(name="r", children=(Tree(name=1),)), "test.tree.children[0].name"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("message", "field"), [case[1:] for case in BAD_MESSAGES], ids=[case[0] for case in BAD_MESSAGES]
)
def test_encode_refuses_a_message_that_breaks_its_own_annotations(message: object, field: str) -> None:
    registry = make_registry()

    with pytest.raises(BadField) as excinfo:
        registry.encode(message)

    assert excinfo.value.field == field


def test_encode_refuses_a_message_whose_class_is_not_registered() -> None:
    registry = MessageRegistry([Tree])

    with pytest.raises(UnregisteredMessage) as excinfo:
        registry.encode(Ping(text="x"))

    assert excinfo.value.message_class is Ping
    assert "MessageRegistry" in excinfo.value.hint


# -- declaring messages -------------------------------------------------------------------------------


# Each case builds its class afresh: @wire_message marks the class it is given, and a class
# marked by one case must not be seen already marked by the next.


def registry_of(annotation: object) -> MessageRegistry:
    cls = type("Declared", (), {"__annotations__": {"field": annotation}})
    return MessageRegistry([wire_message("declared")(dataclass(frozen=True, slots=True, kw_only=True)(cls))])


@dataclass(frozen=True, slots=True, kw_only=True)
class Undeclared:
    name: str


def registry_of_annotation_only_imported_for_type_checking() -> MessageRegistry:
    @wire_message("declared")
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Declared:
        child: OnlyForTypeCheckers

    return MessageRegistry([Declared])


def marked_with(**dataclass_options: bool) -> type:
    cls = type("Declared", (), {"__annotations__": {"a": int}})
    return wire_message("declared")(dataclass(**dataclass_options)(cls))


DECLARATIONS: Final = [
    ("list field", lambda: registry_of(list[int]), "tuple[T, ...] for a sequence"),
    ("dict field", lambda: registry_of(dict[str, int]), "tuple[tuple[K, V], ...] for a map"),
    ("set field", lambda: registry_of(frozenset[str]), "messages are immutable: use tuple"),
    ("Any field", lambda: registry_of(Any), "precise type"),
    ("object field", lambda: registry_of(object), "precise type"),
    ("enum of floats", lambda: registry_of(Ratio), "must be str or int"),
    ("undeclared nested class", lambda: registry_of(Undeclared), "decorate Undeclared with @wire_message"),
    ("name only imported for type checking", registry_of_annotation_only_imported_for_type_checking, "TYPE_CHECKING"),
    ("positional fields", lambda: marked_with(frozen=True, slots=True), "kw_only=True"),
    ("not frozen", lambda: marked_with(slots=True, kw_only=True), "frozen=True"),
    ("no slots", lambda: marked_with(frozen=True, kw_only=True), "slots=True"),
    ("not a dataclass", lambda: wire_message("declared")(Color), "put @wire_message('kind') above @dataclass"),
    ("not declared", lambda: MessageRegistry([Undeclared]), "decorate it with @wire_message"),
]


class Ratio(enum.Enum):
    HALF = 0.5


@pytest.mark.parametrize(
    ("declare_it", "hint"), [case[1:] for case in DECLARATIONS], ids=[case[0] for case in DECLARATIONS]
)
def test_a_class_that_cannot_travel_is_refused_when_declared_with_a_hint(
    declare_it: Callable[[], object], hint: str
) -> None:
    with pytest.raises(InvalidMessageClass) as excinfo:
        declare_it()

    assert hint in excinfo.value.hint


@wire_message("test.ping")
@dataclass(frozen=True, slots=True, kw_only=True)
class _AnotherPing:
    text: str


def test_two_classes_claiming_one_kind_are_refused() -> None:
    with pytest.raises(InvalidMessageClass) as excinfo:
        MessageRegistry([Ping, _AnotherPing])

    assert excinfo.value.message_class is _AnotherPing
    assert f"its kind 'test.ping' is already taken by {Ping.__module__}.Ping" in str(excinfo.value)


@pytest.mark.parametrize("kind", ["", "has space", "1starts_with_digit", "trailing."], ids=repr)
def test_a_kind_must_be_a_dotted_name(kind: str) -> None:
    with pytest.raises(ValueError, match="invalid wire kind"):
        wire_message(kind)
