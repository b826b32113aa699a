"""Who may use the console: a token off localhost, no change on GET, no request forged by another site."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from sd_actors.actors.console import AccessPolicy, parse_bind
from tests.actors.daemon_helpers import DaemonProcess, User, free_port, running_daemon
from tests.console.harness import ConsoleProcess, open_browser, running_console, screenshot, wait_until

SHOP = """\
#include "org/smartfrog/components.sf"

sfConfig extends Compound {
    web extends Prim { port 8080; }
}
"""


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User.make(tmp_path_factory.mktemp("console-access-user"))
    (user.home / "shop.sf").write_text(SHOP)
    return user


@pytest.fixture(scope="module")
def daemon(user: User) -> Iterator[DaemonProcess]:
    with running_daemon(user, user.home / "daemon-state", free_port()) as daemon:
        result = user.run("up", str(user.home / "shop.sf"), "--host", daemon.host, "--settle", "0")
        assert result.returncode == 0, result.stderr
        yield daemon


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
          body: object = None) -> tuple[int, dict[str, object]]:
    """The status and JSON body of one request (4xx and 5xx included)."""
    data = None if body is None else json.dumps(body).encode()
    assert url.startswith("http://")  # what urlopen is given is always the console's own URL
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            text = error.read()
        return error.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}


def csrf_of(page: str) -> str:
    match = re.search(r'name="sd-csrf" content="([^"]+)"', page)
    assert match, page
    return match.group(1)


def page(url: str, headers: dict[str, str] | None = None) -> str:
    assert url.startswith("http://")
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (http only, checked above)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(response.read().decode())


@pytest.fixture(scope="module")
def open_console(user: User, daemon: DaemonProcess) -> Iterator[ConsoleProcess]:
    """A console bound to every address (0.0.0.0), so it needs its token."""
    with running_console(user, "--bind", f"0.0.0.0:{free_port()}", "--host", daemon.host) as console:
        yield console


def test_bound_off_localhost_the_console_prints_a_url_with_its_token(open_console: ConsoleProcess) -> None:
    warning = open_console.output.read_line(timeout=5)

    assert re.fullmatch(r"http://[^/]+:\d+/\?token=[\w-]{20,}", open_console.url), open_console.url
    assert warning == "it listens beyond this machine: every request needs the token in that URL; keep it secret"


def test_bound_off_localhost_every_request_without_the_token_is_refused(open_console: ConsoleProcess) -> None:
    port = open_console.base.rsplit(":", 1)[1].rstrip("/")
    local = f"http://127.0.0.1:{port}"
    token = open_console.url.split("token=", 1)[1]

    refusals = [fetch(f"{local}{path}") for path in ("/", "/api/status", "/api/templates", "/static/console.js",
                                                     "/api/events", "/api/component?path=shop")]
    wrong = fetch(f"{local}/api/status", headers={"Authorization": "Bearer not-the-token"})
    allowed = fetch(f"{local}/api/status", headers={"Authorization": f"Bearer {token}"})

    assert {status for status, _ in refusals} == {401}
    assert all("needs the token printed when it started" in str(body["error"]) for _, body in refusals)
    assert wrong[0] == 401
    assert allowed[0] == 200
    assert [app["name"] for app in allowed[1]["applications"]] == ["shop"]  # type: ignore[union-attr,index]


def test_a_browser_with_the_printed_url_sees_the_tree_and_one_without_the_token_is_refused(
        open_console: ConsoleProcess) -> None:
    port = open_console.base.rsplit(":", 1)[1].rstrip("/")
    token = open_console.url.split("token=", 1)[1]

    with open_browser() as browser:
        browser.get(f"http://127.0.0.1:{port}/")
        refused = browser.find_element(By.TAG_NAME, "body").text
        screenshot(browser, "refused-without-token")
        browser.get(f"http://127.0.0.1:{port}/?token={token}")
        wait_until(browser, lambda driver: driver.find_elements(
            By.CSS_SELECTOR, '.node[data-path="shop:web"][data-state="started"]'), "shop:web started")
        screenshot(browser, "tree-with-token")

    assert "needs the token printed when it started" in refused


def test_nothing_changes_on_get_and_a_post_needs_the_pages_csrf_value_and_its_own_origin(
        open_console: ConsoleProcess) -> None:
    port = open_console.base.rsplit(":", 1)[1].rstrip("/")
    local = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {open_console.url.split('token=', 1)[1]}"}
    csrf = csrf_of(page(f"{local}/", auth))
    terminate = {"path": ["shop", "web"], "kind": "normal"}

    by_get = fetch(f"{local}/api/terminate?path=shop:web", headers=auth)
    without_csrf = fetch(f"{local}/api/terminate", method="POST", body=terminate,
                         headers={**auth, "Content-Type": "application/json"})
    cross_site = fetch(f"{local}/api/terminate", method="POST", body=terminate,
                       headers={**auth, "Content-Type": "application/json", "X-SD-Console-CSRF": csrf,
                                "Origin": "http://evil.example"})
    as_a_form = fetch(f"{local}/api/terminate", method="POST", body=terminate,
                      headers={**auth, "Content-Type": "application/x-www-form-urlencoded", "X-SD-Console-CSRF": csrf})
    status = fetch(f"{local}/api/status", headers=auth)[1]

    assert by_get[0] == 405
    assert without_csrf == (403, {"error": "a request that changes something needs the page's X-SD-Console-CSRF "
                                           "header; reload the console"})
    assert cross_site == (403, {"error": "a request from http://evil.example may not change anything here "
                                         "(cross-site request refused)"})
    assert as_a_form[0] == 403
    web = [c for c in status["applications"][0]["components"] if c["path"] == ["shop", "web"]]  # type: ignore[index]
    assert web[0]["state"] == "started"


def test_on_localhost_no_token_is_needed_but_a_page_reached_by_another_name_is_refused(
        user: User, daemon: DaemonProcess) -> None:
    with running_console(user, "--bind", "127.0.0.1:0", "--host", daemon.host) as console:  # any free port
        port = int(console.base.rsplit(":", 1)[1].rstrip("/"))
        assert console.url == f"http://127.0.0.1:{port}/"  # no token on localhost
        allowed = fetch(f"http://127.0.0.1:{port}/api/status")
        rebound = fetch(f"http://127.0.0.1:{port}/api/status", headers={"Host": f"attacker.example:{port}"})

    assert allowed[0] == 200
    assert rebound[0] == 403
    assert f"not to Host 'attacker.example:{port}'" in str(rebound[1]["error"])


def test_a_daemon_started_with_console_serves_it_talking_to_itself_with_its_own_keys(
        user: User, tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    state = tmp_path_factory.mktemp("console-daemon") / "state"
    with running_daemon(user, state, free_port(), "--console", f"127.0.0.1:{port}") as daemon:
        up = user.run("up", str(user.home / "shop.sf"), "--name", "own", "--host", daemon.host, "--settle", "0")
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 15
        status: tuple[int, dict[str, object]] = (0, {})
        while time.monotonic() < deadline:
            try:
                status = fetch(f"http://127.0.0.1:{port}/api/status")
            except urllib.error.URLError:  # not listening yet
                continue
            if status[0] == 200:
                break

    assert status[0] == 200, status
    assert [app["name"] for app in status[1]["applications"]] == ["own"]  # type: ignore[union-attr,index]


@pytest.mark.parametrize(("bind", "expected"), [
    ("127.0.0.1:3880", ("127.0.0.1", 3880)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),  # noqa: S104 (test data: no socket is bound)
    ("localhost", ("localhost", 3880)),
    (":4000", ("127.0.0.1", 4000)),
    ("[::1]:4000", ("::1", 4000)),
], ids=["address-and-port", "any-port", "name-only", "port-only", "ipv6"])
def test_bind_takes_an_address_a_port_or_both(bind: str, expected: tuple[str, int]) -> None:
    assert parse_bind(bind) == expected


def test_a_bind_with_a_bad_port_says_what_a_good_one_looks_like() -> None:
    with pytest.raises(ValueError, match=r"'127.0.0.1:http': the port must be a number from 0 to 65535, as in "):
        parse_bind("127.0.0.1:http")


@pytest.mark.parametrize(("host", "needs_token"), [
    ("127.0.0.1", False), ("127.0.0.2", False), ("localhost", False), ("::1", False),
    ("0.0.0.0", True), ("::", True), ("10.0.0.2", True), ("console.example", True),  # noqa: S104 (test data)
])
def test_only_a_console_bound_to_loopback_goes_without_a_token(host: str, needs_token: bool) -> None:
    assert (AccessPolicy.for_address(host, 3880).token is not None) is needs_token
