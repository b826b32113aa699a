"""Lifecycle states, and the events that announce every change of state."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sd_actors.actors._records import TerminationRecord

logger = logging.getLogger(__name__)


class State(enum.Enum):
    """Where a component is in its lifecycle: created → deployed → started → terminated or failed."""

    CREATED = "created"
    DEPLOYED = "deployed"
    STARTED = "started"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (State.TERMINATED, State.FAILED)


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A component changed state; ``record`` is set when it terminated or failed."""

    path: tuple[str, ...]
    old: State | None
    new: State
    time: float
    record: TerminationRecord | None = None
    host: str = ""
    component_class: str = ""

    @property
    def name(self) -> str:
        return ":".join(self.path)


Subscriber = Callable[[LifecycleEvent], None]


class EventBus:
    """Delivers each event to every subscriber, in order, on the thread that published it.

    Subscribers must be quick; one that raises is logged and keeps its subscription.
    """

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; return a function that removes it."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: LifecycleEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a subscriber's bug must not break the lifecycle
                logger.exception("event subscriber %r failed on %s", subscriber, event)
