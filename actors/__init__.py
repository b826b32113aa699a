"""The sd-actors runtime: components as pykka actors with lifecycle, liveness and supervision.

Embed it with :func:`open_system`; write component types by subclassing :class:`Component`.
"""

# The command line lives in this package too (sd_actors.actors._cli), and most of its commands only
# talk to a daemon: importing the runtime here (pykka, the journal, the plugins) would cost each
# of them tens of milliseconds before it does anything. So the names below are imported when first
# used (PEP 562 module __getattr__); the imports under TYPE_CHECKING tell type checkers what they are.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sd_actors.actors._clock import Clock, FakeClock, RealClock, Timer
    from sd_actors.actors._component import Component, ComponentContext, Compound, Prim, Reaction
    from sd_actors.actors._errors import (
        ComponentFailed,
        DeploymentError,
        LinkError,
        UnexpectedMessage,
        UnknownComponent,
        UnknownComponentClass,
    )
    from sd_actors.actors._events import LifecycleEvent, State
    from sd_actors.actors._journal import (
        ApplicationStatus,
        DuplicateApplication,
        Journal,
        JournalError,
        RecoveryPlan,
        open_journal,
    )
    from sd_actors.actors._records import ABNORMAL, DETACHED, EXTERNAL_REFERENCE_DEAD, NORMAL, TerminationRecord
    from sd_actors.actors._runtime import ComponentRef
    from sd_actors.actors._supervisor import Supervisor, SupervisorStatistics
    from sd_actors.actors._system import ComponentSpec, System, SystemStatistics, open_system

_MODULE_OF: Final = {
    **dict.fromkeys(("Clock", "FakeClock", "RealClock", "Timer"), "_clock"),
    **dict.fromkeys(("Component", "ComponentContext", "Compound", "Prim", "Reaction"), "_component"),
    **dict.fromkeys(("ComponentFailed", "DeploymentError", "LinkError", "UnexpectedMessage", "UnknownComponent",
                     "UnknownComponentClass"), "_errors"),
    **dict.fromkeys(("LifecycleEvent", "State"), "_events"),
    **dict.fromkeys(("ApplicationStatus", "DuplicateApplication", "Journal", "JournalError", "RecoveryPlan",
                     "open_journal"), "_journal"),
    **dict.fromkeys(("ABNORMAL", "DETACHED", "EXTERNAL_REFERENCE_DEAD", "NORMAL", "TerminationRecord"), "_records"),
    "ComponentRef": "_runtime",
    **dict.fromkeys(("Supervisor", "SupervisorStatistics"), "_supervisor"),
    **dict.fromkeys(("ComponentSpec", "System", "SystemStatistics", "open_system"), "_system"),
}
"""The private module that defines each public name."""


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__all__ = [
    "ABNORMAL",
    "DETACHED",
    "EXTERNAL_REFERENCE_DEAD",
    "NORMAL",
    "ApplicationStatus",
    "Clock",
    "Component",
    "ComponentContext",
    "ComponentFailed",
    "ComponentRef",
    "ComponentSpec",
    "Compound",
    "DeploymentError",
    "DuplicateApplication",
    "FakeClock",
    "Journal",
    "JournalError",
    "LifecycleEvent",
    "LinkError",
    "Prim",
    "Reaction",
    "RealClock",
    "RecoveryPlan",
    "State",
    "Supervisor",
    "SupervisorStatistics",
    "System",
    "SystemStatistics",
    "TerminationRecord",
    "Timer",
    "UnexpectedMessage",
    "UnknownComponent",
    "UnknownComponentClass",
    "open_journal",
    "open_system",
]
