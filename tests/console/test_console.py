"""The web console in a real headless Chromium: trees, attributes, live changes, terminate, launch."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.actors.daemon_helpers import DaemonProcess, User, free_port, running_daemon
from tests.console.harness import ConsoleProcess, click, open_browser, running_console, screenshot, wait_until

SHOP = """\
#include "org/smartfrog/components.sf"

sfConfig extends Compound {
    web extends Prim { [public] greeting "hello"; port 8080; }
    db extends Prim { size 3; }
}
"""

GREETER = """\
#include "org/smartfrog/components.sf"

sfConfig extends Compound {
    web extends Prim {
        webSchema extends Schema {
            sfAssertionPhase "static";
            greeting extends String { description "what the page says"; }
            port extends Integer;
        }
        greeting TBD;
        port TBD;
    }
}
"""


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User.make(tmp_path_factory.mktemp("console-user"))
    (user.home / "shop.sf").write_text(SHOP)
    return user


@pytest.fixture(scope="module")
def daemon(user: User) -> Iterator[DaemonProcess]:
    with running_daemon(user, user.home / "daemon-state", free_port()) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def console(user: User, daemon: DaemonProcess) -> Iterator[ConsoleProcess]:
    templates = user.home / "templates"
    templates.mkdir()
    (templates / "greeter.sf").write_text(GREETER)
    with running_console(user, "--bind", f"127.0.0.1:{free_port()}", "--host", daemon.host,
                         "--templates", str(templates)) as console:
        yield console


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with open_browser() as driver:
        yield driver


def up(user: User, daemon: DaemonProcess, app: str) -> None:
    result = user.run("up", str(user.home / "shop.sf"), "--name", app, "--host", daemon.host, "--settle", "0")
    assert result.returncode == 0, result.stdout + result.stderr


def node(driver: WebDriver, path: str, state: str) -> str:
    """Wait until the tree shows ``path`` in ``state``; its row's CSS selector."""
    selector = f'.node[data-path="{path}"][data-state="{state}"]'
    wait_until(driver, lambda driver: driver.find_elements(By.CSS_SELECTOR, selector), f"{path} {state}")
    return selector


def text(driver: WebDriver, selector: str) -> str:
    """The text of the element at ``selector``, read at once (the tree is redrawn as events come)."""
    value = driver.execute_script("const e = document.querySelector(arguments[0]); return e && e.textContent;",
                                  selector)
    assert isinstance(value, str), f"nothing at {selector}"
    return value


def attribute_rows(driver: WebDriver) -> dict[str, list[str]]:
    rows = driver.execute_script("""
        const rows = {};
        for (const row of document.querySelectorAll("#attributes tbody tr[data-attribute]")) {
            rows[row.dataset.attribute] = [...row.cells].slice(1).map((cell) => cell.textContent);
        }
        return rows;""")
    assert isinstance(rows, dict)
    return rows


def test_the_page_shows_a_deployed_application_as_a_tree_with_hosts_states_and_attributes(
        user: User, daemon: DaemonProcess, console: ConsoleProcess, browser: WebDriver) -> None:
    up(user, daemon, "shop")

    browser.get(console.url)
    web = node(browser, "shop:web", "started")
    root = node(browser, "shop", "started")
    click(browser, f"{web} .name")
    wait_until(browser, lambda driver: "greeting" in attribute_rows(driver), "the attributes of shop:web")
    screenshot(browser, "tree-and-attributes")

    assert text(browser, f"{web} .icon") == "●"
    assert text(browser, f"{web} .host") == socket.gethostname()
    assert text(browser, f"{root} .class") == "sd_actors.actors.Compound"
    assert text(browser, f'{node(browser, "shop:db", "started")} .name') == "db"
    rows = attribute_rows(browser)
    assert rows["greeting"] == ['"hello"', "public"]
    assert rows["port"] == ["8080", ""]
    click(browser, f"{root} .name")
    wait_until(browser, lambda driver: text(driver, "#selected-title") == "shop" and "sfClass" in attribute_rows(driver)
               and "greeting" not in attribute_rows(driver), "the attributes of shop")
    assert not {"web", "db"} & set(attribute_rows(browser))  # its children are in the tree, not among its attributes
    assert browser.find_element(By.ID, "record").text == "none"


def test_terminating_from_the_command_line_changes_the_page_without_a_reload(
        user: User, daemon: DaemonProcess, console: ConsoleProcess, browser: WebDriver) -> None:
    up(user, daemon, "orders")
    browser.get(console.url)
    click(browser, f'{node(browser, "orders:db", "started")} .name')
    browser.execute_script("window.sdSamePage = 'not reloaded';")

    down = user.run("down", "orders", "--host", daemon.host)

    assert down.returncode == 0, down.stderr
    root = node(browser, "orders", "terminated")
    wait_until(browser, lambda driver: driver.find_element(By.ID, "record-kind").text == "normal",
               "the termination record of orders:db")
    screenshot(browser, "terminated-from-the-cli")
    assert browser.execute_script("return window.sdSamePage;") == "not reloaded"
    assert text(browser, f"{root} .icon") == "■"
    assert not browser.find_elements(By.CSS_SELECTOR, f"{root} button")  # nothing left to terminate


def test_an_abnormal_termination_from_the_tree_fails_the_component_and_its_parent_by_shared_fate(
        user: User, daemon: DaemonProcess, console: ConsoleProcess, browser: WebDriver) -> None:
    up(user, daemon, "cart")
    browser.get(console.url)

    click(browser, f'{node(browser, "cart:db", "started")} button.abort')
    alert = wait_until(browser, lambda driver: driver.switch_to.alert, "the confirmation")
    assert alert.text == "Terminate abnormally cart:db?"
    alert.accept()

    root = node(browser, "cart", "failed")
    click(browser, f"{root} .name")
    wait_until(browser, lambda driver: driver.find_element(By.ID, "record-kind").text == "abnormal",
               "the abnormal record of cart")
    screenshot(browser, "terminated-abnormally-from-the-tree")
    assert text(browser, f"{root} .icon") == "✖"
    assert "cart:db" in browser.find_element(By.ID, "record").text
    assert not {"web", "db"} & set(attribute_rows(browser))  # terminated children are not attributes either
    status = user.run("status", "cart", "--json", "--host", daemon.host)
    assert json.loads(status.stdout)["applications"][0]["status"] == "failed", status.stdout


def test_the_launch_form_asks_for_the_missing_fields_and_the_new_application_comes_up(
        user: User, daemon: DaemonProcess, console: ConsoleProcess, browser: WebDriver) -> None:
    browser.get(console.url)
    browser.find_element(By.ID, "tab-launch").click()
    wait_until(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, '[data-template="greeter"]'),
               "the greeter template")[0].click()
    name = browser.find_element(By.ID, "app-name")
    name.clear()
    name.send_keys("hello1")
    browser.find_element(By.CSS_SELECTOR, '[data-field="web:port"]').send_keys("8080")

    browser.find_element(By.ID, "deploy").click()  # greeting left empty

    error = browser.find_element(By.CSS_SELECTOR, '[data-error-for="web:greeting"]')
    assert error.text == "a value is required"
    screenshot(browser, "launch-form-missing-field")
    assert "hello1" not in user.run("ls", "--host", daemon.host).stdout
    hint = browser.find_element(By.CSS_SELECTOR, '[data-field="web:greeting"]').find_element(By.XPATH, "..").text
    assert "String — what the page says" in hint

    browser.find_element(By.CSS_SELECTOR, '[data-field="web:greeting"]').send_keys("hello from the form")
    browser.find_element(By.ID, "deploy").click()

    node(browser, "hello1:web", "started")
    wait_until(browser, lambda driver: driver.find_element(By.ID, "progress-text").text == "hello1 is up",
               "that hello1 is up")
    click(browser, '.node[data-path="hello1:web"] .name')
    wait_until(browser, lambda driver: "greeting" in attribute_rows(driver), "the attributes of hello1:web")
    screenshot(browser, "launched-from-the-form")
    assert attribute_rows(browser)["greeting"] == ['"hello from the form"', ""]
    assert attribute_rows(browser)["port"] == ["8080", ""]


def test_the_server_checks_the_launch_values_again(console: ConsoleProcess, browser: WebDriver) -> None:
    browser.get(console.url)

    answer = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        postJson("/api/launch", {template: "greeter", name: "hello2", values: {"web:greeting": "hi", "web:port": "x"}})
            .then(() => done("accepted"), (error) => done({status: error.status, data: error.data}));
    """)

    assert answer == {"status": 400, "data": {"problems": {"web:port": "must be Integer, not 'x'"}}}


def test_the_console_refuses_to_start_on_a_template_folder_that_does_not_exist(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    result = user.run("console", "--bind", "127.0.0.1:0", "--host", daemon.host, "--templates",
                      str(tmp_path / "missing"))

    assert result.returncode == 3
    assert f"template folder {tmp_path / 'missing'} does not exist" in result.stderr


def test_the_page_says_when_its_daemon_stops_answering_and_carries_on_when_it_is_back(
        user: User, tmp_path_factory: pytest.TempPathFactory, browser: WebDriver) -> None:
    state = tmp_path_factory.mktemp("restarted") / "state"
    with running_daemon(user, state, free_port()) as daemon, \
            running_console(user, "--bind", "127.0.0.1:0", "--host", daemon.host) as console:
        up(user, daemon, "steady")
        browser.get(console.url)
        node(browser, "steady:web", "started")

        daemon.stop()
        wait_until(browser, lambda driver: text(driver, "#daemon") == "daemon not answering",
                   "that the daemon does not answer")
        screenshot(browser, "daemon-not-answering")
        assert "no answer from the daemon" in (browser.find_element(By.ID, "daemon").get_attribute("title") or "")
        assert "stale" in (browser.find_element(By.ID, "tree").get_attribute("class") or "")
        daemon.start()

        wait_until(browser, lambda driver: text(driver, "#daemon") == f"daemon {socket.gethostname()}",
                   "that the daemon answers again")
        node(browser, "steady:web", "started")
        assert "stale" not in (browser.find_element(By.ID, "tree").get_attribute("class") or "")
