"""The data model of a description: component descriptions, references, function applications.

Values are Python objects with SmartFrog's kinds kept explicit:

======================  ==============================================
SmartFrog kind           Python value
======================  ==============================================
String                   ``str``
Integer                  ``int``
Long (``240L``)          ``Long`` (an ``int`` subclass)
Float (``3.25f``)        ``float``
Double (``2.5D``)        ``Double`` (a ``float`` subclass)
Boolean                  ``bool``
NULL                     ``None``
Vector                   ``list``
byte array               ``bytes``
TBD                      the ``TBD`` singleton
component description    ``ComponentDescription``
reference (LAZY/DATA)    ``Reference``
APPLY / ASSERT           ``Apply``
======================  ==============================================
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, final

from sd_actors.descriptions._errors import SourceLocation


class Long(int):
    """A SmartFrog Long (``240L``): an ``int`` that remembers its kind."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Long({int(self)})"


class Double(float):
    """A SmartFrog Double (``2.5D``): a ``float`` that remembers its kind."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Double({float(self)})"


def to_float32(value: float) -> float:
    """``value`` rounded to the nearest 32-bit float, as Java's Float holds it (infinite when out of range)."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


class _TBDType:
    """``TBD``: a value that must be overridden before the description is used."""

    _instance: _TBDType | None = None

    def __new__(cls) -> _TBDType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "TBD"

    def __reduce__(self) -> str:
        return "TBD"


TBD: Final = _TBDType()


# Reference part kinds.
ROOT: Final = "ROOT"
PARENT: Final = "PARENT"
THIS: Final = "THIS"
HERE: Final = "HERE"
ATTRIB: Final = "ATTRIB"
PROPERTY: Final = "PROPERTY"
IPROPERTY: Final = "IPROPERTY"
ENVPROPERTY: Final = "ENVPROPERTY"
IENVPROPERTY: Final = "IENVPROPERTY"
CONSTANT: Final = "CONSTANT"
HOST: Final = "HOST"
PROCESS: Final = "PROCESS"

NAMED_PART_KINDS: Final = frozenset(
    {HERE, ATTRIB, PROPERTY, IPROPERTY, ENVPROPERTY, IENVPROPERTY, CONSTANT, HOST}
)


@dataclass(frozen=True, slots=True)
class RefPart:
    """One step of a reference: ``ROOT``, ``PARENT``, ``THIS``, ``PROCESS`` or a kind with a name."""

    kind: str
    name: str | None = None


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()


@dataclass(frozen=True, slots=True)
class Reference:
    """A link to another attribute (``a:b``), possibly ``LAZY``, ``DATA`` or ``OPTIONAL(default)``."""

    parts: tuple[RefPart, ...]
    lazy: bool = False
    data: bool = False
    optional: bool = False
    default: object = NO_DEFAULT
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def with_flags(self, *, lazy: bool | None = None, data: bool | None = None) -> Reference:
        return Reference(
            self.parts,
            lazy=self.lazy if lazy is None else lazy,
            data=self.data if data is None else data,
            optional=self.optional,
            default=self.default,
            location=self.location,
        )

    def path_text(self) -> str:
        """The reference's path in SmartFrog notation, without LAZY/DATA/OPTIONAL."""
        from sd_actors.descriptions._printer import format_reference_path

        return format_reference_path(self)

    def __str__(self) -> str:
        from sd_actors.descriptions._printer import format_value

        return format_value(self)


class PlacementSlot:
    """The key under which a not-yet-placed attribute (``a:b:c value;``) waits for placement."""

    __slots__ = ("parts", "location")

    def __init__(self, parts: tuple[str, ...], location: SourceLocation | None) -> None:
        self.parts = parts
        self.location = location

    def __repr__(self) -> str:
        return ":".join(self.parts)


Key = str | PlacementSlot


@final  # the resolver's hot paths test exact types (type(v) is ComponentDescription)
class ComponentDescription:
    """An ordered tree of attributes: SmartFrog's component description (CD).

    ``eager`` is False for ``extends DATA``/``extends LAZY`` descriptions, which a
    Compound keeps as data instead of deploying. ``prototypes`` holds the
    ``extends`` list until type resolution has merged it.
    """

    __slots__ = ("_attributes", "_tags", "parent", "eager", "prototypes", "location", "locations", "state",
                 "_shared", "frozen", "holds_placements")

    def __init__(
        self,
        parent: ComponentDescription | None = None,
        *,
        eager: bool = True,
        location: SourceLocation | None = None,
    ) -> None:
        self._attributes: dict[Key, object] = {}
        self._tags: dict[Key, frozenset[str]] = {}
        self.parent = parent
        self.eager = eager
        self.prototypes: list[object] | None = None
        self.location = location
        self.locations: dict[Key, SourceLocation] = {}
        # Resolution bookkeeping: 0 new, 1 in progress, 2 done (per phase, reset between phases).
        self.state = 0
        # True while _tags and locations are still shared with the description this was copied from.
        self._shared = False
        # A frozen description holds only literals and is shared instead of copied by ``extends``
        # (static schemas: the same in every component). Unfreeze before changing one.
        self.frozen = False
        # True when this description, or one inside it, may hold an attribute not placed yet
        # (``a:b:c value;``): the place phase visits only these. Never reset, so True may be out of
        # date; False is certain. Kept by set, replace_value, adopt_attributes and thaw.
        self.holds_placements = False

    # -- mapping interface (attribute names only; pending placements are hidden) -------------
    def __getitem__(self, name: str) -> object:
        return self._attributes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._attributes

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._attributes if isinstance(k, str))

    def __len__(self) -> int:
        return sum(1 for k in self._attributes if isinstance(k, str))

    def get(self, name: str, default: object = None) -> object:
        return self._attributes.get(name, default)

    def keys(self) -> list[str]:
        return [k for k in self._attributes if isinstance(k, str)]

    def items(self) -> list[tuple[str, object]]:
        return [(k, v) for k, v in self._attributes.items() if isinstance(k, str)]

    def values(self) -> list[object]:
        return [v for k, v in self._attributes.items() if isinstance(k, str)]

    def tags(self, name: str) -> frozenset[str]:
        """The tags of attribute ``name`` (empty when it has none)."""
        return self._tags.get(name, frozenset())

    # -- raw access, including pending placements --------------------------------------------
    def raw_items(self) -> list[tuple[Key, object]]:
        return list(self._attributes.items())

    def raw_keys(self) -> list[Key]:
        return list(self._attributes)

    def raw_get(self, key: Key, default: object = None) -> object:
        return self._attributes.get(key, default)

    def set(
        self,
        name: Key,
        value: object,
        *,
        tags: frozenset[str] | None = None,
        location: SourceLocation | None = None,
    ) -> None:
        """Add ``name`` at the end, or replace its value keeping its position."""
        self._attributes[name] = value
        if self._shared and (tags is not None or location is not None):
            self._unshare()
        if tags is not None:
            if tags:
                self._tags[name] = tags
            else:
                self._tags.pop(name, None)
        if location is not None:
            self.locations[name] = location
        if type(value) is ComponentDescription:
            if not value.frozen:
                value.parent = self
            if value.holds_placements:
                self.mark_placements()
        elif type(value) is Apply:
            value.body.parent = self
        if type(name) is PlacementSlot:
            self.mark_placements()

    def replace_value(self, name: Key, value: object) -> None:
        """Replace the value only (tags and position stay)."""
        self._attributes[name] = value
        if type(value) is ComponentDescription:
            if not value.frozen:
                value.parent = self
            if value.holds_placements:
                self.mark_placements()
        elif type(value) is Apply:
            value.body.parent = self

    def mark_placements(self) -> None:
        """Note that this description holds an attribute not placed yet (itself or inside)."""
        node: ComponentDescription | None = self
        while node is not None:
            node.holds_placements = True
            node = node.parent

    def values_raw(self) -> list[object]:
        return list(self._attributes.values())

    def raw_keys_set(self) -> dict[Key, object]:
        """The raw attribute mapping, for fast membership tests (do not mutate)."""
        return self._attributes

    def adopt_attributes(self, attributes: dict[Key, object], tags: dict[Key, frozenset[str]],
                         locations: dict[Key, SourceLocation], *, reparent: bool = True) -> None:
        """Take these attributes, tags and locations, owned by nobody else (type resolution's merged result).

        Tags are only the non-empty ones; tags and locations only of keys in ``attributes``.
        ``reparent=False``: the values were made for this description and have it as parent already.
        """
        self._attributes = attributes
        self._tags = tags
        self.locations = locations
        self._shared = False
        if not reparent:
            return
        for value in attributes.values():
            if type(value) is ComponentDescription:
                if not value.frozen:
                    value.parent = self
                if value.holds_placements:
                    self.mark_placements()
            elif type(value) is Apply:
                value.body.parent = self

    def replace_value_shared(self, name: Key, value: object) -> None:
        """Replace the value with a description shared with another place (a link's target)."""
        self._attributes[name] = value

    def raw_tags(self, name: Key) -> frozenset[str]:
        return self._tags.get(name, frozenset())

    def raw_tags_mapping(self) -> dict[Key, frozenset[str]]:
        """The tags of the attributes that have any, by key (do not mutate)."""
        return self._tags

    def move_to_front(self, name: Key) -> None:
        """Make ``name`` the first attribute (SmartFrog puts sfFunctionClass first in an APPLY)."""
        attributes = self._attributes
        if next(iter(attributes)) != name:
            self._attributes = {name: attributes[name], **{k: v for k, v in attributes.items() if k != name}}

    def _unshare(self) -> None:
        self._tags = dict(self._tags)
        self.locations = dict(self.locations)
        self._shared = False

    def remove(self, name: Key) -> None:
        del self._attributes[name]
        # Shared tags and locations are copied only when there is something to take out of them.
        if name in self._tags or name in self.locations:
            if self._shared:
                self._unshare()
            self._tags.pop(name, None)
            self.locations.pop(name, None)

    # -- navigation --------------------------------------------------------------------------
    def root(self) -> ComponentDescription:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def name_in_parent(self) -> str | None:
        if self.parent is None:
            return None
        for key, value in self.parent._attributes.items():
            if value is self or (isinstance(value, Apply) and value.body is self):
                return key if isinstance(key, str) else repr(key)
        return None

    def path(self) -> list[str]:
        """Names from the outermost description down to this one."""
        names: list[str] = []
        node: ComponentDescription | None = self
        while node is not None and node.parent is not None:
            name = node.name_in_parent()
            names.append(name if name is not None else "?")
            node = node.parent
        names.reverse()
        return names

    def is_ancestor_of(self, other: ComponentDescription) -> bool:
        node: ComponentDescription | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    # -- copying -------------------------------------------------------------------------------
    def copy(self, parent: ComponentDescription | None = None) -> ComponentDescription:
        """A deep copy re-parented under ``parent`` (what ``extends`` does to a prototype)."""
        # The hot path of type resolution: tags and locations are shared until either side writes.
        if self.frozen:
            return self
        return self.thaw(parent)

    def thaw(self, parent: ComponentDescription | None = None) -> ComponentDescription:
        """A deep copy that is never frozen (even when this one is)."""
        new = ComponentDescription.__new__(ComponentDescription)
        new.parent = parent
        new.eager = self.eager
        new.location = self.location
        new.state = self.state
        new._tags = self._tags
        new.locations = self.locations
        new._shared = True
        new.frozen = False
        new.holds_placements = self.holds_placements
        self._shared = True
        new.prototypes = None if self.prototypes is None else [copy_value(p, new) for p in self.prototypes]
        # Copied whole, then the descriptions, functions and vectors in it replaced by copies.
        attributes = dict(self._attributes)
        frozen = self.frozen
        for key, value in self._attributes.items():
            if type(value) in _IMMUTABLE:
                continue
            if type(value) is ComponentDescription:
                # copy(), inline: a frozen child is shared, unless this whole tree is being thawed.
                if not value.frozen or frozen:
                    attributes[key] = value.thaw(new)
            elif type(value) is Apply or type(value) is list:
                attributes[key] = copy_value(value, new)
        new._attributes = attributes
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComponentDescription):
            return NotImplemented
        return (
            self.eager == other.eager
            and self.keys() == other.keys()
            and all(self.tags(k) == other.tags(k) for k in self)
            and all(values_equal(self[k], other[k]) for k in self)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        from sd_actors.descriptions._printer import format_value

        return f"<ComponentDescription {format_value(self)[:200]}>"


@final  # as ComponentDescription: tested by exact type
class Apply:
    """A function application (``APPLY {…}``) or predicate (``ASSERT {…}``), possibly LAZY."""

    __slots__ = ("kind", "body", "lazy", "location")

    def __init__(
        self, kind: str, body: ComponentDescription, *, lazy: bool = False, location: SourceLocation | None = None
    ) -> None:
        self.kind = kind
        self.body = body
        self.lazy = lazy
        self.location = location

    @property
    def function(self) -> str:
        name = self.body.get("sfFunctionClass", "")
        return name if isinstance(name, str) else ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Apply):
            return NotImplemented
        return self.kind == other.kind and self.lazy == other.lazy and self.body == other.body

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        from sd_actors.descriptions._printer import format_value

        return format_value(self)


def copy_value(value: object, parent: ComponentDescription) -> object:
    """Deep-copy ``value`` as an attribute of ``parent``."""
    if type(value) in _IMMUTABLE:
        return value  # most values: spared the isinstance calls below
    if isinstance(value, ComponentDescription):
        return value.copy(parent)
    if isinstance(value, list):
        return [copy_value(item, parent) for item in value]
    if isinstance(value, Apply):
        return Apply(value.kind, value.body.copy(parent), lazy=value.lazy, location=value.location)
    return value


# Types of values that copy_value hands back as they are.
_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None), bytes, Long, Double, Reference, _TBDType})


def values_equal(a: object, b: object) -> bool:
    """Equality that also compares SmartFrog kinds (``1`` is not ``1L``, ``True`` is not ``1``)."""
    if value_kind(a) != value_kind(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def value_kind(value: object) -> str:
    """The SmartFrog kind of a value: ``String``, ``Integer``, ``Long``, ``Float``, …"""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, Long):
        return "Long"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, Double):
        return "Double"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if value is None:
        return "Null"
    if isinstance(value, list):
        return "Vector"
    if isinstance(value, bytes):
        return "ByteArray"
    if value is TBD:
        return "TBD"
    if isinstance(value, ComponentDescription):
        return "CD"
    if isinstance(value, Reference):
        return "Reference"
    if isinstance(value, Apply):
        return "Apply"
    return type(value).__name__
