"""``sd-actors plugins``: what a user sees of the plugins their installation loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pluggy

from sd_actors.plugins import hookimpl, make_plugin_manager
from sd_actors.policies._plugins_command import loaded_plugins
from tests.actors.daemon_helpers import User


def test_plugins_lists_sd_actors_own_plugins_as_built_in_with_their_hooks_and_component_types(tmp_path: Path) -> None:
    result = User.make(tmp_path / "alice").run("plugins")

    assert result.returncode == 0, result.stderr
    blocks = re.split(r"\n(?=\S)", result.stdout.strip())  # a plugin's name, then its indented lines
    assert ("sd_actors.policies._cluster (built-in)\n"
            "    hooks: sd_actors_component_types\n"
            "    component types: sd_actors.policies.VirtualCluster") in blocks
    assert "sd_actors.policies._plugins_command (built-in)\n    hooks: sd_actors_cli_commands" in blocks
    assert result.stdout.startswith("sd_actors.actors._builtin (built-in)\n"
                                    "    hooks: sd_actors_child_terminated, sd_actors_component_types\n")


def test_plugins_json_gives_each_plugin_its_source_distribution_version_hooks_and_types(tmp_path: Path) -> None:
    result = User.make(tmp_path / "alice").run("plugins", "--json")

    assert result.returncode == 0, result.stderr
    plugins = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    assert plugins["sd_actors.plugins._vm"] == {
        "name": "sd_actors.plugins._vm", "source": "built-in", "distribution": None, "version": None,
        "module": "sd_actors.plugins._vm", "hooks": ["sd_actors_component_types"],
        "component_types": ["sd_actors.plugins.VM", "sd_actors.plugins.XenDomain"]}
    assert all(plugin["source"] in ("built-in", "entry point") for plugin in plugins.values())


class AuditPlugin:
    """A plugin registered by hand (as an embedding service would): neither built in nor installed."""

    @hookimpl
    def sd_actors_child_terminated(self) -> None:
        return None


def test_a_plugin_registered_by_hand_is_listed_as_registered_with_its_hooks() -> None:
    manager: pluggy.PluginManager = make_plugin_manager(load_entry_points=False, plugins=[AuditPlugin()])

    listed = loaded_plugins(manager)[-1]

    assert (listed.source, listed.distribution, listed.module, listed.hooks) == (
        "registered", None, __name__, ("sd_actors_child_terminated",))
