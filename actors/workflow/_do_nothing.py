"""DoNothing: a stand-in and a timer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sd_actors.actors import NORMAL, Component, ComponentContext, TerminationRecord
from sd_actors.actors.workflow._attributes import flag, milliseconds, text

if TYPE_CHECKING:
    from sd_actors.actors._clock import Timer

logger = logging.getLogger(__name__)


class DoNothing(Component):
    """SmartFrog's DoNothing.

    Lives for ``time`` milliseconds of the System's clock (negative, the default: until told to
    stop), then terminates with a record of kind ``terminationType`` (default ``normal``). With
    ``message`` it logs the message, after its own name, when it starts; with ``printEvents``
    it logs each step of its lifecycle.
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._timer: Timer | None = None  # terminate() runs even when deploy() failed
        self._print_events = False

    def deploy(self) -> None:
        context = self.context
        self._time = milliseconds(context, "time", -1)
        self._kind = text(context, "terminationType", NORMAL) or NORMAL
        self._message = text(context, "message", None)
        self._print_events = flag(context, "printEvents", False)
        self._log_event("deployed")

    def start(self) -> None:
        self._log_event("started")
        if self._message is not None:
            logger.info("%s: %s", self.context.ref.name_text, self._message)
        if self._time == 0:
            self._time_up()
        elif self._time > 0:
            self._timer = self.context.call_later(self._time / 1000, self._time_up)

    def terminate(self, record: TerminationRecord) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._log_event(f"terminated: {record}")

    def _time_up(self) -> None:
        self._timer = None
        self.context.terminate_self(self.context.record(self._kind, f"DoNothing: {self._time:g} ms are over"))

    def _log_event(self, event: str) -> None:
        if self._print_events:
            logger.info("%s %s", self.context.ref.name_text, event)
