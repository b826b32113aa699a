"""A resolved description as msgpack bytes and back: what a daemon reads instead of re-parsing ``.sf`` text.

``to_sf`` text is the description's lasting form (daemons journal it, restarts and updates read it
back), but parsing it again costs a receiver far more than decoding a tree it is sent beside it:
for a pool of 1,000 machines, 75 ms or more against under 5. The encoding is one msgpack array::

    ["sd-actors description", FORMAT_VERSION, component]

A value that msgpack holds exactly is itself: ``str`` (String), ``int`` (Integer), ``float``
(Float), ``bool``, ``None`` (NULL) and ``bytes``. Every other kind is an array whose first item
names it, so that a receiver looks only at the arrays:

=============  ======================================================================
Vector         ``[VECTOR, item, …]``
Long           ``[LONG, int]``
Double         ``[DOUBLE, float]``
TBD            ``[TBD]``
component      ``[COMPONENT, eager, {name: value, …}]`` or, with tags,
               ``[COMPONENT, eager, {name: value, …}, {name: [tag, …], …}]``
reference      ``[REFERENCE, flags, [kind, name or None, …]]``, ``flags`` adds LAZY 1,
               DATA 2, OPTIONAL 4; an OPTIONAL reference's default comes last when it has one
APPLY/ASSERT   ``[FUNCTION, "APPLY" or "ASSERT", lazy, body]`` (``body`` a component)
=============  ======================================================================

Decoding checks what it reads (the bytes come from another process): whatever it is given, it
returns a description made only of the kinds above, names that are strings and numbers in their
kind's range, or raises :class:`UndecodableDescription`, never another exception. Source locations
do not travel: a decoded description has none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgpack

from sd_actors.descriptions._errors import DescriptionError
from sd_actors.descriptions._lexer import INT_MAX, INT_MIN, LONG_MAX, LONG_MIN
from sd_actors.descriptions._model import (
    NAMED_PART_KINDS,
    NO_DEFAULT,
    TBD,
    Apply,
    ComponentDescription,
    Double,
    Key,
    Long,
    Reference,
    RefPart,
)
from sd_actors.descriptions._pipeline import parse_string

FORMAT: Final = "sd-actors description"
"""The first item of every encoding: bytes that start otherwise are not an encoded description."""

FORMAT_VERSION: Final = 1
"""Raise it whenever the layout changes; a reader refuses a version it does not know."""

# The first item of the array of each kind that is not a msgpack value of its own.
VECTOR: Final = 0
LONG: Final = 1
DOUBLE: Final = 2
TBD_KIND: Final = 3
COMPONENT: Final = 4
REFERENCE: Final = 5
FUNCTION: Final = 6

_LAZY: Final = 1
_DATA: Final = 2
_OPTIONAL: Final = 4

_FUNCTION_KINDS: Final = frozenset({"APPLY", "ASSERT"})
_NAMELESS_PART_KINDS: Final = frozenset({"ROOT", "PARENT", "THIS", "PROCESS"})
# Values that travel as they are; bool is a type of its own here (type(True) is not int).
_PLAIN: Final = frozenset({str, float, bool, type(None), bytes})
_PLAIN_OR_INT: Final = _PLAIN | {int}
_KIND_NAMES: Final = {VECTOR: "vector", LONG: "Long", DOUBLE: "Double", TBD_KIND: "TBD", COMPONENT: "component",
                      REFERENCE: "reference", FUNCTION: "APPLY/ASSERT"}


class UndecodableDescription(DescriptionError):
    """Bytes given to :func:`decode_description` are not a description this version can read."""


class UnsupportedEncodingVersion(UndecodableDescription):
    """The bytes are an encoded description of a format version this sd-actors does not read."""

    def __init__(self, version: object) -> None:
        self.version = version
        super().__init__(f"the encoded description has format version {version!r}; this sd-actors reads version "
                         f"{FORMAT_VERSION}", hint="run the same sd-actors version on both sides, or send the .sf "
                         "text alone")


# ------------------------------------------------------------------------------------------ encoding
def encode_description(config: ComponentDescription) -> bytes:
    """``config``, a resolved description (``parse_file``'s result or a part of it), as bytes.

    :raises TypeError: ``config`` holds something a resolved description cannot (an attribute not
        placed yet, an object of another type).
    """
    # surrogatepass: a str may hold a lone surrogate (\ud800), which to_sf prints and the parser reads.
    return msgpack.packb([FORMAT, FORMAT_VERSION, _encode_component(config)],  # type: ignore[no-any-return]
                         use_bin_type=True, unicode_errors="surrogatepass")


def _encode_component(cd: ComponentDescription) -> list[object]:
    attributes: dict[str, object] = {}
    for key, value in cd.raw_items():
        if type(key) is not str:
            raise TypeError(f"cannot encode {':'.join(cd.path()) or 'the description'}: attribute {key!r} is not "
                            "placed yet (encode resolved descriptions only)")
        # Most values are plain: spared the call.
        attributes[key] = value if type(value) in _PLAIN_OR_INT else _encode_value(value)
    tags = cd.raw_tags_mapping()
    if not tags:
        return [COMPONENT, cd.eager, attributes]
    # Sorted, so that the same description always gives the same bytes.
    return [COMPONENT, cd.eager, attributes, {key: sorted(names) for key, names in tags.items() if names}]


def _encode_value(value: object) -> object:
    if type(value) in _PLAIN_OR_INT:
        return value
    if isinstance(value, ComponentDescription):
        return _encode_component(value)
    if isinstance(value, list):
        return [VECTOR, *(_encode_value(item) for item in value)]
    if isinstance(value, Long):  # before int, Long's base
        return [LONG, int(value)]
    if isinstance(value, Double):  # before float
        return [DOUBLE, float(value)]
    if value is TBD:
        return [TBD_KIND]
    if isinstance(value, Reference):
        flags = (_LAZY if value.lazy else 0) | (_DATA if value.data else 0) | (_OPTIONAL if value.optional else 0)
        parts = [item for part in value.parts for item in (part.kind, part.name)]
        if value.optional and value.default is not NO_DEFAULT:
            return [REFERENCE, flags, parts, _encode_value(value.default)]
        return [REFERENCE, flags, parts]
    if isinstance(value, Apply):
        return [FUNCTION, value.kind, value.lazy, _encode_component(value.body)]
    # A subclass of a plain kind (an enum a plugin set, say): as to_sf prints it.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return bytes(value)
    raise TypeError(f"cannot encode a {type(value).__name__} in a description: {value!r} (a description holds "
                    "strings, numbers, booleans, NULL, bytes, vectors, TBD, components, references and functions)")


# ------------------------------------------------------------------------------------------ decoding
def decode_description(data: bytes) -> ComponentDescription:
    """The description :func:`encode_description` encoded as ``data``.

    :raises UndecodableDescription: ``data`` is not an encoded description, or is damaged; the
        message says what is wrong and where (:class:`UnsupportedEncodingVersion`: another format
        version).
    """
    try:
        document = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True,
                                   unicode_errors="surrogatepass")
    except msgpack.StackError:
        raise UndecodableDescription("the encoded description is nested too deeply to decode",
                                     hint="the parser refuses nesting deeper than 100 levels: check what made it"
                                     ) from None
    # msgpack reports bad input with ValueError, UnicodeDecodeError, FormatError, StackError,
    # ExtraData and others: whichever it is, these are not the bytes of a description.
    except Exception as error:  # noqa: BLE001
        raise UndecodableDescription(f"the encoded description is not msgpack ({type(error).__name__}: {error})",
                                     hint="the bytes were cut short or damaged on the way") from None
    if type(document) is not list or len(document) != 3 or document[0] != FORMAT:
        raise UndecodableDescription(f"the bytes are not an encoded description (they start with "
                                     f"{_shown(document[0] if type(document) is list and document else document)})",
                                     hint="give decode_description what encode_description returned")
    if type(document[1]) is not int or document[1] != FORMAT_VERSION:
        raise UnsupportedEncodingVersion(document[1])
    try:
        return _decode_component(document[2], None)
    except _Malformed as error:
        raise UndecodableDescription(f"the encoded description is damaged at {error.where()}: {error}",
                                     hint="the bytes were cut short or damaged on the way") from None
    except RecursionError:
        raise UndecodableDescription("the encoded description is nested too deeply to decode",
                                     hint="the parser refuses nesting deeper than 100 levels: check what made it"
                                     ) from None


class _Malformed(Exception):
    """A part of the encoding is not what it should be; ``path`` grows on the way out (innermost first):
    attribute names, and indexes in vectors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.path: list[str | int] = []

    def where(self) -> str:
        """The path in SmartFrog notation, ``a:b[2]`` (an index into a vector in brackets)."""
        text = ""
        for part in reversed(self.path):
            text += f"[{part}]" if isinstance(part, int) else f":{part}" if text else part
        return text or "the top"


def _decode_component(encoded: object, parent: ComponentDescription | None) -> ComponentDescription:
    if type(encoded) is not list or not 3 <= len(encoded) <= 4 or type(encoded[0]) is not int or \
            encoded[0] != COMPONENT:
        raise _Malformed(f"expected a component, found {_shown(encoded)}")
    eager = encoded[1]
    attributes = encoded[2]
    if type(eager) is not bool:
        raise _Malformed(f"a component's eager flag is {_shown(eager)}, not a boolean")
    if type(attributes) is not dict:
        raise _Malformed(f"a component's attributes are {_shown(attributes)}, not a map")
    cd = ComponentDescription(parent, eager=eager)
    tags: dict[Key, frozenset[str]] = {}
    if len(encoded) == 4:
        tags = _decode_tags(encoded[3], attributes)
    key = None
    try:
        for key, value in attributes.items():
            if type(key) is not str:
                raise _Malformed(f"an attribute name is {_shown(key)}, not a string")
            kind = type(value)
            if kind in _PLAIN:
                continue
            if kind is int:
                _integer(value)
            else:
                # Replacing the value of a key keeps the map's size: allowed while iterating.
                attributes[key] = _decode_value(value, cd)
    except _Malformed as error:
        if key is not None:
            error.path.append(key if type(key) is str else repr(key))
        raise
    cd.adopt_attributes(attributes, tags, {}, reparent=False)
    return cd


def _decode_tags(encoded: object, attributes: dict[object, object]) -> dict[Key, frozenset[str]]:
    if type(encoded) is not dict:
        raise _Malformed(f"a component's tags are {_shown(encoded)}, not a map")
    tags: dict[Key, frozenset[str]] = {}
    for key, names in encoded.items():
        if key not in attributes:
            raise _Malformed(f"tags of {_shown(key)}, which is not an attribute")
        if type(names) is not list or not names or not all(type(name) is str for name in names):
            raise _Malformed(f"the tags of {key!r} are {_shown(names)}, not a list of names")
        tags[key] = frozenset(names)
    return tags


def _decode_value(encoded: object, parent: ComponentDescription) -> object:
    """One value; components in it (in vectors, function bodies) belong to ``parent``, as after resolution."""
    if type(encoded) in _PLAIN:
        return encoded
    if isinstance(encoded, int):  # not a bool: bool is plain
        return _integer(encoded)
    if not isinstance(encoded, list) or not encoded or type(encoded[0]) is not int:
        raise _Malformed(f"expected a value, found {_shown(encoded)}")
    decode = _DECODERS.get(encoded[0])
    if decode is None:
        raise _Malformed(f"unknown kind of value {encoded[0]} (in {_shown(encoded)}); this sd-actors knows "
                         f"{', '.join(f'{tag} ({name})' for tag, name in _KIND_NAMES.items())}")
    return decode(encoded, parent)


def _integer(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise _Malformed(f"Integer {value} is out of range (a Long would hold it)")
    return value


def _decode_vector(encoded: list[object], parent: ComponentDescription) -> list[object]:
    items = []
    for index, item in enumerate(encoded[1:]):
        try:
            items.append(_decode_value(item, parent))
        except _Malformed as error:
            error.path.append(index)
            raise
    return items


def _decode_long(encoded: list[object], parent: ComponentDescription) -> Long:
    value = encoded[1] if len(encoded) == 2 else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"expected [{LONG}, int] for a Long, found {_shown(encoded)}")
    if not LONG_MIN <= value <= LONG_MAX:
        raise _Malformed(f"Long {value} is out of range")
    return Long(value)


def _decode_double(encoded: list[object], parent: ComponentDescription) -> Double:
    value = encoded[1] if len(encoded) == 2 else None
    if not isinstance(value, float):
        raise _Malformed(f"expected [{DOUBLE}, float] for a Double, found {_shown(encoded)}")
    return Double(value)


def _decode_tbd(encoded: list[object], parent: ComponentDescription) -> object:
    if len(encoded) != 1:
        raise _Malformed(f"expected [{TBD_KIND}] for TBD, found {_shown(encoded)}")
    return TBD


def _decode_function(encoded: list[object], parent: ComponentDescription) -> Apply:
    kind, lazy, body = encoded[1:] if len(encoded) == 4 else (None, None, None)
    if kind not in _FUNCTION_KINDS or not isinstance(kind, str) or not isinstance(lazy, bool):
        raise _Malformed(f"expected [{FUNCTION}, 'APPLY' or 'ASSERT', lazy, body], found {_shown(encoded)}")
    return Apply(kind, _decode_component(body, parent), lazy=lazy)


def _decode_reference(encoded: list[object], parent: ComponentDescription) -> Reference:
    flags = encoded[1] if 3 <= len(encoded) <= 4 else None
    flat = encoded[2] if 3 <= len(encoded) <= 4 else None
    if not isinstance(flags, int) or not isinstance(flat, list):
        raise _Malformed(f"expected [{REFERENCE}, flags, parts] or [{REFERENCE}, flags, parts, default], "
                         f"found {_shown(encoded)}")
    if flags & ~(_LAZY | _DATA | _OPTIONAL):
        raise _Malformed(f"unknown reference flags {flags}")
    optional = bool(flags & _OPTIONAL)
    if len(encoded) == 4 and not optional:
        raise _Malformed(f"a reference that is not OPTIONAL has a default: {_shown(encoded)}")
    if not flat or len(flat) % 2:
        raise _Malformed(f"reference parts must be pairs of kind and name, found {_shown(flat)}")
    parts = []
    for index in range(0, len(flat), 2):
        kind, name = flat[index], flat[index + 1]
        if kind in _NAMELESS_PART_KINDS and name is None and isinstance(kind, str):
            parts.append(RefPart(kind))
        elif kind in NAMED_PART_KINDS and isinstance(kind, str) and isinstance(name, str):
            parts.append(RefPart(kind, name))
        else:
            raise _Malformed(f"unknown reference part {_shown(kind)} {_shown(name)}")
    default = NO_DEFAULT if len(encoded) == 3 else _decode_value(encoded[3], parent)
    return Reference(tuple(parts), lazy=bool(flags & _LAZY), data=bool(flags & _DATA), optional=optional,
                     default=default)


_DECODERS: Final[dict[int, Callable[[list[object], ComponentDescription], object]]] = {
    VECTOR: _decode_vector,
    LONG: _decode_long,
    DOUBLE: _decode_double,
    TBD_KIND: _decode_tbd,
    COMPONENT: _decode_component,
    REFERENCE: _decode_reference,
    FUNCTION: _decode_function,
}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------- receiving
def description_from(text: str, tree: bytes, *, filename: str) -> ComponentDescription:
    """The description a peer sent as an encoded ``tree``, as ``.sf`` ``text``, or as both.

    The tree is decoded (several times faster than parsing); without one (a peer of an older
    version) or in a format version this one does not read (a newer one), the text is parsed.
    Senders of this version send the tree alone (``text`` empty), so a tree this one cannot read
    then has nothing to fall back on: the receiver must be upgraded. A damaged tree is refused, not
    replaced by the text: the peer has a bug worth hearing about.

    :param filename: names the text in parse errors (``<app>``).
    :raises DescriptionError: the text does not parse, or :class:`UndecodableDescription`: the
        tree is damaged, or in a newer format and without the text.
    """
    if tree:
        try:
            return decode_description(tree)
        except UnsupportedEncodingVersion:
            if not text:
                raise
        except UndecodableDescription as error:
            raise UndecodableDescription(f"the description sent with {filename} could not be decoded: {error.message}",
                                         hint="the sender may have a bug; sending the .sf text alone (an empty "
                                         "tree) avoids the decoding") from None
    return parse_string(text, filename=filename, use_library=False)


__all__ = ["FORMAT_VERSION", "UndecodableDescription", "UnsupportedEncodingVersion", "decode_description",
           "description_from", "encode_description"]
