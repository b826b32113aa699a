"""The restart ledger's grants belong to one deployment of an HARestarter, its incarnation
(policies/README.md, "Never two copies"): after ``sd-actors down`` and ``up`` again, from the same
daemon or another, a child's first restart is granted afresh, and the daemons forget the grants
of a deployment taken down."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sd_actors.policies import RestartLedger
from sd_actors.policies._ledger import LEDGER_FILE_NAME
from tests.actors.daemon_helpers import User
from tests.policies.two_daemons import two_daemons

WAIT = 20.0


def test_a_ledger_grants_each_generation_once_per_incarnation_and_forgets_an_incarnation_but_its_takeovers(
        tmp_path: Path) -> None:
    web, takeovers = ("app", "ha", "web"), ("app", "ha", "#takeover")
    ledger = RestartLedger(tmp_path / "ledger.sqlite3")
    first = ledger.grant(web, 1, "tcp://a:3800", incarnation="one")
    other = ledger.grant(web, 1, "tcp://b:3800", incarnation="one")
    redeployed = ledger.grant(web, 1, "tcp://b:3800", incarnation="two")
    taken = ledger.grant(takeovers, 1, "tcp://b:3800", incarnation="one")
    forgotten = ledger.forget("one", keeping=takeovers)
    ledger.close()

    reopened = RestartLedger(tmp_path / "ledger.sqlite3")
    holders = [reopened.holder(web, 1, incarnation="one"), reopened.holder(web, 1, incarnation="two"),
               reopened.holder(takeovers, 1, incarnation="one")]
    left = len(reopened)
    reopened.close()

    assert (first, other, redeployed, taken) == ("tcp://a:3800", "tcp://a:3800", "tcp://b:3800", "tcp://b:3800")
    assert forgotten == 1
    assert holders == [None, "tcp://b:3800", "tcp://b:3800"]
    assert left == 2


def test_after_down_and_up_from_another_daemon_a_childs_first_restart_is_granted_and_down_forgets_the_grants(
        tmp_path: Path) -> None:
    user = User.make(tmp_path / "alice")
    starts, trigger = tmp_path / "starts", tmp_path / "fail-now"
    source = tmp_path / "ha.sf"
    source.write_text(f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    ha extends HARestarter {{
        worker extends Shell {{
            commands [| "echo started >> {starts}",
                        "until [ -e {trigger} ]; do sleep 0.02; done; rm {trigger}; exit 3" |];
        }}
    }}
}}
""")

    def fail_and_restart(started: int) -> None:
        """Make the worker fail (its command exits 3) and wait for it to start again."""
        trigger.touch()
        _wait_until(lambda: _lines(starts) == started + 1, f"the worker restarted (start {started + 1})")

    with two_daemons(user, tmp_path) as pool:
        ledgers = [pool.entry.state_dir / LEDGER_FILE_NAME,
                   tmp_path / f"state-{pool.other.rsplit(':', 1)[1]}" / LEDGER_FILE_NAME]
        first_up = user.run("up", str(source), "--name", "ha", "--insecure", "--host", pool.entry.host)
        _wait_until(lambda: _lines(starts) == 1, "the worker started")
        fail_and_restart(1)  # generation 1 of the first deployment, granted to the entry daemon
        granted_first = [_grants(ledger) for ledger in ledgers]
        first_down = user.run("down", "ha", "--insecure", "--host", pool.entry.host)
        _wait_until(lambda: [_grants(ledger) for ledger in ledgers] == [0, 0], "the grants forgotten after down")

        second_up = user.run("up", str(source), "--name", "ha", "--insecure", "--host", pool.other)
        _wait_until(lambda: _lines(starts) == 3, "the worker started again")
        fail_and_restart(3)  # generation 1 again, of the second deployment, claimed by the other daemon
        second_down = user.run("down", "ha", "--insecure", "--host", pool.other)
        _wait_until(lambda: [_grants(ledger) for ledger in ledgers] == [0, 0], "the grants forgotten after down")

    assert first_up.returncode == 0, first_up.stdout + first_up.stderr
    assert granted_first == [1, 1]
    assert first_down.returncode == 0, first_down.stdout + first_down.stderr
    assert second_up.returncode == 0, second_up.stdout + second_up.stderr
    assert second_down.returncode == 0, second_down.stdout + second_down.stderr


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _grants(path: Path) -> int:
    """How many grants a daemon's ledger holds (read beside the running daemon: SQLite in WAL mode)."""
    ledger = RestartLedger(path)
    try:
        return len(ledger)
    finally:
        ledger.close()


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {WAIT} s")
        time.sleep(0.05)  # polling files that daemons in other processes write: nothing to wait on here
