"""Messages between component actors: small frozen dataclasses, dispatched with ``match``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sd_actors.actors._records import TerminationRecord

if TYPE_CHECKING:
    from sd_actors.actors._runtime import ComponentRef


@dataclass(frozen=True, slots=True)
class CreateComponent:
    """Instantiate the component and create what it is made of (its children, for a Compound)."""


@dataclass(frozen=True, slots=True)
class DeployComponent:
    """Run the component's ``deploy()`` (a Compound then deploys its children)."""


@dataclass(frozen=True, slots=True)
class StartComponent:
    """Run the component's ``start()`` (a Compound then starts its children)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateComponent:
    """Terminate the component; ``notify_parent`` is False when the parent itself asked."""

    record: TerminationRecord
    notify_parent: bool


@dataclass(frozen=True, slots=True)
class PingComponent:
    """Liveness check: run the component's ``ping()``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildTerminated:
    """A child terminated by itself (reported to its parent)."""

    child: ComponentRef
    record: TerminationRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFailed:
    """A child failed a liveness check: the parent terminates it, then reacts."""

    child: ComponentRef
    record: TerminationRecord


@dataclass(frozen=True, slots=True)
class RunInActor:
    """Run ``function`` in the actor's thread (timers, calls from other components)."""

    function: Callable[[], Any]
