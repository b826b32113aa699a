"""Run: deploy an action as an application of its own, then end."""

from __future__ import annotations

from sd_actors.actors import NORMAL, Component, DeploymentError
from sd_actors.actors.workflow._attributes import template, text


class Run(Component):
    """SmartFrog's Run.

    When started it deploys a copy of ``action`` as a new application of the System,
    independent of the Run's lifecycle, then terminates normally. The application is named
    ``asName``, else the action's ``sfProcessComponentName``, else after the Run's own path
    (``app_steps_run_action`` for ``app:steps:run``). The copy has no enclosing description, as
    an application deployed by itself: its LAZY links resolve within it. An action that fails
    to deploy fails the Run's start.

    SmartFrog's ``parent`` attribute (adopt the action as a child of another Compound) is not
    supported yet and is reported as an error.
    """

    def deploy(self) -> None:
        context = self.context
        self._action = template(context, "action")
        if "parent" in context.description:
            raise DeploymentError(f"{context.ref.name_text}: Run's 'parent' attribute is not supported: remove it to "
                                  "deploy the action as an application of its own (named by asName)")
        process_name = self._action.get("sfProcessComponentName")
        self._name = (text(context, "asName", None)
                      or (process_name if isinstance(process_name, str) else None)
                      or "_".join((*context.path, "action")))

    def start(self) -> None:
        self.context.deploy_application(self._name, self._action.copy())
        self.context.terminate_self(self.context.record(NORMAL, f"deployed application {self._name!r}"))
