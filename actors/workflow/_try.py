"""Try: run an action, then the continuation chosen by how it terminated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import Component, ComponentFailed, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import template
from sd_actors.descriptions import ComponentDescription

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef


class Try(Component):
    """SmartFrog's Try.

    When started it deploys ``action`` as ``running``. When the action terminates, the Try
    deploys the continuation in the attribute named after the record's kind (``normal``,
    ``abnormal``, or any kind a component reports), under that name, and from then on
    terminates when the continuation does, with its record. Without such a continuation the
    Try terminates with the action's record.
    """

    def deploy(self) -> None:
        self._action = template(self.context, "action")
        self._action_running = False

    def start(self) -> None:
        self.context.deploy_child("running", self._action)
        self._action_running = True

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        if not self._action_running:
            return Reaction.TERMINATE  # the continuation ended
        self._action_running = False
        continuation = self.context.description.get(record.kind)
        if record.kind == "action" or not isinstance(continuation, ComponentDescription):
            return Reaction.TERMINATE
        try:
            self.context.deploy_child(record.kind, continuation)
        except ComponentFailed as failure:
            self.context.terminate_self(failure.record)
        return Reaction.HANDLED
