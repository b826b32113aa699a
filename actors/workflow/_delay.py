"""Delay: wait, then deploy an action (or just end)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import NORMAL, Component, ComponentContext, ComponentFailed, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import milliseconds, optional_template

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.actors._clock import Timer


class Delay(Component):
    """SmartFrog's Delay.

    When started it waits ``time`` milliseconds of the System's clock, then deploys ``action``
    as ``running`` and from then on terminates when it does, with its record. Without an
    action it terminates normally when the time is up. An action that fails to deploy
    terminates the Delay with the failure's record.
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._timer: Timer | None = None  # terminate() runs even when deploy() failed

    def deploy(self) -> None:
        self._action = optional_template(self.context, "action")
        self._time = milliseconds(self.context, "time")

    def start(self) -> None:
        if self._time <= 0:
            self._time_up()
        else:
            self._timer = self.context.call_later(self._time / 1000, self._time_up)

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        return Reaction.TERMINATE

    def terminate(self, record: TerminationRecord) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _time_up(self) -> None:
        self._timer = None
        if self._action is None:
            self.context.terminate_self(self.context.record(NORMAL, f"delay: {self._time:g} ms are over"))
            return
        try:
            self.context.deploy_child("running", self._action)
        except ComponentFailed as failure:
            self.context.terminate_self(failure.record)
