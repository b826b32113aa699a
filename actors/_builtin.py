"""sd-actors' own plugin: the core component types and the default reaction to a child's end."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Final

from sd_actors.actors._component import Component, Compound, Prim, Reaction
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sd_actors.actors._records import TerminationRecord
    from sd_actors.actors._runtime import ComponentRef


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {
        "sd_actors.actors.Prim": Prim,
        "sd_actors.actors.Compound": Compound,
        # SmartFrog's Java class names, so descriptions written against its library deploy too.
        "org.smartfrog.sfcore.prim.PrimImpl": Prim,
        "org.smartfrog.sfcore.compound.CompoundImpl": Compound,
    }


@hookimpl(trylast=True)
def sd_actors_child_terminated(parent: ComponentRef, child: ComponentRef, record: TerminationRecord) -> Reaction:
    # Last in line: unless a policy decided, the parent component decides for itself.
    if parent.component is None:
        return Reaction.TERMINATE
    return parent.component.child_terminated(child, record)


# Modules of sd-actors that are plugins, registered by make_plugin_manager like third-party ones.
_BUILTIN_MODULES: Final = (
    "sd_actors.actors._builtin",
    "sd_actors.actors._supervisor",
    "sd_actors.plugins._shell",
    "sd_actors.plugins._storage",
    "sd_actors.plugins._vm",
    "sd_actors.plugins._vm_panel",
    "sd_actors.actors.workflow._plugin",
    "sd_actors.actors.console._plugin",
    "sd_actors.policies._high_availability",
    "sd_actors.policies._restarter",
    "sd_actors.policies._cluster",
    "sd_actors.policies._plugins_command",
    "sd_actors.policies._scheduler",
    "sd_actors.policies._balancer",
)


def builtin_plugins() -> tuple[ModuleType, ...]:
    """sd-actors' own plugin modules (imported on demand: they import the runtime)."""
    return tuple(importlib.import_module(name) for name in _BUILTIN_MODULES)
