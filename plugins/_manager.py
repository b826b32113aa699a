"""The plugin-manager factory: a fresh manager per call, never a module-level one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pluggy

from sd_actors.plugins import hookspecs


def make_plugin_manager(*, load_entry_points: bool = True, plugins: Iterable[object] = ()) -> pluggy.PluginManager:
    """A plugin manager with sd-actors' hooks, its built-in plugins, ``plugins`` and (optionally)
    every plugin registered under the ``sd_actors`` entry-point group."""
    from sd_actors.actors._builtin import builtin_plugins

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for plugin in builtin_plugins():
        manager.register(plugin)
    for extra in plugins:
        manager.register(extra)
    if load_entry_points:
        manager.load_setuptools_entrypoints(hookspecs.PROJECT)
    manager.check_pending()
    return manager


def collect_component_types(manager: pluggy.PluginManager) -> dict[str, type]:
    """Merge every plugin's component types; a name given twice names both plugins."""
    merged: dict[str, type] = {}
    owners: dict[str, str] = {}
    for implementation in manager.hook.sd_actors_component_types.get_hookimpls():
        contributed = implementation.function()
        if not isinstance(contributed, Mapping):
            raise TypeError(f"{implementation.plugin_name}: sd_actors_component_types must return a mapping")
        for name, component_type in contributed.items():
            if name in merged and merged[name] is not component_type:
                raise ValueError(
                    f"component type {name!r} is contributed by both {owners[name]} and "
                    f"{implementation.plugin_name}: rename one of them")
            merged[name] = component_type
            owners[name] = implementation.plugin_name
    return merged
