"""Message classes the wire tests send: between them they use every kind of field.

They live at module level because the registry resolves annotations through the module, as it
does for the real messages in actors/.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from sd_actors.net import MessageRegistry, wire_message


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


@wire_message("test.leaf")
@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    name: str


@wire_message("test.other_leaf")
@dataclass(frozen=True, slots=True, kw_only=True)
class OtherLeaf:
    size: int


@wire_message("test.everything")
@dataclass(frozen=True, slots=True, kw_only=True)
class Everything:
    text: str = ""
    number: int = 0
    ratio: float = 0.0
    flag: bool = False
    blob: bytes = b""
    nothing: None = None
    color: Color = Color.RED
    level: Level = Level.LOW
    mode: Literal["fast", "safe"] = "fast"
    names: tuple[str, ...] = ()
    pair: tuple[str, int] = ("", 0)
    table: tuple[tuple[str, int], ...] = ()
    leaf: Leaf | None = None
    leaves: tuple[Leaf | OtherLeaf, ...] = ()
    either: int | str = 0


@wire_message("test.tree")
@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    """A message that contains itself, like a component description and its children."""

    name: str
    children: tuple[Tree, ...] = ()


@wire_message("test.positive")
@dataclass(frozen=True, slots=True, kw_only=True)
class Positive:
    """A message that checks its own value when it is built."""

    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"value must be positive, not {self.value}")


@wire_message("test.ping")
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    text: str


@wire_message("test.pong")
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    text: str
    payload: bytes = b""


@wire_message("test.empty")
@dataclass(frozen=True, slots=True, kw_only=True)
class Empty:
    pass


def make_registry() -> MessageRegistry:
    """A fresh registry of every test message (Leaf and OtherLeaf come in through Everything)."""
    return MessageRegistry([Everything, Tree, Positive, Ping, Pong, Empty])
