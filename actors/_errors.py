"""Errors of the runtime: one base, a subclass per cause a caller may handle."""

from __future__ import annotations

from sd_actors.actors._records import TerminationRecord


class DeploymentError(Exception):
    """A component could not be created, deployed, started or reached."""


class ComponentFailed(DeploymentError):
    """A component failed; ``record`` names it and says why."""

    def __init__(self, record: TerminationRecord) -> None:
        super().__init__(str(record))
        self.record = record


class UnknownComponentClass(DeploymentError):
    """An ``sfClass`` names no registered component type."""


class UnknownComponent(DeploymentError, KeyError):
    """No component has the path that was asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown component"


class LinkError(DeploymentError):
    """A LAZY link cannot be resolved at run time."""


class UnexpectedMessage(DeploymentError):
    """An actor received a message it does not handle."""

    def __init__(self, actor: object, message: object) -> None:
        super().__init__(f"{actor} cannot handle {message!r}")
