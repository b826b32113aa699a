"""Retry: deploy an action again after each abnormal termination, a bounded number of times."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sd_actors.actors import Component, ComponentFailed, Reaction, TerminationRecord
from sd_actors.actors.workflow._attributes import flag, integer, template

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef


class Retry(Component):
    """SmartFrog's Retry.

    When started it deploys ``action`` as ``running_0``. Each time the running copy terminates
    abnormally (or a copy fails to deploy) it deploys a fresh one, ``running_1``, ``running_2``,
    …, up to ``retry`` times (default 1) after the first attempt. The first copy that
    terminates normally ends the Retry with its record (unless ``sfShouldTerminate`` is false);
    when the retries are used up the Retry terminates with the last abnormal record. The
    number of the current attempt is written to the Retry's ``count`` attribute.
    """

    def deploy(self) -> None:
        self._action = template(self.context, "action")
        self._retries = max(integer(self.context, "retry", 1), 0)
        self._should_terminate = flag(self.context, "sfShouldTerminate", True)
        self._attempt = -1

    @property
    def attempt(self) -> int:
        """The number of the current attempt (0 for the first), -1 before the first."""
        return self._attempt

    def start(self) -> None:
        failure = self._deploy_attempt()
        if failure is not None:
            raise failure

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        if record.is_normal:
            return Reaction.TERMINATE if self._should_terminate else Reaction.CONTINUE
        if self._attempt >= self._retries:
            return Reaction.TERMINATE
        failure = self._deploy_attempt()
        if failure is not None:
            self.context.terminate_self(failure.record)
        return Reaction.HANDLED

    def _deploy_attempt(self) -> ComponentFailed | None:
        """Deploy the next copy, and the next while they fail to deploy; the last failure if none ran."""
        while True:
            self._attempt += 1
            # SmartFrog's Retry keeps its current attempt in its own `count` attribute.
            self.context.description.set("count", self._attempt)
            try:
                self.context.deploy_child(f"running_{self._attempt}", self._action)
            except ComponentFailed as failure:
                if self._attempt >= self._retries:
                    return failure
            else:
                return None
