"""The sd-actors runtime: components as pykka actors with lifecycle, liveness and supervision.

Embed it with :func:`open_system`; write component types by subclassing :class:`Component`.
"""

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
