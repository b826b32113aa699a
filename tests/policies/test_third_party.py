"""A third-party plugin, installed the way its users would: tests/third_party_plugin is a package of
its own (pyproject, entry point in the group ``sd_actors``) bringing the "alphabetical" placement
policy and an AlphabeticalScheduler component type.

It is pip-installed (offline, from a copy of its folder) into a folder of its own that only this
test's commands see through PYTHONPATH, so no other test, and no other process using the test
venv, loads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of
from tests.plugins.hosts_xml import write_test_host

PLUGIN_SOURCE = Path(__file__).parent.parent / "third_party_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the example plugin is installed (``pip install --target``)."""
    folder = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN_SOURCE, folder / "source")  # the build writes beside the sources
    site = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(source)], check=True, timeout=120)
    return site


@pytest.fixture
def user(tmp_path: Path, plugin_site: Path) -> User:
    user = User.make(tmp_path / "alice")
    user.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_site), user.env.get("PYTHONPATH")]))
    return user


def test_sd_actors_plugins_lists_the_installed_plugin_with_its_distribution_version_and_hooks(user: User) -> None:
    text = user.run("plugins")
    listed = json_of(user.run("plugins", "--json"))

    assert text.returncode == 0, text.stderr
    assert ("example-placement (entry point, from sd-actors-example-placement 0.1.0)\n"
            "    hooks: sd_actors_component_types, sd_actors_place\n"
            "    component types: example.placement.AlphabeticalScheduler\n") in text.stdout
    assert isinstance(listed, list)
    assert {"name": "example-placement", "source": "entry point", "distribution": "sd-actors-example-placement",
            "version": "0.1.0", "module": "sd_actors_example_placement",
            "hooks": ["sd_actors_component_types", "sd_actors_place"],
            "component_types": ["example.placement.AlphabeticalScheduler"]} in listed


@pytest.fixture
def two_hosts(user: User, tmp_path: Path) -> Iterator[tuple[DaemonProcess, str]]:
    """Two daemons that know each other, each with a simulated hypervisor of 4 CPUs and 4 GiB; the
    one to talk to, and the host name (``127.0.0.1:PORT``) of the other, which sorts first."""
    early, late = sorted((free_port(), free_port()), key=str)
    daemons = [DaemonProcess(user, tmp_path / f"state-{port}", port, "--insecure", "--peer",
                             f"tcp://127.0.0.1:{other}", "--hypervisor",
                             write_test_host(tmp_path, name=f"host-{port}", cpus=4, memory_mib=4096),
                             "--heartbeat-interval", "0.2")
               for port, other in ((early, late), (late, early))]
    for daemon in daemons:
        daemon.start()
    try:
        entry = daemons[1]

        def both_alive() -> bool:
            hosts = json_of(user.run("hosts", "--json", "--insecure", "--host", entry.host))
            assert isinstance(hosts, list)
            return sum(host["state"] == "alive" for host in hosts) == 2

        eventually(both_alive, timeout=15, what="the two daemons see each other alive")
        yield entry, f"127.0.0.1:{early}"
    finally:
        for daemon in daemons:
            if daemon.process is not None:
                daemon.stop()


def test_a_description_naming_the_plugins_scheduler_places_every_vm_on_the_first_host_by_name(
        user: User, tmp_path: Path, two_hosts: tuple[DaemonProcess, str]) -> None:
    entry, first_by_name = two_hosts
    # Listed last, so that the built-in policy (spread: most free memory, ties in list order)
    # would have put the first machine on the entry daemon and the next one here.
    source = tmp_path / "app.sf"
    source.write_text(f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    placer extends Scheduler {{
        sfClass "example.placement.AlphabeticalScheduler";
        hosts [|"{entry.host}", "{first_by_name}"|];
    }}
    vms extends Schedulee {{
        scheduler LAZY ATTRIB placer;
        vm0 extends VM {{ domainName "vm0"; memory 512; }}
        vm1 extends VM {{ domainName "vm1"; memory 512; }}
        vm2 extends VM {{ domainName "vm2"; memory 512; }}
    }}
}}
""")

    up = user.run("up", str(source), "--insecure", "--host", entry.host)

    assert up.returncode == 0, up.stdout + up.stderr
    status = json_of(user.run("status", "app", "--json", "--insecure", "--host", entry.host))
    assert isinstance(status, dict)
    machines = {component["path"][-1]: (component["state"], component["host"])
                for component in status["applications"][0]["components"] if len(component["path"]) == 3}
    assert machines == {f"vm{n}": ("started", first_by_name) for n in range(3)}, json.dumps(status, indent=1)
    down = user.run("down", "app", "--insecure", "--host", entry.host)
    assert down.returncode == 0, down.stderr
