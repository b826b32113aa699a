"""Live migration: a running domain moves to another host's hypervisor while its guest runs on.

:func:`migrate_domain` asks libvirt to migrate live (``VIR_MIGRATE_LIVE``), to define the domain
on the target (``PERSIST_DEST``) and to undefine it on the source once it runs there
(``UNDEFINE_SOURCE``); the memory stream goes to ``tcp://<target host>``. libvirt either
finishes the whole move or resumes the guest on the source: a migration that fails leaves one
running copy, where it was. :func:`migration_unsupported_reason` says beforehand when two
hypervisors cannot do it at all.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Final
from urllib.parse import urlsplit

import libvirt

from sd_actors.actors import DeploymentError
from sd_actors.plugins._domain_xml import METADATA_NAMESPACE, Owner, metadata_element
from sd_actors.plugins._libvirt_events import open_connection

logger = logging.getLogger(__name__)

MIGRATING_DRIVERS: Final = ("qemu",)
"""The libvirt drivers sd-actors migrates with (the test driver cannot migrate; Xen is untried)."""
METADATA_KEY: Final = "sd-actors"
"""The prefix libvirt gives sd-actors' metadata element when it is rewritten with setMetadata."""


class MigrationError(DeploymentError):
    """A live migration was refused or failed; the domain still runs where it was."""


def migration_unsupported_reason(source: str, target: str) -> str | None:
    """Why a domain on hypervisor ``source`` cannot migrate live to hypervisor ``target``; None when it can.

    Both must be drivers that migrate (:data:`MIGRATING_DRIVERS`), and two different hypervisors:
    the same URI on both hosts (``qemu:///system``) names, from the source's daemon, its own
    libvirtd; give each daemon a URI the other hosts reach (``--hypervisor qemu+tcp://h2/system``).
    """
    for uri in (source, target):
        driver = urlsplit(uri).scheme.split("+")[0]
        if driver not in MIGRATING_DRIVERS:
            what = "libvirt's test driver" if driver == "test" else f"the {driver or '?'} driver"
            return f"{uri} is {what}, which sd-actors cannot migrate with (it migrates {', '.join(MIGRATING_DRIVERS)})"
    if source == target:
        return (f"both hosts' hypervisor is {source}, which from the source's daemon names its own libvirtd; give "
                "each daemon a URI the others reach (--hypervisor qemu+tcp://HOST/system)")
    return None


def same_machine(source: str, target: str) -> bool:
    """Both hypervisors on the machine running this code (URIs naming no host: local sockets)."""
    return not urlsplit(source).hostname and not urlsplit(target).hostname


def migrate_domain(domain: libvirt.virDomain, source: str, target: str, *, address: str, owner: Owner) -> str:
    """Migrate running ``domain`` from hypervisor ``source`` to ``target`` live; return its UUID there.

    :param address: the target host's address: the memory stream goes to ``tcp://address``.
    :param owner: the owner its metadata names from now on (the target's host).
    :raises MigrationError: libvirt refused or the migration failed; the guest runs on the source.
    """
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if same_machine(source, target):
        # libvirt cannot tell that a disk file on a local filesystem is shared with the target; two
        # libvirt hosts on one machine read the very same file, so the move is safe.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    name = domain.name()
    try:
        destination = open_connection(target)
    except libvirt.libvirtError as error:
        raise MigrationError(f"cannot migrate domain {name!r}: cannot connect to the target's hypervisor {target}: "
                             f"{error}; it still runs on {source}") from error
    try:
        try:
            moved = domain.migrate3(destination, {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{address}"}, flags)
        except libvirt.libvirtError as error:
            raise MigrationError(f"migrating domain {name!r} from {source} to {target} failed: {error}; it still "
                                 f"runs on {source}") from error
        uuid = moved.UUIDString()
        _write_owner(moved, owner)
        return uuid
    finally:
        try:
            destination.close()
        except libvirt.libvirtError as error:
            logger.debug("closing the connection to %s: %s", target, error)


def _write_owner(domain: libvirt.virDomain, owner: Owner) -> None:
    """The metadata names the target's host now; the move stands even if this fails (ownership is by
    application and component, not host)."""
    element = ET.tostring(metadata_element(owner)[0], encoding="unicode")
    try:
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, METADATA_KEY, METADATA_NAMESPACE,
                           libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError as error:
        logger.warning("domain %r migrated, but its metadata still names its old host: %s", domain.name(), error)
