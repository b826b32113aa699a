"""``sd-actors down`` of an application its daemon is still re-deploying after a restart.

An application with an HARestarter is re-deployed from the journal only once its daemon holds a
lease (policies/README.md); until then it is not running, yet it is the daemon's. A down asked in
that wait is journaled at once and done when the wait ends: the application does not come back.
One daemon on 127.0.0.1, insecure; restarted with a ``--peer`` nobody answers, it holds no lease.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of

TIMINGS = ("--insecure", "--heartbeat-interval", "0.2", "--suspect-after", "0.6", "--dead-after", "1.0")
WAIT = 20.0


def test_a_down_asked_while_the_application_waits_to_be_redeployed_is_done_not_ignored(tmp_path: Path) -> None:
    user = User.make(tmp_path / "user")
    state, port = tmp_path / "state", free_port()
    description = tmp_path / "ha.sf"
    description.write_text('#include "ch/cern/openlab/smartdomains/components.sf"\n'
                           "sfConfig extends Compound { ha extends HARestarter { worker extends Prim; } }\n")
    alone = DaemonProcess(user, state, port, *TIMINGS).start()  # a pool of one: it holds its lease
    up = user.run("up", str(description), "--name", "app", "--insecure", "--host", alone.host)
    assert up.returncode == 0, up.stdout + up.stderr + alone.log()
    alone.kill()
    killed = time.monotonic()
    # Past the lease the killed run held (1 s), so the next run cannot continue it.
    eventually(lambda: time.monotonic() > killed + 1.5, timeout=WAIT, what="the killed run's lease over")

    # Now one of a pool of two whose other member never answers: no majority, no lease.
    waiting = DaemonProcess(user, state, port, *TIMINGS, "--peer", f"127.0.0.1:{free_port()}").start()
    try:
        eventually(lambda: "re-deployed once this daemon holds a lease" in waiting.log(), timeout=WAIT,
                   what="the application waiting for a lease")
        down = user.run("down", "app", "--insecure", "--host", waiting.host)
    finally:
        waiting.kill()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "taken down as soon as that wait ends" in down.stdout, down.stdout

    # Back alone, it holds its lease again: the application it was told to take down stays down.
    alone = DaemonProcess(user, state, port, *TIMINGS).start()
    try:
        listed = json_of(user.run("ls", "--json", "--insecure", "--host", alone.host))
    finally:
        alone.stop()
    assert isinstance(listed, list)
    states = {application["name"]: application["status"] for application in listed}
    assert states.get("app") != "running", (states, alone.log())
    assert "app: termination completed after a restart" in alone.log(), alone.log()
