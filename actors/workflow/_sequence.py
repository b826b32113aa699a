"""Sequence: children one at a time, each started when the previous one terminated normally."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from sd_actors.actors import NORMAL, Component, ComponentFailed, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import child_templates, flag

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.descriptions import ComponentDescription


class Sequence(Component):
    """SmartFrog's Sequence.

    When started it deploys its first child (children keep their names); each time the running
    child terminates normally it deploys the next. After the last one it terminates with that
    child's record (unless ``sfShouldTerminate`` is false: then it stays). A child that
    terminates abnormally, or fails to deploy, terminates the Sequence with its record. A
    Sequence without children terminates normally at once.
    """

    def deploy(self) -> None:
        self._pending: collections.deque[tuple[str, ComponentDescription]] = collections.deque(
            child_templates(self.context))
        self._should_terminate = flag(self.context, "sfShouldTerminate", True)

    def start(self) -> None:
        if self._pending:
            self._deploy_next()  # a failure here is the Sequence's failure to start
        elif self._should_terminate:
            self.context.terminate_self(self.context.record(NORMAL, "a Sequence without children has nothing to run"))

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        if not record.is_normal:
            return Reaction.TERMINATE
        if not self._pending:
            return Reaction.TERMINATE if self._should_terminate else Reaction.CONTINUE
        try:
            self._deploy_next()
        except ComponentFailed as failure:
            self.context.terminate_self(failure.record)
        return Reaction.HANDLED

    def _deploy_next(self) -> None:
        name, template = self._pending.popleft()
        self.context.deploy_child(name, template)
