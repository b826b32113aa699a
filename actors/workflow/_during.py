"""During: run an action for a while, then stop it and end normally."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import NORMAL, Component, ComponentContext, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import milliseconds, template

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.actors._clock import Timer


class During(Component):
    """SmartFrog's During.

    When started it deploys ``action`` as ``running``; ``time`` milliseconds later it
    terminates normally, and the action with it (a negative time: until told to stop). When
    the action terminates first, the During terminates with the action's record.
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._timer: Timer | None = None  # terminate() runs even when deploy() failed

    def deploy(self) -> None:
        self._action = template(self.context, "action")
        self._time = milliseconds(self.context, "time")
        self._finished = False

    def start(self) -> None:
        self.context.deploy_child("running", self._action)
        if self._time == 0:
            self._time_up()
        elif self._time > 0:
            self._timer = self.context.call_later(self._time / 1000, self._time_up)

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        self._finished = True
        self._cancel_timer()
        return Reaction.TERMINATE

    def terminate(self, record: TerminationRecord) -> None:
        self._cancel_timer()

    def _time_up(self) -> None:
        if not self._finished:
            self._finished = True
            self.context.terminate_self(self.context.record(NORMAL, f"during: {self._time:g} ms are over"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
