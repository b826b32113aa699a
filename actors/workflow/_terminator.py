"""Terminator: terminate the component a LAZY link names, then itself."""

from __future__ import annotations

import contextlib

import pykka

from sd_actors.actors import ABNORMAL, Component, ComponentRef, DeploymentError, TerminationRecord
from sd_actors.actors._messages import TerminateComponent
from sd_actors.actors.workflow._attributes import flag, text


class Terminator(Component):
    """SmartFrog's Terminator.

    When started it terminates the component that ``kill`` (a LAZY link) names with a record of
    kind ``type`` and the text ``description``, then terminates itself with a record of kind
    ``selftype`` (both ``normal`` by default). The target's parent is told, as when the target
    terminates by itself; with ``detachFirst`` it is not (the target leaves its parent, which
    lives on). Without ``kill`` only the Terminator terminates. A target that has already
    terminated is left alone. When ``kill`` names nothing, or anything but a component, the
    Terminator terminates abnormally whatever ``selftype`` says.
    """

    def deploy(self) -> None:
        context = self.context
        self._kind = text(context, "type", "normal") or "normal"
        self._self_kind = text(context, "selftype", "normal") or "normal"
        self._description = text(context, "description", "terminated by a Terminator") or ""
        self._detach_first = flag(context, "detachFirst", False)

    def start(self) -> None:
        context = self.context
        try:
            self._terminate_target()
        except DeploymentError as error:
            context.terminate_self(TerminationRecord(
                ABNORMAL, f"could not terminate kill: {error}", context.path, f"{type(error).__name__}: {error}"))
            return
        context.terminate_self(context.record(self._self_kind, self._description))

    def _terminate_target(self) -> None:
        context = self.context
        if "kill" not in context.description:
            return
        target = context.attribute("kill")  # LAZY: resolved now, to the running component
        if not isinstance(target, ComponentRef):
            raise DeploymentError(f"{context.ref.name_text}: kill must be a LAZY link to a component, "
                                  f"found {target!r}")
        if not target.alive:
            return
        record = TerminationRecord(self._kind, self._description, target.path)
        if target is context.ref or _is_ancestor(target, context.ref):
            # Terminating an ancestor terminates this Terminator too: waiting for it here, in the
            # thread that ancestor will ask to terminate us, would deadlock. Only ask for it.
            if target.actor_ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    target.actor_ref.tell(TerminateComponent(record=record, notify_parent=not self._detach_first))
        elif self._detach_first:
            context.terminate_child(target, record)  # quietly: its parent is not told
        else:
            target.terminate(record)


def _is_ancestor(candidate: ComponentRef, ref: ComponentRef) -> bool:
    node = ref.parent
    while node is not None:
        if node is candidate:
            return True
        node = node.parent
    return False
