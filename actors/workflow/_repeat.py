"""Repeat: run an action again each time it terminates normally, a number of times or for ever."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import NORMAL, Component, ComponentFailed, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import integer, template

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef


class Repeat(Component):
    """SmartFrog's Repeat.

    When started it deploys ``action`` as ``running_0``; each time the running copy terminates
    normally it deploys a fresh one (``running_1``, …) until ``repeat`` copies (default 1) have
    run, then terminates with the last one's record. ``repeat`` -1 (any negative number) runs
    it for ever; 0 terminates normally at once. A copy that terminates abnormally, or fails to
    deploy, terminates the Repeat with its record.
    """

    def deploy(self) -> None:
        self._action = template(self.context, "action")
        self._repeat = integer(self.context, "repeat", 1)
        self._runs = 0

    @property
    def runs(self) -> int:
        """How many copies have terminated normally so far."""
        return self._runs

    def start(self) -> None:
        if self._repeat == 0:
            self.context.terminate_self(self.context.record(NORMAL, "repeat 0: nothing to run"))
            return
        self._deploy_run()

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        if not record.is_normal:
            return Reaction.TERMINATE
        self._runs += 1
        if 0 <= self._repeat <= self._runs:
            return Reaction.TERMINATE
        try:
            self._deploy_run()
        except ComponentFailed as failure:
            self.context.terminate_self(failure.record)
        return Reaction.HANDLED

    def _deploy_run(self) -> None:
        self.context.deploy_child(f"running_{self._runs}", self._action)
