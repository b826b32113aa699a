"""SmartFrog's management console as a component: DeployManagement, deployed with `sd-actors up`,
has the daemon that runs it serve the web console until it terminates."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sd_actors.actors import ComponentFailed, open_system
from sd_actors.descriptions import parse_string
from tests.actors.daemon_helpers import User, free_port, running_daemon

MANAGEMENT = """#include "org/smartfrog/services/management/components.sf"
sfConfig extends Compound {{
    web extends Prim {{ role "frontend"; }}
    mngt extends DeployManagement {{ port {port}; }}
}}
"""


# Loaded by the daemon with --plugin only (no entry point): its panel shows in the daemon's own console.
ROLE_PANEL = """from sd_actors.plugins import ConsolePanel, hookimpl


@hookimpl
def sd_actors_console_panels():
    return [ConsolePanel("Role", lambda view: "role" in view.attributes, lambda view: [("role", view.text("role"))])]
"""


def api_status(port: int) -> dict[str, object]:
    return api(port, "status")


def api(port: int, query: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{query}", timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_deploy_management_serves_the_daemons_console_while_it_runs(tmp_path: Path) -> None:
    user = User.make(tmp_path / "user")
    port = free_port()
    description = tmp_path / "mgt.sf"
    description.write_text(MANAGEMENT.format(port=port))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "role_panel.py").write_text(ROLE_PANEL)
    user.env["PYTHONPATH"] = str(tmp_path / "site")
    with running_daemon(user, tmp_path / "state", free_port(), "--plugin", "role_panel") as daemon:
        up = user.run("up", str(description), "--host", daemon.host, "--settle", "0")
        assert up.returncode == 0, up.stdout + up.stderr + daemon.log()

        shown = json.dumps(api_status(port))
        assert '"mgt"' in shown
        assert "sd_actors.actors.WebConsole" in shown
        assert api(port, "component?path=mgt:web")["panels"] == [{"title": "Role", "rows": [["role", "frontend"]],
                                                                  "error": ""}]

        down = user.run("down", "mgt", "--host", daemon.host)
        assert down.returncode == 0, down.stderr
        with pytest.raises(urllib.error.URLError):
            api_status(port)


def test_deploy_management_outside_a_daemon_fails_saying_where_it_can_run() -> None:
    with open_system() as system, pytest.raises(ComponentFailed, match="deploy it with 'sd-actors up'"):
        system.deploy(parse_string(MANAGEMENT.format(port=free_port())), name="mgt")
