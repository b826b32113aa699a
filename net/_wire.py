"""The wire format: messages (frozen dataclasses) to msgpack frames and back.

A frame is one msgpack map::

    {"v": PROTOCOL_VERSION, "k": kind, "i": request id, "b": body}

where ``kind`` names the message class (declared with :func:`wire_message`) and ``body`` maps
each field name to its value. A field may hold ``str``, ``int``, ``float``, ``bool``, ``bytes``,
``None``, an :class:`enum.Enum` whose values are ``str`` or ``int``, a ``Literal`` of those,
``tuple[T, ...]`` and fixed ``tuple[A, B]`` of those, another registered message, and unions of
all these. A map is a tuple of pairs: ``tuple[tuple[str, int], ...]``. A nested message travels as
``{"k": kind, "b": body}`` so that a union of several message classes can be told apart.

Types are checked both ways: ``encode`` refuses a message that breaks its own annotations (a list
where a tuple belongs is a bug in the sender), and ``decode`` refuses anything a peer sends that
does not fit, with a :class:`WireError` that names the field, the expected and the found type.
``decode`` raises nothing but WireError, whatever bytes it is given: a daemon logs the error,
counts it and keeps serving.

The registry is an object built from a list of classes, never a module-level table: every test
and every daemon builds its own (STYLE.md section 5).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgpack

from sd_actors.net._errors import (
    BadField,
    FrameTooLarge,
    InvalidMessageClass,
    MalformedFrame,
    MissingField,
    UnexpectedField,
    UnknownKind,
    UnregisteredMessage,
    UnsupportedVersion,
    WireError,
    shorten,
)

PROTOCOL_VERSION: Final = 1
"""The version every frame carries in ``"v"``; a frame with another version is refused."""

DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024
"""The largest frame a daemon accepts: room for the sfConfig tree of a very large pool."""

_FRAME_KEYS: Final = frozenset({"v", "k", "i", "b"})
_NESTED_KEYS: Final = frozenset({"k", "b"})
_KIND_ATTRIBUTE: Final = "__wire_kind__"
_KIND_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**64 - 1

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One decoded frame: the message and the request id that pairs an answer with its question."""

    message: object
    request_id: int = 0


def wire_message(kind: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: declare that a message class travels on the wire as ``kind``.

    The class must be a ``@dataclass(frozen=True, slots=True, kw_only=True)``; put this decorator
    above the ``@dataclass`` line. The kind is the class's stable name on the wire: renaming the
    Python class does not change the protocol, renaming the kind does. Field types are checked
    when the class is given to a :class:`MessageRegistry`, where forward references (a message
    that contains itself, or one defined further down the module) can be resolved.
    """
    if not isinstance(kind, str) or not _KIND_PATTERN.fullmatch(kind):
        raise ValueError(
            f"invalid wire kind {kind!r}: use letters, digits and '_', optionally dotted ('deploy_vm', 'vm.started')"
        )

    def declare(cls: type[_T]) -> type[_T]:
        _check_dataclass_shape(cls)
        setattr(cls, _KIND_ATTRIBUTE, kind)
        return cls

    return declare


class MessageRegistry:
    """The message classes one side understands, and the codec between them and frames.

    :param messages: classes decorated with :func:`wire_message`. Messages nested in their
        fields are included automatically.
    :raises InvalidMessageClass: a class is not declared for the wire, two classes claim the
        same kind, or a field has a type that cannot travel.
    """

    __slots__ = ("_by_class", "_by_kind")

    def __init__(self, messages: Iterable[type]) -> None:
        self._by_class: dict[type, _MessageCodec] = {}
        self._by_kind: dict[str, _MessageCodec] = {}
        pending = list(messages)
        pending.reverse()  # popped from the end: first listed, first registered
        while pending:
            cls = pending.pop()
            if cls not in self._by_class:
                self._add(cls)
        for codec in list(self._by_class.values()):
            codec.compile_fields(self, pending)
            # A field may name a message class that was not listed: include it too.
            while pending:
                cls = pending.pop()
                if cls not in self._by_class:
                    self._add(cls).compile_fields(self, pending)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind this registry knows, sorted."""
        return tuple(sorted(self._by_kind))

    def kind_of(self, message_class: type) -> str:
        """The wire kind of a registered class."""
        codec = self._by_class.get(message_class)
        if codec is None:
            raise UnregisteredMessage(message_class)
        return codec.kind

    def encode(self, message: object, *, request_id: int = 0) -> bytes:
        """The frame for ``message``, as bytes ready for one ZeroMQ frame.

        :raises UnregisteredMessage: the message's class is not in this registry.
        :raises BadField: a field holds a value its annotation does not allow.
        """
        codec = self._by_class.get(type(message))
        if codec is None:
            raise UnregisteredMessage(type(message))
        if type(request_id) is not int or not 0 <= request_id <= _MAX_INT:
            raise BadField("request_id", expected="int from 0 to 2**64-1", found=shorten(request_id))
        try:
            body = codec.encode_body(message)
        except _Mismatch as mismatch:
            raise mismatch.error(codec.kind) from None
        frame = {"v": PROTOCOL_VERSION, "k": codec.kind, "i": request_id, "b": body}
        return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]

    def decode(self, data: bytes, *, max_size: int) -> Frame:
        """The message and request id in ``data``.

        :param max_size: frames longer than this are refused before they are parsed; give the
            same limit as the socket's ZMQ_MAXMSGSIZE.
        :raises WireError: whatever ``data`` holds, nothing else is raised; the subclass tells
            why (MalformedFrame, UnsupportedVersion, FrameTooLarge, UnknownKind, BadField).
        """
        try:
            return self._decode(data, max_size=max_size)
        except WireError:
            raise
        except RecursionError:
            raise MalformedFrame("messages are nested too deeply") from None

    def _decode(self, data: bytes, *, max_size: int) -> Frame:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedFrame(f"expected bytes, got {type(data).__name__}")
        if len(data) > max_size:
            raise FrameTooLarge(len(data), max_size=max_size)
        try:
            frame = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
        # msgpack reports bad input with ValueError, UnicodeDecodeError, FormatError, StackError,
        # ExtraData and friends; whichever it is, the frame is malformed and the peer must not be
        # able to crash the receiver with a type nobody listed.
        except Exception as error:  # noqa: BLE001
            detail = f"{type(error).__name__}: {shorten(str(error))}" if str(error) else type(error).__name__
            raise MalformedFrame(f"not msgpack ({detail})") from None
        if type(frame) is not dict:
            raise MalformedFrame(f"expected a map, found {_describe_value(frame)}")
        version = frame.get("v", _ABSENT)
        if version is not _ABSENT and (type(version) is not int or version != PROTOCOL_VERSION):
            raise UnsupportedVersion(version, supported=PROTOCOL_VERSION)
        if frame.keys() != _FRAME_KEYS:
            missing = sorted(_FRAME_KEYS - frame.keys())
            extra = sorted(shorten(key) for key in frame.keys() - _FRAME_KEYS)
            problems = []
            if missing:
                problems.append("missing key(s) " + ", ".join(repr(key) for key in missing))
            if extra:
                problems.append("unexpected key(s) " + ", ".join(extra))
            raise MalformedFrame("; ".join(problems))
        kind = frame["k"]
        if type(kind) is not str:
            raise MalformedFrame(f"the kind 'k' is {_describe_value(kind)}, not a string")
        codec = self._by_kind.get(kind)
        if codec is None:
            raise UnknownKind(kind, known=self._by_kind)
        request_id = frame["i"]
        if type(request_id) is not int or request_id < 0:
            raise MalformedFrame(f"the request id 'i' is {_describe_value(request_id)}, not an int from 0 to 2**64-1")
        body = frame["b"]
        if type(body) is not dict:
            raise MalformedFrame(f"the body 'b' is {_describe_value(body)}, not a map")
        try:
            message = codec.decode_body(body)
        except _Mismatch as mismatch:
            raise mismatch.error(kind) from None
        return Frame(message=message, request_id=request_id)

    def _add(self, cls: type) -> _MessageCodec:
        kind = getattr(cls, _KIND_ATTRIBUTE, None)
        if not isinstance(kind, str) or _KIND_ATTRIBUTE not in cls.__dict__:
            raise InvalidMessageClass(
                cls,
                "it is not declared for the wire",
                hint="decorate it with @wire_message('kind') above @dataclass(frozen=True, slots=True, kw_only=True)",
            )
        other = self._by_kind.get(kind)
        if other is not None:
            raise InvalidMessageClass(
                cls,
                f"its kind {kind!r} is already taken by {other.cls.__module__}.{other.cls.__qualname__}",
                hint="give each message class its own kind",
            )
        codec = _MessageCodec(cls, kind)
        self._by_class[cls] = codec
        self._by_kind[kind] = codec
        return codec

    def _message_codec(self, cls: type) -> _MessageCodec | None:
        return self._by_class.get(cls)


# -- checking a class's declaration ----------------------------------------------------------------


def _check_dataclass_shape(cls: type) -> None:
    if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
        raise InvalidMessageClass(
            cls if isinstance(cls, type) else type(cls),
            "it is not a dataclass",
            hint="put @wire_message('kind') above @dataclass(frozen=True, slots=True, kw_only=True)",
        )
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    problems = []
    if not params.frozen:
        problems.append("frozen=True")
    if "__slots__" not in cls.__dict__:
        problems.append("slots=True")
    if any(not field.kw_only for field in dataclasses.fields(cls)):
        problems.append("kw_only=True")
    if problems:
        raise InvalidMessageClass(
            cls,
            "messages must be immutable, compact and built by keyword",
            hint=f"declare it with @dataclass(frozen=True, slots=True, kw_only=True); missing: {', '.join(problems)}",
        )
    for field in dataclasses.fields(cls):
        if not field.init:
            raise InvalidMessageClass(
                cls,
                f"field {field.name!r} has init=False, so a receiver could not rebuild the message",
                hint="make it an ordinary field, or compute it in a property",
            )


# -- codecs -----------------------------------------------------------------------------------------


class _Absent:
    """The value of a key that is not in a map (None is a real value on the wire)."""


_ABSENT: Final = _Absent()


class _Mismatch(Exception):
    """A value does not fit its type; carries the path from the field down to the value.

    Raised deep inside a codec and turned into a public BadField at the top, where the path
    is complete. Codecs add their part of the path only on the way out, so the happy path
    builds no strings.
    """

    def __init__(self, *, expected: str, found: str, cause: str = "type", known: Iterable[str] = ()) -> None:
        super().__init__(expected)
        self.expected = expected
        self.found = found
        self.cause = cause
        self.known = tuple(known)
        self.path: list[str] = []
        # True once the value had the right outer shape (a map naming the right message kind):
        # the complaint is then about its inside, which a union reports as it is.
        self.shape_matched = False

    def inside(self, part: str) -> _Mismatch:
        self.path.append(part)
        return self

    def error(self, kind: str) -> BadField:
        field = kind + "".join(reversed(self.path))
        if self.cause == "missing":
            return MissingField(field, expected=self.expected)
        if self.cause == "unexpected":
            return UnexpectedField(field, known=self.known)
        return BadField(field, expected=self.expected, found=self.found)


_Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one annotated type travels: ``encode`` to msgpack-able data, ``decode`` back."""

    describe: str
    encode: _Convert
    decode: _Convert


@dataclass(frozen=True, slots=True)
class _FieldCodec:
    name: str
    codec: _Codec
    required: bool


class _MessageCodec:
    """Encodes and decodes the body of one message class."""

    __slots__ = ("cls", "fields", "kind", "required")

    def __init__(self, cls: type, kind: str) -> None:
        self.cls = cls
        self.kind = kind
        self.fields: dict[str, _FieldCodec] = {}
        self.required: frozenset[str] = frozenset()

    def compile_fields(self, registry: MessageRegistry, discovered: list[type]) -> None:
        try:
            hints = typing.get_type_hints(self.cls)
        except NameError as error:
            raise InvalidMessageClass(
                self.cls,
                f"cannot resolve the annotation naming {error.name!r}",
                hint="import that name at module level (not only under TYPE_CHECKING), or define it before use",
            ) from None
        compiler = _TypeCompiler(registry, self.cls, discovered)
        fields = {}
        for field in dataclasses.fields(self.cls):
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            codec = compiler.compile(hints[field.name], field.name)
            fields[field.name] = _FieldCodec(field.name, codec, required)
        self.fields = fields
        self.required = frozenset(name for name, field in fields.items() if field.required)

    def encode_body(self, message: object) -> dict[str, object]:
        body = {}
        for name, field in self.fields.items():
            try:
                body[name] = field.codec.encode(getattr(message, name))
            except _Mismatch as mismatch:
                raise mismatch.inside(f".{name}") from None
        return body

    def decode_body(self, body: object) -> object:
        if type(body) is not dict:
            raise _Mismatch(expected=f"a map of the fields of {self.kind!r}", found=_describe_value(body))
        fields = self.fields
        values = {}
        for name, value in body.items():
            field = fields.get(name)
            if field is None:
                shown = name if isinstance(name, str) else shorten(name)
                raise _Mismatch(expected="", found="", cause="unexpected", known=fields).inside(f".{shown}")
            try:
                values[name] = field.codec.decode(value)
            except _Mismatch as mismatch:
                raise mismatch.inside(f".{name}") from None
        if not self.required <= values.keys():
            name = min(self.required - values.keys())
            raise _Mismatch(expected=fields[name].codec.describe, found="", cause="missing").inside(f".{name}")
        try:
            return self.cls(**values)
        # A message may check its own values in __post_init__ and raise whatever it likes; to the
        # receiver that is one more kind of bad field, never a crash.
        except Exception as error:  # noqa: BLE001
            raise _Mismatch(
                expected=f"values {self.cls.__qualname__} accepts",
                found=f"values it refused ({type(error).__name__}: {str(error)[:200]})",
            ) from None

    def encode_nested(self, message: object) -> dict[str, object]:
        return {"k": self.kind, "b": self.encode_body(message)}

    def decode_nested(self, data: object) -> object:
        if type(data) is not dict or data.keys() != _NESTED_KEYS:
            raise _Mismatch(expected=f"message {self.kind!r} ({{'k': kind, 'b': body}})", found=_describe_value(data))
        if data["k"] != self.kind:
            raise _Mismatch(expected=f"message {self.kind!r}", found=f"message {shorten(data['k'])}")
        try:
            return self.decode_body(data["b"])
        except _Mismatch as mismatch:
            mismatch.shape_matched = True
            raise


class _TypeCompiler:
    """Turns the annotation of one field into a :class:`_Codec`, or explains why it cannot."""

    def __init__(self, registry: MessageRegistry, cls: type, discovered: list[type]) -> None:
        self._registry = registry
        self._cls = cls
        self._discovered = discovered

    def compile(self, annotation: object, field: str) -> _Codec:
        origin = typing.get_origin(annotation)
        if annotation in _PRIMITIVES:
            return _PRIMITIVES[annotation]
        if origin is tuple:
            return self._tuple(typing.get_args(annotation), field)
        if origin is types.UnionType or origin is typing.Union:
            return _union(tuple(self.compile(arg, field) for arg in typing.get_args(annotation)))
        if origin is typing.Literal:
            return self._literal(typing.get_args(annotation), field)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self._enum(annotation, field)
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            return self._message(annotation, field)
        raise self._refuse(field, annotation)

    def _tuple(self, args: tuple[object, ...], field: str) -> _Codec:
        if len(args) == 2 and args[1] is Ellipsis:
            return _homogeneous_tuple(self.compile(args[0], field))
        if args == ((),):  # tuple[()], the empty tuple
            args = ()
        return _fixed_tuple(tuple(self.compile(arg, field) for arg in args))

    def _literal(self, values: tuple[object, ...], field: str) -> _Codec:
        for value in values:
            if type(value) not in (str, int, bool, bytes) and value is not None:
                hint = "Literal values must be str, int, bool, bytes or None"
                raise self._refuse(field, typing.Literal[value], hint=hint)
        allowed = frozenset((type(value), value) for value in values)
        describe = " | ".join(repr(value) for value in values)

        def check(value: object) -> object:
            try:
                if (type(value), value) in allowed:
                    return value
            except TypeError:  # an unhashable value from the network
                pass
            raise _Mismatch(expected=describe, found=_describe_value(value, show=True))

        return _Codec(describe, check, check)

    def _enum(self, cls: type[enum.Enum], field: str) -> _Codec:
        for member in cls:
            if type(member.value) not in (str, int):
                raise self._refuse(
                    field, cls, hint=f"the values of {cls.__qualname__} must be str or int; {member!r} is not"
                )
        values = ", ".join(repr(member.value) for member in cls)
        describe = f"{cls.__qualname__} (one of {values})"
        members = {(type(member.value), member.value): member for member in cls}

        def encode(value: object) -> object:
            if type(value) is cls:
                return value.value
            raise _Mismatch(expected=describe, found=_describe_value(value))

        def decode(value: object) -> object:
            try:
                return members[(type(value), value)]
            except (KeyError, TypeError):
                raise _Mismatch(expected=describe, found=_describe_value(value, show=True)) from None

        return _Codec(describe, encode, decode)

    def _message(self, cls: type, field: str) -> _Codec:
        if _KIND_ATTRIBUTE not in cls.__dict__:
            raise self._refuse(
                field, cls, hint=f"decorate {cls.__qualname__} with @wire_message('kind') so it can travel too"
            )
        if self._registry._message_codec(cls) is None:
            self._discovered.append(cls)
        registry = self._registry
        describe = cls.__qualname__
        # Looked up when used, not now: the class may contain itself, or not be compiled yet.
        codec_cell: list[_MessageCodec] = []

        def nested() -> _MessageCodec:
            if not codec_cell:
                found = registry._message_codec(cls)
                assert found is not None, f"{describe} was discovered but never added"
                codec_cell.append(found)
            return codec_cell[0]

        def encode(value: object) -> object:
            if type(value) is not cls:
                raise _Mismatch(expected=describe, found=_describe_value(value))
            return nested().encode_nested(value)

        def decode(value: object) -> object:
            return nested().decode_nested(value)

        return _Codec(describe, encode, decode)

    def _refuse(self, field: str, annotation: object, *, hint: str | None = None) -> InvalidMessageClass:
        shown = getattr(annotation, "__qualname__", None) or repr(annotation)
        origin = typing.get_origin(annotation)
        if hint is None:
            if annotation in (list, dict, set, frozenset) or origin in (list, dict, set, frozenset):
                hint = "messages are immutable: use tuple[T, ...] for a sequence, tuple[tuple[K, V], ...] for a map"
            elif annotation in (Any, object):
                hint = "give the field a precise type (str, int, float, bool, bytes, None, tuples, messages)"
            else:
                hint = (
                    "fields may hold str, int, float, bool, bytes, None, Enum, Literal, tuples of those, "
                    "and classes declared with @wire_message"
                )
        return InvalidMessageClass(self._cls, f"field {field!r} has type {shown}, which cannot travel", hint=hint)


def _describe_value(value: object, *, show: bool = False) -> str:
    """What a value looks like, for error messages: a type, or the value itself when short."""
    if value is None:
        return "None"
    if type(value) is tuple:
        return f"an array of {len(value)}"
    if type(value) is dict:
        return "a map"
    if type(value) is list:
        return "a list"
    name = type(value).__qualname__
    if show or isinstance(value, enum.Enum):
        return f"{name} {shorten(value)}"
    return name


def _exact(cls: type, describe: str) -> _Codec:
    def check(value: object) -> object:
        if type(value) is cls:
            return value
        raise _Mismatch(expected=describe, found=_describe_value(value))

    return _Codec(describe, check, check)


def _check_int(value: object) -> object:
    if type(value) is int and _MIN_INT <= value <= _MAX_INT:
        return value
    found = _describe_value(value, show=type(value) is int)
    raise _Mismatch(expected="int (64 bits)", found=found)


def _to_float(value: object) -> object:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            pass
    raise _Mismatch(expected="float", found=_describe_value(value))


def _check_none(value: object) -> object:
    if value is None:
        return None
    raise _Mismatch(expected="None", found=_describe_value(value))


_PRIMITIVES: Final[dict[object, _Codec]] = {
    str: _exact(str, "str"),
    bytes: _exact(bytes, "bytes"),
    bool: _exact(bool, "bool"),
    int: _Codec("int", _check_int, _check_int),
    float: _Codec("float", _to_float, _to_float),
    None: _Codec("None", _check_none, _check_none),
    type(None): _Codec("None", _check_none, _check_none),
}


def _homogeneous_tuple(item: _Codec) -> _Codec:
    describe = f"tuple[{item.describe}, ...]"
    encode_item = item.encode
    decode_item = item.decode

    def convert(value: object, convert_item: _Convert) -> object:
        if type(value) is not tuple:
            raise _Mismatch(expected=describe, found=_describe_value(value))
        result = []
        for index, element in enumerate(value):
            try:
                result.append(convert_item(element))
            except _Mismatch as mismatch:
                raise mismatch.inside(f"[{index}]") from None
        return tuple(result)

    return _Codec(describe, lambda value: convert(value, encode_item), lambda value: convert(value, decode_item))


def _fixed_tuple(items: tuple[_Codec, ...]) -> _Codec:
    describe = f"tuple[{', '.join(item.describe for item in items) or '()'}]"
    encoders = tuple(item.encode for item in items)
    decoders = tuple(item.decode for item in items)

    def convert(value: object, converters: tuple[_Convert, ...]) -> object:
        if type(value) is not tuple or len(value) != len(converters):
            raise _Mismatch(expected=describe, found=_describe_value(value))
        result = []
        for index, (element, convert_item) in enumerate(zip(value, converters, strict=True)):
            try:
                result.append(convert_item(element))
            except _Mismatch as mismatch:
                raise mismatch.inside(f"[{index}]") from None
        return tuple(result)

    return _Codec(describe, lambda value: convert(value, encoders), lambda value: convert(value, decoders))


def _union(alternatives: tuple[_Codec, ...]) -> _Codec:
    describe = " | ".join(alternative.describe for alternative in alternatives)
    takes_none = any(alternative.describe == "None" for alternative in alternatives)

    def attempts(value: object, convert: Callable[[_Codec], _Convert]) -> object:
        if value is None and takes_none:  # the common `X | None` left empty: no failed attempt at X first
            return None
        # The first alternative that takes the value wins. When all refuse and exactly one got
        # past the outer shape (its complaint is about something inside), that complaint is
        # the useful one: for `VmSpec | None`, "vm.memory: expected int", not "expected VmSpec | None".
        deep: list[_Mismatch] = []
        for alternative in alternatives:
            try:
                return convert(alternative)(value)
            except _Mismatch as mismatch:
                if mismatch.path or mismatch.shape_matched:
                    deep.append(mismatch)
        if len(deep) == 1:
            raise deep[0]
        raise _Mismatch(expected=describe, found=_describe_value(value))

    return _Codec(
        describe,
        lambda value: attempts(value, lambda alternative: alternative.encode),
        lambda value: attempts(value, lambda alternative: alternative.decode),
    )

