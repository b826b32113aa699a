"""A plugin module loaded by daemons with ``--plugin stuck_vm`` in tests/policies/test_watchdog_guards.py.

``StuckVM``: a VM whose stop fails while the file its ``failStopWhile`` names exists, as when
libvirtd is restarting or hung (the session's libvirtd serves every test: it cannot be broken for one).
``WaitForFile``: a component whose deploy waits until the file its ``path`` names exists, so that a
test can act between the deployment of the components before it and their start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from sd_actors.actors import Component, TerminationRecord
from sd_actors.plugins import hookimpl
from sd_actors.plugins._vm import VM, DomainError


class StuckVM(VM):
    def terminate(self, record: TerminationRecord) -> None:
        flag = self.context.attribute("failStopWhile", "")
        if isinstance(flag, str) and flag and os.path.exists(flag):
            self._stop_watching()
            raise DomainError(f"{':'.join(self.context.path)}: libvirt does not answer ({flag} exists)")
        super().terminate(record)


class WaitForFile(Component):
    def deploy(self) -> None:
        path = str(self.context.attribute("path"))
        while not os.path.exists(path) and not self.context.termination_requested:
            time.sleep(0.02)  # a file another process creates: nothing to wait on but polling it


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"tests.StuckVM": StuckVM, "tests.WaitForFile": WaitForFile}
