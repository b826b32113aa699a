"""sd-actors' console plugin: the ``sd-actors console`` command, and the console a daemon serves itself."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from sd_actors.actors.client import CommandError, connect, request
from sd_actors.net._protocol import GetStatus
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sd_actors.actors._component import Component
    from sd_actors.actors._daemon import Daemon
    from sd_actors.actors.console._server import ConsoleSettings, RunningConsole

# Not imported from _server: this module is loaded by every sd-actors command, the server (aiohttp)
# only when a console runs.
DEFAULT_CONSOLE_PORT: Final = 3880

_EXAMPLES = f"""\
examples:
  sd-actors console                                  http://127.0.0.1:{DEFAULT_CONSOLE_PORT}/ for the local daemon
  sd-actors console --templates ./pools              offer the .sf files of ./pools on the Launch page
  sd-actors console --bind 10.0.0.2:{DEFAULT_CONSOLE_PORT} --host 10.0.0.2
                                                     reachable from elsewhere: needs the token it prints
  sd-actors daemon --console 127.0.0.1:{DEFAULT_CONSOLE_PORT}         the daemon serves the console itself
"""


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    from sd_actors.actors.console._component import WebConsole

    # SmartFrog's DeployManagement (org/smartfrog/services/management/components.sf).
    return {"sd_actors.actors.WebConsole": WebConsole}


@hookimpl
def sd_actors_cli_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                           client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser(
        "console", help="serve the web console of a daemon",
        description="Serve the web console of a daemon: its applications' component trees, live, with each "
        "component's attributes; terminate components; launch a template after filling in what it leaves TBD. "
        "Bound to localhost unless told otherwise; bound elsewhere, it prints a URL with the token every "
        "request needs.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default=f"127.0.0.1:{DEFAULT_CONSOLE_PORT}", metavar="HOST:PORT",
                        help="where the web server listens (default %(default)s; port 0: any free port)")
    parser.add_argument("--templates", action="append", default=[], metavar="DIR",
                        help="a folder of .sf templates for the Launch page (repeatable; default: the examples "
                        "shipped with sd-actors)")
    client_options(parser)
    parser.set_defaults(run=run_console)


def run_console(arguments: argparse.Namespace, out: TextIO) -> int:
    from sd_actors.actors.console._server import ConsoleError, open_console

    settings = _settings(arguments.bind, tuple(Path(folder) for folder in arguments.templates))
    stop = threading.Event()
    # Signal handlers belong to the command line, as for the daemon.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with connect(arguments, out) as client:  # the keys are checked before anything listens
            try:
                reply = request(client, GetStatus(), 5.0)
                shown = f"the daemon on {getattr(reply, 'host', '?')} at {client.endpoint}"
            except CommandError as error:
                shown = f"the daemon at {client.endpoint}, which does not answer yet ({error})"
        try:
            with open_console(settings, connect=lambda: connect(arguments, out)) as running:
                _announce(running, shown, out)
                stop.wait()
        except ConsoleError as error:
            raise CommandError(str(error)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _settings(bind: str, templates: tuple[Path, ...]) -> ConsoleSettings:
    from sd_actors.actors.console._server import ConsoleSettings, default_template_folders, parse_bind

    try:
        host, port = parse_bind(bind)
    except ValueError as error:
        raise CommandError(f"--bind {error}", 2) from None
    return ConsoleSettings(host=host, port=port, templates=templates or default_template_folders(),
                           requested_by=f"{os.environ.get('USER', 'someone')} (web console)")


def _announce(running: RunningConsole, shown: str, out: TextIO) -> None:
    print(f"sd-actors console on {running.url} showing {shown}", file=out, flush=True)
    if running.console.access.token is not None:
        print("it listens beyond this machine: every request needs the token in that URL; keep it secret",
              file=out, flush=True)


@contextmanager
def open_daemon_console(daemon: Daemon, bind: str | None, out: TextIO) -> Iterator[RunningConsole | None]:
    """``sd-actors daemon --console HOST:PORT``: the daemon's own console, a client of it with its own keys."""
    if bind is None:
        yield None
        return
    from sd_actors.actors._daemon import make_registry
    from sd_actors.actors.console._server import ConsoleError, open_console
    from sd_actors.net import authorize
    from sd_actors.net._node import Client

    keypair = daemon.keypair
    if keypair is not None:  # the console talks as the daemon itself: the daemon lets its own key in
        authorize(daemon.settings.state_dir, keypair.public, "this daemon's own web console")

    def connect_to_daemon() -> Client:
        return Client(daemon.endpoint, registry=make_registry(), keypair=keypair,
                      server_public=keypair.public if keypair is not None else None)

    try:
        # The daemon's own plugins (its --plugin modules too) contribute the panels.
        with open_console(_settings(bind, ()), connect=connect_to_daemon,
                          plugin_manager=daemon.system.runtime.plugin_manager) as running:
            _announce(running, f"this daemon ({daemon.endpoint})", out)
            yield running
    except ConsoleError as error:
        raise CommandError(str(error)) from None
