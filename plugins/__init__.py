"""pluggy hook specifications, the plugin-manager factory and the built-in component plugins.

Hypervisors, for components and policies that need libvirt:

- :func:`hypervisor_connection` ``(owner, uri)``: the one libvirt connection of a System to the
  hypervisor at ``uri`` (``owner`` is a component's ``ComponentContext`` or a ``System``). VMs and
  storage backends use it, so everything of one System sees the same state; with
  ``test:///path/host.xml`` (a simulated host, its own state per connection) that is required.
  Never close it: it closes with the System.
- :func:`hypervisor_capacity` ``(connection)``: a :class:`HypervisorCapacity` snapshot of the
  host's memory and CPUs and what its running domains take (``unreserved_memory_mib`` is what a
  scheduler can still place).
"""

# isort: off
# sd_actors.actors imports the manager from here while it loads, so the manager comes first and
# _hypervisors (which imports sd_actors.actors) after it, whichever package is imported first.
from sd_actors.plugins._manager import collect_component_types, make_plugin_manager
from sd_actors.plugins.hookspecs import hookimpl, hookspec
from sd_actors.plugins._panels import ComponentView, ConsolePanel, collect_console_panels
from sd_actors.plugins._hypervisors import (
    HypervisorCapacity,
    HypervisorError,
    hypervisor_capacity,
    hypervisor_connection,
)
# isort: on

__all__ = [
    "ComponentView",
    "ConsolePanel",
    "HypervisorCapacity",
    "HypervisorError",
    "collect_component_types",
    "collect_console_panels",
    "hookimpl",
    "hookspec",
    "hypervisor_capacity",
    "hypervisor_connection",
    "make_plugin_manager",
]
