"""What During and Timeout share: an action deployed as ``running`` against a clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import Component, ComponentContext, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import milliseconds, template

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.actors._clock import Timer


class TimeLimited(Component):
    """Deploys ``action`` for ``time`` milliseconds of the System's clock. When the action
    terminates first, this terminates with the action's record; when the time is up first, with
    :meth:`time_up_record`, and the action with it. Subclasses start the action and the clock."""

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._timer: Timer | None = None  # terminate() runs even when deploy() failed

    def deploy(self) -> None:
        self._action = template(self.context, "action")
        self._time = milliseconds(self.context, "time")
        self._finished = False

    def time_up_record(self) -> TerminationRecord:
        raise NotImplementedError

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        self._finished = True
        self._cancel_timer()
        return Reaction.TERMINATE

    def terminate(self, record: TerminationRecord) -> None:
        self._cancel_timer()

    def _time_up(self) -> None:
        if not self._finished:
            self._finished = True
            self.context.terminate_self(self.time_up_record())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
