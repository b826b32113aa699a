"""A takeover whose first claimant dies holding some grants of its epoch is still made: a survivor
that lost that epoch to it claims the next once it has been silent for the lease plus the margin;
two live survivors that split an epoch's votes end the split, the later turn giving its own vote to
the earlier (policies/README.md, "Exactly one taker"). Five daemons on loopback, libvirt's test driver."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sd_actors.policies._ledger import LEDGER_FILE_NAME
from sd_actors.policies._takeover import REPLICAS_FILE_NAME, Replica, ReplicaStore, takeover_path
from tests.actors.daemon_helpers import DaemonProcess, User
from tests.policies.loopback_pool import loopback_daemons

WAIT = 30.0
PATH = ("ha", "ha")
SOURCE = """#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {
    ha extends HARestarter {
        worker extends Shell { commands [| "sleep 600" |]; }
    }
}
"""


def test_a_takeover_whose_first_claimant_died_holding_some_grants_is_made_as_the_next_epoch(
        tmp_path: Path) -> None:
    user = User.make(tmp_path / "alice")
    source = tmp_path / "ha.sf"
    source.write_text(SOURCE)
    with loopback_daemons(user, tmp_path, 5, "--suspect-after", "0.6", "--dead-after", "1.5") as daemons:
        first, second, third, fourth, home = daemons  # the survivors' turns come in this order
        up = user.run("up", str(source), "--name", "ha", "--insecure", "--host", home.host)
        _wait_until(lambda: all(_replica(daemon) is not None for daemon in daemons), "replicated everywhere")
        replica = _replica(second)
        assert replica is not None
        # The replica has not reached the second and third daemons yet (as if they had been away):
        # they refuse the first claimant, which gets two grants of five, its own and the fourth's.
        for daemon in (second, third):
            _drop_replica(daemon)
        home.kill()
        _wait_until(lambda: "not won: 2 of 5 daemons granted it" in first.log(), "the first claim half granted")
        first.kill()  # it dies holding the fourth daemon's grant of epoch 1
        for daemon in (second, third):
            _keep(daemon, replica)
        _wait_until(lambda: any(_runs_restarter(user, daemon) for daemon in (second, third, fourth)), "taken over")
        taker = next(daemon for daemon in (second, third, fourth) if _runs_restarter(user, daemon))

    assert up.returncode == 0, up.stdout + up.stderr
    assert taker is second
    assert "this daemon takes it over as epoch 2" in second.log()


def _replica(daemon: DaemonProcess) -> Replica | None:
    """The replica of ha:ha a daemon keeps (read beside it: SQLite in WAL mode)."""
    store = ReplicaStore(daemon.state_dir / REPLICAS_FILE_NAME)
    try:
        return store.get(PATH)
    finally:
        store.close()


def _drop_replica(daemon: DaemonProcess) -> None:
    with sqlite3.connect(daemon.state_dir / REPLICAS_FILE_NAME, isolation_level=None) as connection:
        connection.execute("DELETE FROM restarters WHERE path = ?", (":".join(PATH),))
    connection.close()


def _grant(voter: DaemonProcess, incarnation: str, claimant: str) -> None:
    """Write into ``voter``'s restart ledger its grant of the takeover's epoch 1 to ``claimant``."""
    with sqlite3.connect(voter.state_dir / LEDGER_FILE_NAME, isolation_level=None) as connection:
        connection.execute("INSERT INTO restart_grants (incarnation, path, generation, claimant, granted_at) "
                           "VALUES (?, ?, 1, ?, ?)",
                           (incarnation, ":".join(takeover_path(PATH)), claimant, time.time()))
    connection.close()


def _keep(daemon: DaemonProcess, replica: Replica) -> None:
    store = ReplicaStore(daemon.state_dir / REPLICAS_FILE_NAME)
    try:
        assert store.keep(replica)
    finally:
        store.close()


def _runs_restarter(user: User, daemon: DaemonProcess) -> bool:
    result = user.run("status", "ha", "--json", "--insecure", "--host", daemon.host)
    applications = json.loads(result.stdout)["applications"] if result.returncode == 0 else []
    return any(app["status"] == "running" and any(component["path"] == list(PATH) and component["state"] == "started"
                                                  for component in app["components"])
               for app in applications)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {WAIT} s")
        time.sleep(0.05)  # polling daemons in other processes: nothing to wait on here


def test_two_live_survivors_that_split_an_epoch_end_the_split_the_later_turn_gives_its_own_vote_up(
        tmp_path: Path) -> None:
    user = User.make(tmp_path / "alice")
    source = tmp_path / "ha.sf"
    source.write_text(SOURCE)
    with loopback_daemons(user, tmp_path, 5, "--suspect-after", "0.6", "--dead-after", "1.5") as daemons:
        first, second, third, fourth, home = daemons  # the survivors' turns come in this order
        user.run("up", str(source), "--name", "ha", "--insecure", "--host", home.host)
        _wait_until(lambda: all(_replica(daemon) is not None for daemon in daemons), "replicated everywhere")
        replica = _replica(first)
        assert replica is not None
        # Epoch 1 split as if the first two had claimed it at once: each holds its own grant and one
        # other (the first the fourth's, the second the third's), two of five each, both alive.
        for voter, claimant in ((first, first), (second, second), (third, second), (fourth, first)):
            _grant(voter, replica.incarnation, f"tcp://{claimant.host}")
        home.kill()
        _wait_until(lambda: any(_runs_restarter(user, daemon) for daemon in (first, second, third, fourth)),
                    "taken over")
        takers = [daemon for daemon in (first, second, third, fourth) if _runs_restarter(user, daemon)]

    assert takers == [first]
    assert "this daemon takes it over as epoch 1" in first.log()
    assert "epoch 1 split with" in second.log()
    assert "gives its own vote up to it" in second.log()
