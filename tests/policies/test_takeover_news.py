"""A daemon that restarts asks the pool whether its HARestarter was taken over meanwhile; silence is
no news (policies/README.md, "The old daemon, back, never runs a second copy"): its children wait
until a majority of the pool has answered. Three daemons on loopback, libvirt's test driver; the
peers are kept from answering by filling their request threads (heartbeats are answered apart)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from sd_actors.actors._daemon import make_registry
from sd_actors.net._node import Client
from sd_actors.net._protocol import Done, WatchApplications
from sd_actors.policies._takeover import ReplicaStore
from tests.actors.daemon_helpers import DaemonProcess, User
from tests.policies.loopback_pool import loopback_daemons

WAIT = 20.0
REQUEST_THREADS = 16
"""A daemon's request threads (net/_node.py)."""
BUSY = 8.0
"""Seconds the other daemons stay busy: longer than the restart of a daemon takes."""


def occupy(daemon: DaemonProcess, seconds: float) -> list[threading.Thread]:
    """Keep each of ``daemon``'s request threads busy streaming to a watcher for ``seconds``
    (WatchApplications holds its thread until then); the threads end when the streams do."""
    def watch() -> None:
        client = Client(daemon.endpoint, registry=make_registry(), keypair=None, server_public=None)
        try:
            for _ in client.stream(WatchApplications(seconds=seconds), timeout=seconds + 10, end=(Done,)):
                pass
        finally:
            client.close()

    watchers = [threading.Thread(target=watch, daemon=True) for _ in range(REQUEST_THREADS)]
    for watcher in watchers:
        watcher.start()
    return watchers


def test_the_daemons_a_pool_was_counted_over_are_kept_across_restarts(tmp_path: Path) -> None:
    store = ReplicaStore(tmp_path / "restarters.sqlite3")
    store.remember_electorate({"tcp://a:3800", "tcp://b:3800"})
    store.remember_electorate({"tcp://b:3800", "tcp://c:3800"})
    store.close()
    reopened = ReplicaStore(tmp_path / "restarters.sqlite3")
    kept = reopened.electorate()
    reopened.close()

    assert kept == {"tcp://a:3800", "tcp://b:3800", "tcp://c:3800"}


def test_a_restarted_restarters_daemon_creates_no_child_until_a_majority_of_the_pool_answered(
        tmp_path: Path) -> None:
    user = User.make(tmp_path / "alice")
    starts, stop = tmp_path / "starts", tmp_path / "stop"
    source = tmp_path / "ha.sf"
    source.write_text(f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    ha extends HARestarter {{
        worker extends Shell {{
            commands [| "echo started >> {starts}", "until [ -e {stop} ]; do sleep 0.05; done" |];
        }}
    }}
}}
""")
    waiting = "its children wait until a majority of the pool"
    with loopback_daemons(user, tmp_path, 3, "--dead-after", "8") as (home, *others):
        up = user.run("up", str(source), "--name", "ha", "--insecure", "--host", home.host)
        _wait_until(lambda: _lines(starts) == 1, "the worker started")
        watchers = [watcher for other in others for watcher in occupy(other, BUSY)]
        home.kill()
        home.start()  # it gets a lease (heartbeats are answered), re-deploys ha, and asks the pool
        _wait_until(lambda: waiting in home.log() or _lines(starts) > 1, "the HARestarter re-deployed")
        started_unanswered = _lines(starts) - 1
        for watcher in watchers:
            watcher.join()  # the other daemons answer again
        _wait_until(lambda: _lines(starts) == 2, "the worker started again once the pool answered")
        stop.touch()

    assert up.returncode == 0, up.stdout + up.stderr
    assert started_unanswered == 0, "the worker started again while no other daemon answered"
    assert "(3 daemons)" in home.log()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {WAIT} s")
        time.sleep(0.05)  # polling files that daemons in other processes write: nothing to wait on here
