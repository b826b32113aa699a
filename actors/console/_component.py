"""DeployManagement (SmartFrog's management console) as a component: while it runs, the daemon
that runs it serves its web console."""

from __future__ import annotations

import contextlib
import io
import weakref
from typing import TYPE_CHECKING, Final

from sd_actors.actors._component import Prim
from sd_actors.actors._errors import DeploymentError

if TYPE_CHECKING:
    from sd_actors.actors._component import ComponentContext
    from sd_actors.actors._daemon import Daemon
    from sd_actors.actors._records import TerminationRecord

DEFAULT_BIND_ADDRESS: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3880


class WebConsole(Prim):
    """Serves the web console of the daemon it runs on, from start until it terminates.

    Attributes (all optional): ``bindAddress`` (default 127.0.0.1; anywhere else every request
    needs the token of the URL it publishes), ``port`` (default 3880; 0 picks a free one). Once
    started its ``url`` attribute says where the console is (``sd-actors status`` and the console
    itself show it).
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._serving = contextlib.ExitStack()

    def start(self) -> None:
        from sd_actors.actors._daemon import DAEMON_SHARED_KEY
        from sd_actors.actors.console._plugin import open_daemon_console

        context = self.context
        daemon_ref = context.shared(DAEMON_SHARED_KEY, lambda: None)
        daemon: Daemon | None = daemon_ref() if isinstance(daemon_ref, weakref.ref) else None
        if daemon is None:
            raise DeploymentError(f"{context.ref.name_text}: DeployManagement serves the web console of the daemon "
                                  "it runs on; deploy it with 'sd-actors up' (an embedded System has no daemon), "
                                  "or run 'sd-actors console'")
        address = context.typed_attribute("bindAddress", str, DEFAULT_BIND_ADDRESS)
        port = context.typed_attribute("port", int, DEFAULT_PORT)
        running = self._serving.enter_context(open_daemon_console(daemon, f"{address}:{port}", io.StringIO()))
        if running is not None:
            context.set_attribute("url", running.url)

    def terminate(self, record: TerminationRecord) -> None:
        self._serving.close()
