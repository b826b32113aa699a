"""Every problem with a description is a DescriptionError that says what, where and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple


class SourceLocation(NamedTuple):
    """A 1-based position in a description file."""

    path: Path | str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class DescriptionError(Exception):
    """A description cannot be parsed or resolved.

    The parts stay available as attributes (``location``, ``source_line``, ``hint``,
    ``phase``) so that nobody has to parse the message.
    """

    phase: str = "raw"

    def __init__(
        self,
        message: str,
        *,
        at: SourceLocation | None = None,
        source_line: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.location = at
        self.source_line = source_line if source_line is not None else _read_line(at)
        self.hint = hint
        super().__init__(self.render())

    def attach_source_line(self, line: str) -> None:
        """Add the source line (for descriptions parsed from strings) and refresh the message."""
        self.source_line = line
        self.args = (self.render(),)

    def render(self) -> str:
        """The compiler-style report: ``path:line:col: message``, the line, a caret, the hint."""
        head = f"{self.location}: {self.message}" if self.location else self.message
        lines = [head]
        if self.location is not None and self.source_line is not None:
            text = self.source_line.rstrip("\n").expandtabs(1)
            lines.append(f"    {text}")
            lines.append("    " + " " * max(self.location.column - 1, 0) + "^")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def _read_line(at: SourceLocation | None) -> str | None:
    if at is None or not isinstance(at.path, Path):
        return None
    try:
        with at.path.open(encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if number == at.line:
                    return text
    except OSError:
        return None
    return None


def close_match_hint(name: str, known: Iterable[str], *, otherwise: str) -> str:
    """``did you mean 'x'?`` when a known name is close to ``name``, else ``otherwise``."""
    close = difflib.get_close_matches(name, [k for k in known if isinstance(k, str)], n=1)
    return f"did you mean {close[0]!r}?" if close else otherwise


class DescriptionSyntaxError(DescriptionError):
    """The text is not valid SmartFrog notation."""


class IncludeNotFound(DescriptionError):
    """An ``#include`` names a file that is in none of the include folders."""


class NestingTooDeep(DescriptionError):
    """Components, vectors or expressions are nested deeper than sd-actors accepts."""


class TypeResolutionError(DescriptionError):
    """An ``extends`` prototype cannot be found or is not a component description."""

    phase = "type"


class FinalAttributeOverridden(TypeResolutionError):
    """An attribute tagged ``sfFinal`` is overridden by ``extends`` or placement."""


class PlacementError(DescriptionError):
    """A placed attribute (``a:b:c value;``) cannot be put where its name says."""

    phase = "place"


class FunctionError(DescriptionError):
    """A function, operator, schema or assertion is malformed or cannot be evaluated."""

    phase = "function"


class SfConfigError(DescriptionError):
    """The description has no ``sfConfig`` component description."""

    phase = "sfConfig"


class UnresolvedReference(DescriptionError):
    """A link names an attribute that does not exist where the link looks for it."""

    phase = "link"


class CyclicReference(DescriptionError):
    """Links or prototypes refer to each other in a circle, or a component would contain itself."""

    phase = "link"


class UnresolvedTBD(DescriptionError):
    """An attribute inside ``sfConfig`` is still ``TBD`` (to be defined)."""

    phase = "link"


class SchemaViolation(DescriptionError):
    """An attribute is missing or has the wrong type according to a schema."""

    phase = "link"


class AssertionFailed(DescriptionError):
    """An ``Assertions`` component has a predicate that is not true."""

    phase = "link"


class PropertyMissing(UnresolvedReference):
    """A ``PROPERTY``/``ENVPROPERTY`` reference names something that is not set."""


class UserPhaseError(DescriptionError):
    """A user phase named in ``phaseList`` cannot be loaded or failed."""
