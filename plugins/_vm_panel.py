"""The web console's "Virtual machine" panel: what a VM (or XenDomain) component asks of libvirt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sd_actors.plugins._panels import ComponentView, ConsolePanel
from sd_actors.plugins.hookspecs import hookimpl

VM_CLASSES: Final = frozenset({"sd_actors.plugins.VM", "sd_actors.plugins.XenDomain"})
NOT_SET: Final = "not set"


def is_vm(view: ComponentView) -> bool:
    return view.component_class in VM_CLASSES


def vm_rows(view: ComponentView) -> Sequence[tuple[str, str]]:
    memory = view.text("memory")
    disks = view.text("disks")
    # The defaults are the VM component's: unset, these are decided where the VM runs.
    return (
        ("domain name", view.text("domainName", NOT_SET)),
        ("hypervisor", view.text("hypervisor", "the daemon's default (sd_actors.hypervisor or SD_ACTORS_HYPERVISOR)")),
        ("type", view.text("domainType", "the hypervisor's default")),
        ("memory", f"{memory} MiB" if memory.isdigit() else memory or "512 MiB"),
        ("vcpus", view.text("vcpus", "1")),
        ("ip", view.text("ip", NOT_SET)),
        ("hostname", view.text("hostname", NOT_SET)),
        ("console log", view.text("consoleLog", NOT_SET)),
        ("storage backend", view.text("storageBackend", f"none (disks {disks})" if disks else "none")),
    )


@hookimpl
def sd_actors_console_panels() -> Sequence[ConsolePanel]:
    return (ConsolePanel("Virtual machine", is_vm, vm_rows),)
