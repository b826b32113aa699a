"""Parallel: all children at once; done when every one of them has terminated normally."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import NORMAL, Component, ComponentFailed, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import child_templates, flag

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.descriptions import ComponentDescription


class Parallel(Component):
    """SmartFrog's Parallel.

    When started it deploys all its children (they keep their names). By default they step
    through their lifecycle together: all created, then all deployed, then all started. With
    ``asynchCreateChild`` each child is created, deployed and started on its own, concurrently,
    so a slow one does not hold the others back; ``start()`` returns once every one is started
    or has failed.

    A child that fails to deploy fails the Parallel's start (``terminateOnAbnormalChildDeploy``,
    default true) or is left out. A child that terminates abnormally terminates the Parallel
    with its record (``terminateOnAbnormalChildTermination``, default true) or is forgotten.
    When the last child has terminated, the Parallel terminates normally (``sfShouldTerminate``,
    default true). With nothing to run it stays, unless ``terminateOnEmptyDeploy`` is true.
    """

    def deploy(self) -> None:
        context = self.context
        self._templates: list[tuple[str, ComponentDescription]] = child_templates(context)
        self._asynchronous = flag(context, "asynchCreateChild", False)
        self._terminate_on_empty_deploy = flag(context, "terminateOnEmptyDeploy", False)
        self._terminate_on_abnormal_termination = flag(context, "terminateOnAbnormalChildTermination", True)
        self._terminate_on_abnormal_deploy = flag(context, "terminateOnAbnormalChildDeploy", True)
        self._should_terminate = flag(context, "sfShouldTerminate", True)

    def start(self) -> None:
        if self._asynchronous:
            self._deploy_concurrently()
        else:
            self._deploy_together()
        if not self._live_children() and self._terminate_on_empty_deploy:
            self.context.terminate_self(self.context.record(NORMAL, "a Parallel with no child to run"))

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        if not record.is_normal and self._terminate_on_abnormal_termination:
            return Reaction.TERMINATE
        if self._live_children() or not self._should_terminate:
            return Reaction.CONTINUE
        if record.is_normal:
            return Reaction.TERMINATE
        # The last child ended abnormally, which this Parallel was told to tolerate.
        self.context.terminate_self(self.context.record(
            NORMAL, "every child has terminated (abnormal terminations tolerated)"))
        return Reaction.HANDLED

    def _live_children(self) -> list[ComponentRef]:
        # Not the Parallel's own count: a child may leave without telling it (a Terminator with
        # detachFirst), and a child that failed to deploy is still listed until forgotten.
        return [child for child in self.context.children if child.state is None or not child.state.is_final]

    def _deploy_together(self) -> None:
        created: list[ComponentRef] = []
        for name, template in self._templates:
            try:
                created.append(self.context.create_child(name, template))
            except ComponentFailed as failure:
                self._deploy_failed(name, failure)
        for step in ("deploy", "start"):
            for child in list(created):
                try:
                    getattr(child, step)()
                except ComponentFailed as failure:
                    created.remove(child)
                    self._deploy_failed(child.name, failure)

    def _deploy_failed(self, name: str, failure: ComponentFailed) -> None:
        for child in self.context.children:
            if child.name == name:
                self.context.terminate_child(child, failure.record)
        if self._terminate_on_abnormal_deploy:
            raise failure

    def _deploy_concurrently(self) -> None:
        futures = [(name, self.context.deploy_child_nowait(name, template)) for name, template in self._templates]
        first_failure: ComponentFailed | None = None
        # Wait for every one, even after a failure: none may still be deploying when start() ends.
        for _, future in futures:
            try:
                future.result()
            except ComponentFailed as failure:  # deploy_child already terminated it
                first_failure = first_failure or failure
        if first_failure is not None and self._terminate_on_abnormal_deploy:
            raise first_failure
