"""The commands that only talk to a daemon start without importing the runtime.

``sd-actors up`` and ``status`` run in a fresh process each time: every module they import is paid
for at every command. They need the descriptions, ZeroMQ and the command line's messages; not pykka,
the journal, the supervisor, the plugins, asyncio, libvirt or the messages daemons send each other,
which only a daemon uses.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

import sd_actors.actors

EXAMPLE: Final = Path(__file__).resolve().parents[2] / "descriptions" / "examples" / "pool.sf"
UNREACHABLE: Final = ("--host", "tcp://127.0.0.1:9", "--insecure", "--timeout", "0.05")
"""A daemon nobody runs (port 9, discard): the command gives up at once, after its imports."""

DAEMON_ONLY: Final = ("pykka", "pluggy", "libvirt", "asyncio", "aiohttp", "sd_actors.plugins", "sd_actors.policies",
                      "sd_actors.actors._daemon", "sd_actors.actors._runtime", "sd_actors.actors._journal",
                      "sd_actors.actors._supervisor", "sd_actors.actors._system", "sd_actors.actors._component",
                      "sd_actors.actors._remote", "sd_actors.actors.console", "sd_actors.net._peer_protocol")


def modules_imported_by(*arguments: str, tmp_path: Path) -> set[str]:
    """The modules ``sd-actors ARGUMENTS`` has imported when it ends, run in a fresh interpreter."""
    listing = tmp_path / "modules.txt"
    script = ("import sys\nfrom sd_actors.actors._cli import main\nstatus = main(sys.argv[2:])\n"
              "open(sys.argv[1], 'w').write('\\n'.join(sys.modules))\n")
    subprocess.run([sys.executable, "-c", script, str(listing), *arguments], check=False, capture_output=True,
                   timeout=60)
    return set(listing.read_text().split("\n"))


def daemon_modules(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in DAEMON_ONLY or name.startswith(DAEMON_ONLY))


@pytest.mark.parametrize("arguments", [
    ("up", "--dry-run", str(EXAMPLE)),
    ("up", str(EXAMPLE), *UNREACHABLE),
    ("status", *UNREACHABLE),
    ("ls", *UNREACHABLE),
    ("down", "pool", *UNREACHABLE),
    ("hosts", *UNREACHABLE),
    ("parse", str(EXAMPLE)),
], ids=["up --dry-run", "up", "status", "ls", "down", "hosts", "parse"])
def test_a_command_that_talks_to_a_daemon_imports_nothing_only_a_daemon_needs(
    arguments: tuple[str, ...], tmp_path: Path
) -> None:
    modules = modules_imported_by(*arguments, tmp_path=tmp_path)

    assert "sd_actors.actors._cli" in modules
    assert daemon_modules(modules) == []


def test_up_to_an_unreachable_daemon_goes_as_far_as_sending_the_deployment(tmp_path: Path) -> None:
    # What makes the test above meaningful for up: it imported all it needs to send.
    modules = modules_imported_by("up", str(EXAMPLE), *UNREACHABLE, tmp_path=tmp_path)

    assert {"sd_actors.descriptions._codec", "sd_actors.net._node", "sd_actors.net._protocol", "zmq"} <= modules


def test_importing_the_actors_package_imports_no_runtime(tmp_path: Path) -> None:
    listing = tmp_path / "modules.txt"
    script = "import sys, sd_actors.actors\nopen(sys.argv[1], 'w').write('\\n'.join(sys.modules))\n"

    subprocess.run([sys.executable, "-c", script, str(listing)], check=True, timeout=60)

    assert daemon_modules(set(listing.read_text().split("\n"))) == []


@pytest.mark.parametrize("name", sd_actors.actors.__all__)
def test_every_public_name_of_the_actors_package_is_the_one_its_module_defines(name: str) -> None:
    value = getattr(sd_actors.actors, name)

    defining = importlib.import_module(f"sd_actors.actors.{sd_actors.actors._MODULE_OF[name]}")
    assert value is getattr(defining, name)
    assert name in dir(sd_actors.actors)


def test_an_unknown_name_of_the_actors_package_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"module 'sd_actors\.actors' has no attribute 'Compund'"):
        sd_actors.actors.Compund  # type: ignore[attr-defined]  # noqa: B018


def test_every_name_the_actors_package_can_import_is_public() -> None:
    assert sorted(sd_actors.actors._MODULE_OF) == sorted(sd_actors.actors.__all__)

