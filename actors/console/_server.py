"""The console's web server: the single-page app, its JSON API and a live stream of lifecycle events.

The console is a client of one daemon, like ``sd-actors status``: every API call is a request over
the daemon's ZeroMQ protocol, made on a worker thread with a client of its own. One watcher thread
keeps a ``WatchApplications`` stream open (renewed every few seconds, as the daemon bounds it) and
fans its notices out to every open page as server-sent events; after each renewal it sends a fresh
snapshot of the trees when they changed, so a notice lost between two streams is repaired.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import pluggy
from aiohttp import web

from sd_actors.actors._client_commands import EXIT_FAILED
from sd_actors.actors.client import CommandError, request
from sd_actors.actors.console._access import CSRF_HEADER, AccessPolicy, Handler
from sd_actors.actors.console._panels import panels_json
from sd_actors.actors.console._plugin import DEFAULT_CONSOLE_PORT
from sd_actors.actors.console._templates import APP_NAME, Template, TemplateError, list_templates
from sd_actors.descriptions import DescriptionError, library_folder, to_sf
from sd_actors.net._node import Client
from sd_actors.net._protocol import (
    ComponentDetails,
    ComponentTerminated,
    DeployAccepted,
    DeployApplication,
    Done,
    GetComponent,
    GetStatus,
    LifecycleNotice,
    RequestFailed,
    StatusReply,
    TerminateComponent,
    WatchApplications,
    WatchEnded,
)
from sd_actors.plugins import ConsolePanel, collect_console_panels, make_plugin_manager

logger = logging.getLogger(__name__)

# How long one WatchApplications stream lasts before the watcher renews it (and how long closing
# the console may wait for the watcher).
WATCH_SECONDS: Final = 5.0
HEARTBEAT_SECONDS: Final = 15.0
# How long a status question may take (the watcher's probe too: a daemon gone shows that soon)...
QUICK_SECONDS: Final = 3.0
# ...and anything else (terminating a large subtree takes a while).
ANSWER_SECONDS: Final = 60.0

Connect = Callable[[], AbstractContextManager[Client]]


def default_template_folders() -> tuple[Path, ...]:
    """The examples shipped with sd-actors (``descriptions/examples``)."""
    return (library_folder().parent / "examples",)


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the console listens and which folders hold the templates it offers."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_CONSOLE_PORT
    templates: tuple[Path, ...] = dataclasses.field(default_factory=default_template_folders)
    requested_by: str = "web console"
    watch_seconds: float = WATCH_SECONDS


class ConsoleError(Exception):
    """The console cannot start (the address is taken, a template folder is missing)."""


class Console:
    """The aiohttp application of one console. Use :func:`open_console`."""

    def __init__(self, settings: ConsoleSettings, *, connect: Connect, access: AccessPolicy,
                 panels: Sequence[ConsolePanel] = ()) -> None:
        self.settings = settings
        self.connect = connect
        self.access = access
        self.panels = tuple(panels)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pages: set[asyncio.Queue[tuple[str, object] | None]] = set()
        self._snapshot: object = None
        self._stopping = threading.Event()
        static = resources.files("sd_actors.actors.console") / "static"
        self._index = (static / "index.html").read_text(encoding="utf-8")
        self.app = web.Application(middlewares=[self._guard])
        self.app.router.add_get("/", self.index)
        self.app.router.add_get("/favicon.ico", self.no_icon)
        self.app.router.add_static("/static/", Path(str(static)))
        self.app.router.add_get("/api/status", self.status)
        self.app.router.add_get("/api/component", self.component)
        self.app.router.add_get("/api/templates", self.templates)
        self.app.router.add_get("/api/events", self.events)
        self.app.router.add_post("/api/terminate", self.terminate)
        self.app.router.add_post("/api/launch", self.launch)
        self.app.on_shutdown.append(self._close_pages)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Through self.access at each request: with port 0 the policy is made again once the port is known.
        return await self.access.middleware(request, handler)

    # -- talking to the daemon (on worker threads) --------------------------------------------------
    def _ask(self, message: object, timeout: float = ANSWER_SECONDS) -> object:
        with self.connect() as client:
            return request(client, message, timeout)

    async def _ask_async(self, message: object) -> object:
        """The daemon's answer; a refusal is the client's mistake (400), no answer the daemon's (502)."""
        try:
            return await asyncio.to_thread(self._ask, message)
        except CommandError as error:
            failure = web.HTTPBadRequest if error.code == EXIT_FAILED else web.HTTPBadGateway
            raise failure(text=json.dumps({"error": str(error)}), content_type="application/json") from None

    def _status_json(self) -> object:
        reply = self._ask(GetStatus(), QUICK_SECONDS)
        assert isinstance(reply, StatusReply)
        return dataclasses.asdict(reply)

    # -- pages and the API -------------------------------------------------------------------------
    async def index(self, _: web.Request) -> web.Response:
        page = self._index.replace("{{csrf}}", self.access.csrf).replace("{{csrf_header}}", CSRF_HEADER)
        return web.Response(text=page, content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})

    async def no_icon(self, _: web.Request) -> web.Response:
        return web.Response(status=204)

    async def status(self, _: web.Request) -> web.Response:
        try:
            return web.json_response(await asyncio.to_thread(self._status_json))
        except CommandError as error:
            return web.json_response({"error": str(error)}, status=502)

    async def component(self, request: web.Request) -> web.Response:
        path = tuple(name for name in request.query.get("path", "").split(":") if name)
        if not path:
            return web.json_response({"error": "say which component: ?path=app:component"}, status=400)
        reply = await self._ask_async(GetComponent(path=path))
        assert isinstance(reply, ComponentDetails)
        # On a worker thread: a plugin's panel must not hold up the page's other requests.
        panels = await asyncio.to_thread(panels_json, self.panels, reply)
        return web.json_response({**dataclasses.asdict(reply), "panels": panels})

    async def templates(self, _: web.Request) -> web.Response:
        templates = await asyncio.to_thread(list_templates, self.settings.templates)
        return web.json_response([_template_json(template) for template in templates])

    async def terminate(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        path = body.get("path")
        kind = body.get("kind", "normal")
        if not (isinstance(path, list) and path and all(isinstance(name, str) and name for name in path)):
            return web.json_response({"error": "path must be a list of names, like [\"app\", \"web\"]"}, status=400)
        if kind not in ("normal", "abnormal"):
            return web.json_response({"error": f"kind must be \"normal\" or \"abnormal\", not {kind!r}"}, status=400)
        reply = await self._ask_async(TerminateComponent(
            path=tuple(path), kind=kind, description=f"{kind} termination requested from the web console"))
        assert isinstance(reply, ComponentTerminated)
        return web.json_response(dataclasses.asdict(reply))

    async def launch(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        name, app, values = body.get("template"), body.get("name"), body.get("values", {})
        templates = {template.name: template for template in
                     await asyncio.to_thread(list_templates, self.settings.templates)}
        template = templates.get(name) if isinstance(name, str) else None
        if template is None:
            return web.json_response({"error": f"no template named {name!r}; known: {', '.join(sorted(templates))}"},
                                     status=400)
        if not isinstance(app, str) or not APP_NAME.fullmatch(app):
            return web.json_response({"problems": {"name": "an application name is 1 to 63 letters, digits, '.', "
                                                           "'_' or '-', starting with a letter or digit"}},
                                     status=400)
        if not (isinstance(values, dict) and all(isinstance(v, str) for v in values.values())):
            return web.json_response({"error": "values must map each field's path to a text"}, status=400)
        try:
            config = await asyncio.to_thread(template.resolve, values)
        except TemplateError as error:
            return web.json_response({"problems": error.problems}, status=400)
        except DescriptionError as error:
            return web.json_response({"error": error.render()}, status=400)
        message = DeployApplication(app=app, description=to_sf(config), requested_by=self.settings.requested_by)
        accepted: concurrent.futures.Future[object] = concurrent.futures.Future()
        threading.Thread(target=self._deploy, args=(message, accepted), daemon=True,
                         name=f"sd-actors-console-deploy-{app}").start()
        answer = await asyncio.wrap_future(accepted)
        if isinstance(answer, DeployAccepted):
            if answer.already_running:
                return web.json_response({"error": f"{app} is already running on {answer.host}: nothing created"},
                                         status=409)
            return web.json_response({"app": app, "host": answer.host}, status=202)
        return web.json_response({"error": str(answer)}, status=502)

    def _deploy(self, message: DeployApplication, accepted: concurrent.futures.Future[object]) -> None:
        """Send the deployment and drain its progress (the pages see it as notices); announce the end."""
        try:
            with self.connect() as client:
                for answer in client.stream(message, timeout=600, end=(WatchEnded, RequestFailed), first_timeout=10):
                    if isinstance(answer, RequestFailed):
                        answer = CommandError(answer.error + (f"\nhint: {answer.hint}" if answer.hint else ""))
                    if not accepted.done():
                        accepted.set_result(answer)
                    if isinstance(answer, WatchEnded):
                        self._publish("launched", dataclasses.asdict(answer))
        except (CommandError, TimeoutError, OSError) as error:
            if not accepted.done():
                accepted.set_result(error)

    # -- live events -------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, object] | None] = asyncio.Queue()
        self._pages.add(queue)
        try:
            try:
                snapshot = await asyncio.to_thread(self._status_json)
                await _send_event(response, "snapshot", snapshot)
            except CommandError as error:
                await _send_event(response, "daemon", {"error": str(error)})
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": still here\n\n")  # a page that went away is noticed here
                    continue
                if item is None:
                    break
                await _send_event(response, *item)
        except ConnectionResetError:  # the page went away
            pass
        finally:
            self._pages.discard(queue)
        return response

    async def _close_pages(self, _: web.Application) -> None:
        for queue in list(self._pages):
            queue.put_nowait(None)

    def _publish(self, event: str, data: object) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def deliver() -> None:
            for queue in list(self._pages):
                queue.put_nowait((event, data))

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver)

    def watch(self) -> None:
        """The watcher thread: stream notices from the daemon until the console stops."""
        reachable = True
        while not self._stopping.is_set():
            try:
                with self.connect() as client:
                    snapshot = self._status_json()
                    if snapshot != self._snapshot:
                        self._snapshot = snapshot
                        self._publish("snapshot", snapshot)
                    if not reachable:
                        reachable = True
                        self._publish("daemon", {"error": ""})
                    # The stream ends with Done after watch_seconds; silence past that is a daemon gone.
                    for answer in client.stream(WatchApplications(seconds=self.settings.watch_seconds),
                                                timeout=self.settings.watch_seconds + QUICK_SECONDS,
                                                end=(Done, RequestFailed)):
                        if isinstance(answer, LifecycleNotice):
                            self._publish("notice", dataclasses.asdict(answer))
            except (CommandError, TimeoutError, OSError) as error:
                if reachable:
                    logger.warning("console: the daemon does not answer: %s", error)
                    reachable = False
                    # One wording whichever request noticed it (a status ask or the event stream).
                    said = str(error) if isinstance(error, CommandError) else f"no answer from the daemon ({error})"
                    self._publish("daemon", {"error": said})
                self._stopping.wait(1.0)

    def stop(self) -> None:
        self._stopping.set()


async def _json_body(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body is not JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}),
                                 content_type="application/json")
    return body


async def _send_event(response: web.StreamResponse, event: str, data: object) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


def _template_json(template: Template) -> dict[str, object]:
    return {"name": template.name, "file": str(template.path), "error": template.error,
            "fields": [{"path": field.path, "kinds": list(field.kinds), "input": field.input,
                        "description": field.description} for field in template.fields]}


@dataclass(frozen=True)
class RunningConsole:
    """A console that serves: ``url`` is what to open (with the token when one is needed)."""

    console: Console
    host: str
    port: int

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104 (a comparison)
        host = f"[{host}]" if ":" in host else host
        token = self.console.access.token
        return f"http://{host}:{self.port}/" + (f"?token={token}" if token else "")


@contextmanager
def open_console(settings: ConsoleSettings, *, connect: Connect,
                 plugin_manager: pluggy.PluginManager | None = None) -> Iterator[RunningConsole]:
    """Serve the console (on a thread of its own) until the block ends.

    :param connect: opens a client of the daemon the console shows (a context manager).
    :param plugin_manager: whose plugins contribute the component panels (default: ``make_plugin_manager()``).
    :raises ConsoleError: the address cannot be listened on, a template folder does not exist, or a
        plugin's panels are not panels.
    """
    missing = [str(folder) for folder in settings.templates if not folder.is_dir()]
    if missing:
        raise ConsoleError(f"template folder {', '.join(missing)} does not exist; give folders of .sf files "
                           "with --templates DIR")
    try:
        panels = collect_console_panels(plugin_manager or make_plugin_manager())
    except TypeError as error:
        raise ConsoleError(f"{error}; fix or uninstall that plugin") from None
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[int] = concurrent.futures.Future()
    console = Console(settings, connect=connect, access=AccessPolicy.for_address(settings.host, settings.port),
                      panels=panels)
    console.loop = loop
    runner = web.AppRunner(console.app, access_log=None, shutdown_timeout=1.0)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as error:
            raise ConsoleError(f"the console cannot listen on {settings.host}:{settings.port}: {error.strerror}; "
                               "choose another address with --bind HOST:PORT") from None
        port = runner.addresses[0][1]
        if settings.port == 0:  # an ephemeral port: the Host check learns it now
            console.access = AccessPolicy.for_address(settings.host, port)
        started.set_result(port)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as error:  # noqa: BLE001 (handed to the opener, which raises it)
            started.set_exception(error)
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    server = threading.Thread(target=serve, name="sd-actors-console", daemon=True)
    server.start()
    port = started.result()
    watcher = threading.Thread(target=console.watch, name="sd-actors-console-watch", daemon=True)
    watcher.start()
    try:
        yield RunningConsole(console, settings.host, port)
    finally:
        console.stop()
        loop.call_soon_threadsafe(loop.stop)
        server.join()
        watcher.join(1.0)  # a daemon thread: it ends with its current stream (at most watch_seconds)


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` (IPv6 as ``[::1]:3880``) as a host and a port."""
    host, port = text, DEFAULT_CONSOLE_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    return host or "127.0.0.1", port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{whole!r}: the port must be a number from 0 to 65535, as in 127.0.0.1:3880")
    return int(text)


__all__ = ["Console", "ConsoleError", "ConsoleSettings", "RunningConsole", "open_console", "parse_bind"]
