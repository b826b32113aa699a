"""pluggy hook specifications, the plugin-manager factory and the built-in component plugins."""

from sd_actors.plugins._manager import collect_component_types, make_plugin_manager
from sd_actors.plugins.hookspecs import hookimpl, hookspec

__all__ = ["collect_component_types", "hookimpl", "hookspec", "make_plugin_manager"]
