"""``sd-actors plugins``: the plugins this installation loads, where each comes from, what it implements."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TextIO

from sd_actors.plugins import make_plugin_manager
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    import pluggy

BUILT_IN = "built-in"
ENTRY_POINT = "entry point"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginInfo:
    """One loaded plugin, as ``sd-actors plugins`` shows it."""

    name: str
    """The name the plugin manager knows it by: the module for built-ins, the entry point's name otherwise."""
    source: str
    """``"built-in"`` (part of sd-actors) or ``"entry point"`` (an installed distribution)."""
    distribution: str | None
    version: str | None
    module: str
    hooks: tuple[str, ...]
    component_types: tuple[str, ...]


def loaded_plugins(manager: pluggy.PluginManager) -> list[PluginInfo]:
    """Every plugin ``manager`` holds, in the order they were registered (sd-actors' own first)."""
    from sd_actors.actors._builtin import builtin_plugins

    builtin = {id(plugin) for plugin in builtin_plugins()}
    distributions = {id(plugin): distribution for plugin, distribution in manager.list_plugin_distinfo()}
    contributed: dict[int, tuple[str, ...]] = {}
    for implementation in manager.hook.sd_actors_component_types.get_hookimpls():
        types = implementation.function()
        contributed[id(implementation.plugin)] = tuple(sorted(types)) if isinstance(types, Mapping) else ()
    plugins = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:  # blocked
            continue
        distribution = distributions.get(id(plugin))
        plugins.append(PluginInfo(
            name=name,
            source=BUILT_IN if id(plugin) in builtin else ENTRY_POINT if distribution is not None else "registered",
            distribution=distribution.project_name if distribution is not None else None,
            version=distribution.version if distribution is not None else None,
            module=getattr(plugin, "__name__", None) or type(plugin).__module__,
            hooks=tuple(sorted(caller.name for caller in manager.get_hookcallers(plugin) or ())),
            component_types=contributed.get(id(plugin), ())))
    return plugins


def run_plugins(arguments: argparse.Namespace, out: TextIO) -> int:
    plugins = loaded_plugins(make_plugin_manager())
    if arguments.json:
        json.dump([asdict(plugin) for plugin in plugins], out, indent=2)
        out.write("\n")
        return 0
    for plugin in plugins:
        where = plugin.source if plugin.distribution is None else \
            f"{plugin.source}, from {plugin.distribution} {plugin.version}"
        print(f"{plugin.name} ({where})", file=out)
        print(f"    hooks: {', '.join(plugin.hooks)}", file=out)
        if plugin.component_types:
            print(f"    component types: {', '.join(plugin.component_types)}", file=out)
    return 0


@hookimpl
def sd_actors_cli_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                           client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    command = commands.add_parser(
        "plugins", help="list the plugins sd-actors loads, where each comes from and the hooks it implements",
        description="List the plugins sd-actors loads: its own (built-in) and those installed distributions "
        "register in the 'sd_actors' entry-point group, with the hooks and component types of each.",
        epilog="examples:\n  sd-actors plugins\n  sd-actors plugins --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("--json", action="store_true", help="print JSON: one object per plugin")
    command.set_defaults(run=run_plugins)
