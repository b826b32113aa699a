"""TerminationRecord: why a component stopped, and where it started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NORMAL: Final = "normal"
ABNORMAL: Final = "abnormal"
EXTERNAL_REFERENCE_DEAD: Final = "externalReferenceDead"
DETACHED: Final = "detached"
"""The daemon stopped, the application did not: what can outlive the daemon (Component.detach) is left running."""


@dataclass(frozen=True, slots=True)
class TerminationRecord:
    """SmartFrog's TerminationRecord.

    :param kind: ``normal``, ``abnormal``, ``externalReferenceDead`` or any other word (``Try``
        picks its continuation by it).
    :param description: what happened, for people.
    :param path: the complete name of the component the termination started from.
    :param cause: the exception text that caused it, if any.
    """

    kind: str
    description: str = ""
    path: tuple[str, ...] = ()
    cause: str | None = None

    @classmethod
    def normal(cls, description: str = "", path: tuple[str, ...] = ()) -> TerminationRecord:
        return cls(NORMAL, description, path)

    @classmethod
    def abnormal(cls, description: str, path: tuple[str, ...] = (), cause: str | None = None) -> TerminationRecord:
        return cls(ABNORMAL, description, path, cause)

    @classmethod
    def from_exception(cls, error: BaseException, path: tuple[str, ...], doing: str) -> TerminationRecord:
        return cls(ABNORMAL, f"{doing} failed: {error}", path, type(error).__name__)

    @property
    def is_normal(self) -> bool:
        return self.kind == NORMAL

    def where(self) -> str:
        return ":".join(self.path) if self.path else "?"

    def __str__(self) -> str:
        text = f"{self.kind} termination of {self.where()}"
        if self.description:
            text += f": {self.description}"
        if self.cause and self.cause not in self.description:
            text += f" (cause: {self.cause})"
        return text
