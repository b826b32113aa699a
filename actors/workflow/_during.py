"""During: run an action for a while, then stop it and end normally."""

from __future__ import annotations

from sd_actors.actors import NORMAL, TerminationRecord
from sd_actors.actors.workflow._time_limited import TimeLimited


class During(TimeLimited):
    """SmartFrog's During.

    When started it deploys ``action`` as ``running``; ``time`` milliseconds later it
    terminates normally, and the action with it (a negative time: until told to stop). When
    the action terminates first, the During terminates with the action's record.
    """

    def start(self) -> None:
        self.context.deploy_child("running", self._action)
        if self._time == 0:
            self._time_up()
        elif self._time > 0:
            self._timer = self.context.call_later(self._time / 1000, self._time_up)

    def time_up_record(self) -> TerminationRecord:
        return self.context.record(NORMAL, f"during: {self._time:g} ms are over")
