"""A third-party plugin, installed the way its users would: tests/third_party_plugin is a package of
its own (pyproject, entry point in the group ``sd_actors``) bringing the "alphabetical" placement
policy and an AlphabeticalScheduler component type.

It is pip-installed (offline, from a copy of its folder) into a folder of its own that only this
test's commands see through PYTHONPATH, so no other test, and no other process using the test
venv, loads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actors.daemon_helpers import User, json_of
from tests.policies.two_daemons import TwoDaemons, component_hosts, two_daemons

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
def pool(user: User, tmp_path: Path) -> Iterator[TwoDaemons]:
    with two_daemons(user, tmp_path) as daemons:
        yield daemons


def test_a_description_naming_the_plugins_scheduler_places_every_vm_on_the_first_host_by_name(
        user: User, tmp_path: Path, pool: TwoDaemons) -> None:
    entry, first_by_name = pool.entry, pool.other
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
    assert component_hosts(user, entry, "app", 2) == {f"vm{n}": ("started", first_by_name) for n in range(3)}
    down = user.run("down", "app", "--insecure", "--host", entry.host)
    assert down.returncode == 0, down.stderr
