"""Console panels (the sd_actors_console_panels hook): a plugin's boxes under a component's attributes.

The probe plugin is installed as a user would have it: a module with an ``sd_actors`` entry point
(a ``.dist-info`` folder) on the console's PYTHONPATH only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from sd_actors.actors.console import ConsoleError, ConsoleSettings, open_console
from sd_actors.plugins import ComponentView, ConsolePanel, hookimpl, make_plugin_manager
from sd_actors.plugins._vm_panel import is_vm, vm_rows
from tests.actors.daemon_helpers import DaemonProcess, User, free_port, running_daemon
from tests.console.harness import ConsoleProcess, click, open_browser, running_console, screenshot, wait_until

PROBE_PLUGIN = '''\
from sd_actors.plugins import ConsolePanel, hookimpl


def greets(view):
    return "greeting" in view.attributes


def greeting(view):
    return [("says", view.text("greeting")), ("state", view.state), ("class", view.component_class)]


def is_db(view):
    return view.path[-1] == "db"


def unplugged(view):
    raise RuntimeError("the probe is unplugged")


def is_shop(view):
    return view.path == ("shop",)


def not_texts(view):
    return [("children", 2)]


@hookimpl
def sd_actors_console_panels():
    return [ConsolePanel("Greeting", greets, greeting), ConsolePanel("Probe", is_db, unplugged),
            ConsolePanel("Count", is_shop, not_texts)]
'''

SHOP = """\
#include "org/smartfrog/components.sf"

sfConfig extends Compound {
    web extends Prim { greeting "hello \\"you\\""; }
    db extends Prim { size 3; }
}
"""

POOL = """\
#include "ch/cern/openlab/smartdomains/components.sf"

sfConfig extends Compound {
    vm1 extends VM {
        domainName "panel-vm1";
        hypervisor "test:///default";
        memory 256;
        vcpus 2;
        ip "10.1.0.11";
        hostname "node-1.example";
        consoleLog "CONSOLE_LOG";
    }
}
"""


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User.make(tmp_path_factory.mktemp("panels-user"))
    (user.home / "shop.sf").write_text(SHOP)
    (user.home / "pool.sf").write_text(POOL.replace("CONSOLE_LOG", str(user.home / "vm1-console.log")))
    return user


@pytest.fixture(scope="module")
def daemon(user: User) -> Iterator[DaemonProcess]:
    with running_daemon(user, user.home / "daemon-state", free_port()) as daemon:
        for app in ("shop", "pool"):
            result = user.run("up", str(user.home / f"{app}.sf"), "--name", app, "--host", daemon.host, "--settle", "0")
            assert result.returncode == 0, result.stdout + result.stderr
        yield daemon


@pytest.fixture(scope="module")
def console(user: User, daemon: DaemonProcess) -> Iterator[ConsoleProcess]:
    site = user.home / "probe-site"
    (site / "console_panel_probe-0.1.dist-info").mkdir(parents=True)
    (site / "console_panel_probe.py").write_text(PROBE_PLUGIN)
    (site / "console_panel_probe-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: console-panel-probe\nVersion: 0.1\n")
    (site / "console_panel_probe-0.1.dist-info" / "entry_points.txt").write_text(
        "[sd_actors]\nconsole-panel-probe = console_panel_probe\n")
    env = {**user.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), user.env.get("PYTHONPATH")]))}
    with running_console(dataclasses.replace(user, env=env), "--bind", f"127.0.0.1:{free_port()}",
                         "--host", daemon.host) as console:
        yield console


def panels(console: ConsoleProcess, path: str) -> list[dict[str, object]]:
    """The panels /api/component gives for ``path``."""
    url = f"{console.base}api/component?path={urllib.parse.quote(path)}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (the console's own http URL)
        answer = json.load(response)
    assert isinstance(answer["panels"], list), answer
    return answer["panels"]


def test_hook_sd_actors_console_panels_shows_a_plugins_panel_for_the_components_it_applies_to(
        console: ConsoleProcess) -> None:
    assert panels(console, "shop:web") == [
        {"title": "Greeting", "rows": [["says", 'hello "you"'], ["state", "started"],
                                       ["class", "sd_actors.actors.Prim"]], "error": ""}]


def test_hook_sd_actors_console_panels_a_panel_that_raises_shows_its_error_in_its_place(
        console: ConsoleProcess) -> None:
    assert panels(console, "shop:db") == [
        {"title": "Probe", "rows": [], "error": "RuntimeError: the probe is unplugged"}]
    assert panels(console, "shop") == [
        {"title": "Count", "rows": [], "error": "TypeError: rows must be (label, text) pairs of strings, not "
                                                "('children', 2)"}]


def test_the_virtual_machine_panel_shows_what_the_vm_asks_of_libvirt(user: User, console: ConsoleProcess) -> None:
    assert panels(console, "pool:vm1") == [{"title": "Virtual machine", "error": "", "rows": [
        ["domain name", "panel-vm1"],
        ["hypervisor", "test:///default"],
        ["type", "the hypervisor's default"],
        ["memory", "256 MiB"],
        ["vcpus", "2"],
        ["ip", "10.1.0.11"],
        ["hostname", "node-1.example"],
        ["console log", str(user.home / "vm1-console.log")],
        ["storage backend", "none"],
    ]}]


def test_the_page_shows_the_panels_under_the_attribute_table(console: ConsoleProcess) -> None:
    def panel_texts(driver: WebDriver) -> dict[str, str]:
        found = driver.execute_script("""
            const found = {};
            for (const panel of document.querySelectorAll("#panels .panel")) {
                found[panel.dataset.panel] = panel.innerText;
            }
            return found;""")
        assert isinstance(found, dict)
        return found

    with open_browser() as browser:
        browser.get(console.url)
        click(browser, '.node[data-path="pool:vm1"] .name')
        shown = wait_until(browser, lambda driver: panel_texts(driver).get("Virtual machine"),
                           "the Virtual machine panel")
        browser.execute_script("document.getElementById('panels').scrollIntoView();")
        screenshot(browser, "vm-panel")
        assert "domain name\tpanel-vm1" in shown
        assert "memory\t256 MiB" in shown

        click(browser, '.node[data-path="shop:db"] .name')
        failed = wait_until(browser, lambda driver: panel_texts(driver).get("Probe"), "the Probe panel")
        assert failed.split("\n") == ["Probe", "", "this panel failed: RuntimeError: the probe is unplugged"]
        assert "Virtual machine" not in panel_texts(browser)


class NotPanels:
    @hookimpl
    def sd_actors_console_panels(self) -> Sequence[ConsolePanel]:
        return ["Greeting"]  # type: ignore[list-item]


def test_a_plugin_that_contributes_something_else_than_panels_stops_the_console_naming_it(tmp_path: Path) -> None:
    plugin = NotPanels()
    manager = make_plugin_manager(load_entry_points=False, plugins=[plugin])
    settings = ConsoleSettings(port=0, templates=(tmp_path,))

    with pytest.raises(ConsoleError) as raised, \
            open_console(settings, connect=lambda: pytest.fail("nothing is asked"), plugin_manager=manager):
        pass

    assert str(raised.value) == (f"{manager.get_name(plugin)}: sd_actors_console_panels must return a sequence of "
                                 "sd_actors.plugins.ConsolePanel, not ['Greeting']; fix or uninstall that plugin")


def test_the_virtual_machine_panel_says_where_what_a_vm_leaves_unset_comes_from() -> None:
    on_backend = ComponentView(path=("pool", "vm2"), component_class="sd_actors.plugins.XenDomain", state="started",
                               host="h1", attributes={"domainName": '"vm2"', "storageBackend": "LAZY ATTRIB disks"})
    with_disks = dataclasses.replace(on_backend, attributes={
        "domainName": '"vm3"', "disks": '[|[|"/images/vm3.img", "vda", "root"|]|]'})

    assert is_vm(on_backend)
    assert not is_vm(dataclasses.replace(on_backend, component_class="sd_actors.actors.Prim"))
    assert dict(vm_rows(on_backend)) == {
        "domain name": "vm2",
        "hypervisor": "the daemon's default (sd_actors.hypervisor or SD_ACTORS_HYPERVISOR)",
        "type": "the hypervisor's default", "memory": "512 MiB", "vcpus": "1", "ip": "not set",
        "hostname": "not set", "console log": "not set", "storage backend": "LAZY ATTRIB disks"}
    assert dict(vm_rows(with_disks))["storage backend"] == 'none (disks [|[|"/images/vm3.img", "vda", "root"|]|])'
