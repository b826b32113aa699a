"""Timeout: an action that must terminate normally within a time limit."""

from __future__ import annotations

from sd_actors.actors import ABNORMAL, TerminationRecord
from sd_actors.actors.workflow._time_limited import TimeLimited


class Timeout(TimeLimited):
    """SmartFrog's Timeout.

    When started it deploys ``action`` as ``running`` and gives it ``time`` milliseconds of the
    System's clock. When the action terminates first, the Timeout terminates with its record;
    when the time runs out first, the Timeout terminates abnormally, and the action with it.
    """

    def start(self) -> None:
        self._timer = self.context.call_later(self._time / 1000, self._time_up)
        self.context.deploy_child("running", self._action)

    def time_up_record(self) -> TerminationRecord:
        return self.context.record(ABNORMAL, f"timeout: action did not terminate within {self._time:g} ms")
