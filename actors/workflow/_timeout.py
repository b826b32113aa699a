"""Timeout: an action that must terminate normally within a time limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import ABNORMAL, Component, ComponentContext, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import milliseconds, template

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.actors._clock import Timer


class Timeout(Component):
    """SmartFrog's Timeout.

    When started it deploys ``action`` as ``running`` and gives it ``time`` milliseconds of the
    System's clock. When the action terminates first, the Timeout terminates with its record;
    when the time runs out first, the Timeout terminates abnormally, and the action with it.
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._timer: Timer | None = None  # terminate() runs even when deploy() failed

    def deploy(self) -> None:
        self._action = template(self.context, "action")
        self._time = milliseconds(self.context, "time")
        self._finished = False

    def start(self) -> None:
        self._timer = self.context.call_later(self._time / 1000, self._time_up)
        self.context.deploy_child("running", self._action)

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        self._finished = True
        self._cancel_timer()
        return Reaction.TERMINATE

    def terminate(self, record: TerminationRecord) -> None:
        self._cancel_timer()

    def _time_up(self) -> None:
        if not self._finished:
            self._finished = True
            self.context.terminate_self(self.context.record(
                ABNORMAL, f"timeout: action did not terminate within {self._time:g} ms"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
