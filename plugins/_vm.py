"""VM: a virtual machine as a component, defined, started, watched and torn down through libvirt."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import urlsplit

import libvirt

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    Component,
    ComponentRef,
    DeploymentError,
    LinkError,
    TerminationRecord,
)
from sd_actors.plugins._domain_xml import Disk, DomainSpec, Owner, default_domain_type, domain_xml, read_owner
from sd_actors.plugins._hypervisors import HypervisorError, hypervisor_connection, watch_domain_lifecycle
from sd_actors.plugins._migration import MigrationError, migrate_domain
from sd_actors.plugins._storage import DEFAULTS, STORAGE_ATTRIBUTES
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sd_actors.actors import ComponentContext, Timer

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HYPERVISOR: Final = "test:///default"
HYPERVISOR_PROPERTY: Final = "sd_actors.hypervisor"
"""The System property (``open_system(properties=…)``) that gives VMs without ``hypervisor`` their URI."""
HYPERVISOR_ENVIRONMENT: Final = "SD_ACTORS_HYPERVISOR"
"""The environment variable that does the same when the property is not set."""
_DEFAULT_HYPERVISOR_KEY: Final = ("sd_actors.plugins.VM", "default hypervisor")
"""Under this key (``ComponentContext.shared``) a System keeps the URI of VMs that name none."""

DEFAULT_LIVENESS_DELAY_MS: Final = 2000
DEFAULT_LIVENESS_FACTOR: Final = 3

_ALIVE_STATES: Final = frozenset({
    libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN, libvirt.VIR_DOMAIN_PMSUSPENDED,
})
"""States of a domain that is still there for its user (paused or shutting down included)."""

_STATE_NAMES: Final = {
    libvirt.VIR_DOMAIN_NOSTATE: "NOSTATE", libvirt.VIR_DOMAIN_RUNNING: "RUNNING",
    libvirt.VIR_DOMAIN_BLOCKED: "BLOCKED", libvirt.VIR_DOMAIN_PAUSED: "PAUSED",
    libvirt.VIR_DOMAIN_SHUTDOWN: "SHUTDOWN", libvirt.VIR_DOMAIN_SHUTOFF: "SHUTOFF",
    libvirt.VIR_DOMAIN_CRASHED: "CRASHED", libvirt.VIR_DOMAIN_PMSUSPENDED: "PMSUSPENDED",
}

RESOURCE_PREFIX: Final = "libvirt:"
"""What a VM tells the daemon's journal it holds: ``libvirt:<hypervisor URI>#<domain UUID>``."""

_STOP_EVENTS: Final = frozenset({
    libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
})
"""Lifecycle events after which the domain's state is looked at at once, not at the next poll."""


class DomainError(DeploymentError):
    """A virtual machine could not be defined, started or watched."""


class DomainNameTaken(DomainError):
    """A domain of the wanted name exists and sd-actors did not define it for this component."""


def domain_resource(uri: str, uuid: str) -> str:
    """The journal's name for domain ``uuid`` on hypervisor ``uri``: ``libvirt:qemu:///system#<uuid>``."""
    return f"{RESOURCE_PREFIX}{uri}#{uuid}"


def parse_domain_resource(resource: str) -> tuple[str, str] | None:
    """``(uri, uuid)`` from :func:`domain_resource`'s text; None for another kind of resource."""
    if not resource.startswith(RESOURCE_PREFIX) or "#" not in resource:
        return None
    uri, _hash, uuid = resource[len(RESOURCE_PREFIX):].rpartition("#")
    return uri, uuid


def state_names(state: int, reason: int) -> tuple[str, str]:
    """libvirt's names for a domain state and its reason: ``("SHUTOFF", "DESTROYED")``."""
    name = _STATE_NAMES.get(state, str(state))
    prefix = f"VIR_DOMAIN_{name}_"
    for constant in dir(libvirt):
        if constant.startswith(prefix) and not constant.endswith("_LAST") and getattr(libvirt, constant) == reason:
            return name, constant[len(prefix):]
    return name, str(reason)


class VM(Component):
    """A libvirt domain made from the 2007 SmartDomains attributes (XenDomain is the same component).

    ``deploy`` connects to ``hypervisor`` and defines the domain, or re-attaches to one that
    carries this component's metadata (a daemon that restarted); a domain of the same name that
    is not this component's is an error and is never touched. ``start`` starts it unless it runs.
    While it runs, libvirt's lifecycle events and a look at its state every
    ``domainLivenessDelay`` ms (and every ping) watch it: a guest that shut itself down terminates
    the component normally (the user's intent, not something to repair); a domain that crashed,
    was destroyed or undefined behind sd-actors' back fails it, the record naming libvirt's state
    and reason. ``terminate`` destroys and undefines the domain, only if its metadata names this
    component. ``detach`` (the daemon stops, the application does not) stops watching and leaves
    the domain running and defined, with its volumes, for the next daemon to re-attach to.
    ``migrate`` (a LoadBalancer's move) moves the running domain live to another host's hypervisor,
    after which the component holds nothing and its copy on that host re-attaches to the domain.

    Once the domain is defined or re-attached, the VM tells the daemon's journal its
    :func:`domain_resource` (``libvirt:<uri>#<uuid>``); after it is removed, that it holds nothing.
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._where = ":".join(context.path)
        self._owner = Owner(app=context.path[0], component=self._where, host=context.host, process=context.process)
        self._uri = DEFAULT_HYPERVISOR
        self._name = ""
        self._uuid = ""
        self._connection: libvirt.virConnect | None = None
        self._domain: libvirt.virDomain | None = None
        self._unwatch: Callable[[], None] | None = None
        self._watching = True
        self._liveness_delay = DEFAULT_LIVENESS_DELAY_MS / 1000
        self._liveness_factor = DEFAULT_LIVENESS_FACTOR
        self._failed_looks = 0
        self._timer: Timer | None = None
        self._started = False
        self._ending = False
        self._backend: tuple[ComponentRef, str] | None = None
        """The storage backend that made this machine's volumes, and the name it knows them by."""

    @property
    def hypervisor(self) -> str:
        """The libvirt URI this machine runs on (its ``hypervisor``, else the System's default)."""
        return self._uri

    # -- lifecycle -------------------------------------------------------------------------------------
    def deploy(self) -> None:
        self._uri = self._hypervisor()
        self._read_liveness()
        self._check_boot_files()
        try:
            self._connection = hypervisor_connection(self.context, self._uri)
        except HypervisorError as error:
            raise DomainError(f"{self._where}: {error}") from error
        spec = self._spec(self._connection)
        self._name = spec.name
        existing = self._lookup(spec.name)
        if existing is not None:
            owner = read_owner(self._libvirt(existing.XMLDesc, "read the definition of"))
            if not self._owner.owns(owner):
                who = "no sd-actors metadata" if owner is None else f"the metadata of {owner.component} on {owner.host}"
                raise DomainNameTaken(
                    f"{self._where}: a domain named {spec.name!r} already exists on {self._uri} with {who}; it "
                    "is left alone: choose another domainName, or remove that domain yourself if it is not needed")
            logger.info("%s: re-attached to domain %r", self._where, spec.name)
            self._domain = existing
        else:
            xml = domain_xml(spec)
            if spec.console_log is not None and not urlsplit(self._uri).netloc:
                # A hypervisor on this host writes the console log here; its folder must exist.
                os.makedirs(os.path.dirname(spec.console_log), exist_ok=True)
            self._domain = self._libvirt(lambda: self._connection_or_fail().defineXML(xml), "define")
        self._uuid = self._libvirt(self._domain.UUIDString, "read the UUID of")
        # Not a disk sync per VM: after a crash the domain is found by its name and sd-actors' metadata.
        self.context.set_resource(domain_resource(self._uri, self._uuid), durable=False)

    def start(self) -> None:
        domain = self._domain_or_fail()
        if not self._libvirt(domain.isActive, "look at"):
            if self.context.attribute("haGeneration", None) is not None:
                # Said again just before it runs: its daemon refuses if its lease lapsed since the deployment.
                self.context.set_resource(domain_resource(self._uri, self._uuid), durable=False)
            self._libvirt(domain.create, "start")
        self._started = True
        if self._watching:
            # Watched from here, not from deploy: a look before the start ignores what it sees, and
            # a hypervisor nobody watches yet calls no Python for the defined events of a pool.
            self._watch_events()
            self._timer = self.context.call_later(self._liveness_delay, self._poll)

    def ping(self) -> None:
        if self._watching:
            self._look()

    def detach(self) -> bool:
        self._stop_watching()
        if self._domain is not None:
            logger.info("%s: detached from domain %r: left running for the next daemon", self._where, self._name)
        # The domain is left as it is, and so are its volumes: the storage backend detaches too.
        self._connection = self._domain = None
        self._backend = None
        return True

    def migrate(self, target: str, host: str) -> str:
        """Move the running domain live to hypervisor ``target`` on ``host`` (a LoadBalancer's move);
        return its UUID. Afterwards this component holds nothing: its parent detaches it and deploys
        it on ``host``, where it re-attaches to the domain. On failure the domain still runs here,
        watched as before, and MigrationError says why."""
        domain = self._domain_or_fail()
        self._stop_watching()  # the source copy stops and is undefined on the way: not a failure
        try:
            uuid = migrate_domain(domain, self._uri, target, address=_address_of(host),
                                  owner=Owner(app=self._owner.app, component=self._owner.component, host=host))
        except MigrationError as error:
            self._ending = False
            if self._watching:
                self._watch_events()
                self._timer = self.context.call_later(self._liveness_delay, self._poll)
            raise MigrationError(f"{self._where}: {error}") from error
        logger.info("%s: domain %r migrated to %s on %s", self._where, self._name, target, host)
        self.context.set_resource(None, durable=False)
        self._domain = None
        return uuid

    def terminate(self, record: TerminationRecord) -> None:
        self._stop_watching()
        domain = self._domain
        try:
            if domain is not None:
                try:
                    self._remove(domain)
                except libvirt.libvirtError:
                    if not self._reconnect():
                        raise
                    self._remove(self._domain_or_fail())
                self.context.set_resource(None, durable=False)
        finally:
            self._connection = self._domain = None  # the System's connection: closed with the System
            if self._backend is not None:  # after the domain is gone: its disks are no longer written
                (backend, name), self._backend = self._backend, None
                try:
                    backend.invoke("release_volumes", name)
                except DeploymentError as error:
                    logger.error("%s: the storage backend could not release the volumes of %r: %s", self._where,
                                 name, error)

    # -- watching --------------------------------------------------------------------------------------
    def _stop_watching(self) -> None:
        self._ending = True
        if self._timer is not None:
            self._timer.cancel()
        if self._unwatch is not None:
            self._unwatch()
        self._unwatch = None

    def _watch_events(self) -> None:
        context = self.context

        def on_lifecycle(event: int, _detail: int) -> None:
            # libvirt's event thread (only the stop events): hand the event to the component's own thread.
            context.call_soon(self._look)

        try:
            self._unwatch = watch_domain_lifecycle(context, self._uri, self._uuid, on_lifecycle, events=_STOP_EVENTS)
        except HypervisorError as error:
            raise DomainError(f"{self._where}: domain {self._name!r}: {error}") from error

    def _poll(self) -> None:
        self._timer = None
        self._look()
        if not self._ending:
            self._timer = self.context.call_later(self._liveness_delay, self._poll)

    def _look(self) -> None:
        """Look at the domain's state; end the component if the domain is no longer running."""
        if not self._started or self._ending or self.context.termination_requested or self._domain is None:
            return
        try:
            state, reason = self._domain.state()
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                self._end(ABNORMAL, f"domain {self._name!r} no longer exists on {self._uri}: it was undefined behind "
                                    "sd-actors' back", f"libvirt: {error}")
                return
            if self._reconnect():
                self._look()
                return
            self._failed_looks += 1
            if self._failed_looks >= self._liveness_factor:
                self._end(ABNORMAL, f"cannot read the state of domain {self._name!r} on {self._uri} "
                                    f"({self._failed_looks} looks in a row, domainLivenessFactor "
                                    f"{self._liveness_factor})", f"libvirt: {error}")
            return
        self._failed_looks = 0
        if state in _ALIVE_STATES:
            return
        state_name, reason_name = state_names(state, reason)
        cause = f"libvirt state {state_name}, reason {reason_name}"
        if state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN:
            self._end(NORMAL, f"the guest of domain {self._name!r} shut itself down", cause)
        else:
            self._end(ABNORMAL, f"domain {self._name!r} stopped behind sd-actors' back: {state_name.lower()} "
                                f"({reason_name.lower().replace('_', ' ')})", cause)

    def _reconnect(self) -> bool:
        """After a libvirt error: if the System opened a new connection (the old one died with its
        libvirtd), find the domain again by UUID through it (its events follow by themselves). False:
        nothing new."""
        try:
            connection = hypervisor_connection(self.context, self._uri)
        except HypervisorError:
            return False
        if connection is self._connection or not self._uuid:
            return False
        try:
            domain = connection.lookupByUUIDString(self._uuid)
        except libvirt.libvirtError:
            return False
        logger.warning("%s: the connection to %s had died: watching domain %r through a new one", self._where,
                       self._uri, self._name)
        self._connection, self._domain = connection, domain
        return True

    def _end(self, kind: str, description: str, cause: str) -> None:
        self._ending = True
        self.context.terminate_self(TerminationRecord(kind, description, self.context.path, cause))

    # -- tearing down ----------------------------------------------------------------------------------
    def _remove(self, domain: libvirt.virDomain) -> None:
        """Destroy and undefine ``domain`` if its metadata still names this component."""
        try:
            owner = read_owner(domain.XMLDesc())
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return  # already gone
            raise
        if not self._owner.owns(owner):
            logger.warning("%s: domain %r is no longer ours (metadata %s): left alone", self._where, self._name, owner)
            return
        if domain.isActive():
            domain.destroy()
        domain.undefine()

    # -- reading the description -----------------------------------------------------------------------
    def _hypervisor(self) -> str:
        context = self.context
        uri = context.attribute("hypervisor", None)
        if uri is None:
            # The same for every VM of a System: found once (a failed PROPERTY lookup per VM cost more
            # than defining its domain on the test driver).
            uri = context.shared(_DEFAULT_HYPERVISOR_KEY, self._default_hypervisor)
        if not isinstance(uri, str) or not uri:
            raise DomainError(f"{self._where}: hypervisor is {uri!r}; give a libvirt URI such as qemu:///system")
        return uri

    def _default_hypervisor(self) -> object:
        """The System's ``sd_actors.hypervisor`` property, else ``SD_ACTORS_HYPERVISOR``, else the test driver."""
        try:
            return self.context.resolve(f"PROPERTY {HYPERVISOR_PROPERTY}")
        except LinkError:
            return os.environ.get(HYPERVISOR_ENVIRONMENT) or DEFAULT_HYPERVISOR

    def _read_liveness(self) -> None:
        context = self.context
        check = context.attribute("domainLivenessCheck", True)
        delay = context.attribute("domainLivenessDelay", DEFAULT_LIVENESS_DELAY_MS)
        factor = context.attribute("domainLivenessFactor", DEFAULT_LIVENESS_FACTOR)
        if not isinstance(check, bool):
            raise DomainError(f"{self._where}: domainLivenessCheck is {check!r}; give true or false")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay <= 0:
            raise DomainError(f"{self._where}: domainLivenessDelay is {delay!r}; give milliseconds above 0, e.g. 2000")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise DomainError(f"{self._where}: domainLivenessFactor is {factor!r}; give a whole number of 1 or more")
        self._watching, self._liveness_delay, self._liveness_factor = check, delay / 1000, factor

    def _spec(self, connection: libvirt.virConnect) -> DomainSpec:
        context = self.context
        name = context.attribute("domainName")
        if not isinstance(name, str):
            raise DomainError(f"{self._where}: domainName is {name!r}; give the machine's name as a string")
        domain_type = context.attribute("domainType", None)
        if domain_type is None:
            # Once per System and hypervisor: a real host's capabilities are tens of kB of XML.
            domain_type = context.shared(("libvirt-default-domain-type", self._uri),
                                         lambda: self._default_domain_type(connection))
        texts: dict[str, str | None] = {}
        for attribute in ("kernel", "ramdisk", "extra", "ip", "gateway", "netmask", "hostname", "network",
                          "consoleLog"):
            value = context.attribute(attribute, None)
            if value is not None and not isinstance(value, str):
                raise DomainError(f"{self._where}: {attribute} is {value!r}; give a string")
            texts[attribute] = value
        if not isinstance(domain_type, str):
            raise DomainError(f"{self._where}: domainType is {domain_type!r}; give kvm, qemu, xen or test")
        try:
            return DomainSpec(
                name=name, memory=_whole("memory", context.attribute("memory", 512)),
                vcpus=_whole("vcpus", context.attribute("vcpus", 1)),
                domain_type=domain_type, owner=self._owner, disks=_disks(self._disk_list(name, domain_type)),
                kernel=texts["kernel"], ramdisk=texts["ramdisk"], extra=texts["extra"], ip=texts["ip"],
                gateway=texts["gateway"], netmask=texts["netmask"], hostname=texts["hostname"],
                network=texts["network"], console_log=texts["consoleLog"])
        except ValueError as error:
            raise DomainError(f"{self._where}: {error}") from error

    def _default_domain_type(self, connection: libvirt.virConnect) -> str:
        capabilities = self._libvirt(connection.getCapabilities, "read the capabilities for")
        domain_type = default_domain_type(capabilities)
        if domain_type is None:
            raise DomainError(f"{self._where}: hypervisor {self._uri!r} offers no domain type; set domainType")
        return domain_type

    def _disk_list(self, name: str, domain_type: str) -> object:
        """``disks`` if given; else the volumes the ``storageBackend`` makes for this machine; else none."""
        context = self.context
        disks = context.attribute("disks", None)
        if disks is not None or context.attribute("storageBackend", None) is None:
            return disks if disks is not None else ()
        backend = context.attribute("storageBackend")
        if not isinstance(backend, ComponentRef):
            raise DomainError(f"{self._where}: storageBackend is {backend!r}; give a LAZY link to a storage backend")
        storage = {key: context.attribute(key, None) for key in STORAGE_ATTRIBUTES}
        self._backend = (backend, name)
        return backend.invoke("volumes_for", name, {k: v for k, v in storage.items() if _given(k, v)},
                              "xvd" if domain_type == "xen" else "vd")

    def _check_boot_files(self) -> None:
        """Files the hypervisor will read must exist, unless it is the test driver or on another host."""
        parts = urlsplit(self._uri)
        if parts.scheme.split("+")[0] == "test" or parts.hostname not in (None, "", "localhost"):
            return
        for attribute in ("kernel", "ramdisk"):
            path = self.context.attribute(attribute, None)
            if isinstance(path, str) and not os.path.isfile(path):
                raise DomainError(f"{self._where}: {attribute} {path!r} is not a file on this host; fix the path "
                                  f"or install it there")

    # -- libvirt calls ---------------------------------------------------------------------------------
    def _lookup(self, name: str) -> libvirt.virDomain | None:
        connection = self._connection_or_fail()
        try:
            return connection.lookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise DomainError(f"{self._where}: cannot look up domain {name!r} on {self._uri}: {error}") from error

    def _libvirt(self, call: Callable[[], T], doing: str) -> T:
        """Run a libvirt call; its error becomes a DomainError saying what was being done to which domain."""
        try:
            return call()
        except libvirt.libvirtError as error:
            what = f"domain {self._name!r}" if self._name else "hypervisor"
            raise DomainError(f"{self._where}: cannot {doing} {what} on {self._uri}: {error}") from error

    def _connection_or_fail(self) -> libvirt.virConnect:
        if self._connection is None:
            raise DomainError(f"{self._where}: not connected to {self._uri}")
        return self._connection

    def _domain_or_fail(self) -> libvirt.virDomain:
        if self._domain is None:
            raise DomainError(f"{self._where}: domain {self._name!r} is not defined")
        return self._domain


def _address_of(host: str) -> str:
    """The address in an ``sfProcessHost``: ``h2``, ``h2:3800`` and ``tcp://h2:3800`` are all ``h2``."""
    return urlsplit(host if "://" in host else f"tcp://{host}").hostname or host


def _given(attribute: str, value: object) -> bool:
    """A storage attribute the machine says itself: set, and not the library's 2007 default.

    The library's VM carries the 2007 defaults, so a resolved VM cannot tell "volumeSize left at
    1g" from "volumeSize 1g written": a value equal to the default counts as not given, which lets
    the storage backend's own value apply before the default (the documented precedence: the VM's
    value, then its backend's, then the default).
    """
    default = DEFAULTS.get(attribute)
    return value is not None and not (type(value) is type(default) and value == default)


def _whole(attribute: str, value: object) -> int:
    """memory or vcpus: a positive whole number (a string of digits is accepted too)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        unit, example = (" MiB", 512) if attribute == "memory" else ("", 1)
        raise ValueError(f"{attribute} is {value!r}; give a whole number of 1{unit} or more, e.g. "
                         f"{attribute} {example};")
    return value


def _disks(value: object) -> tuple[Disk, ...]:
    """The ``disks`` attribute: ``[| [|"/path/root.img", "vda", "root"|], … |]``, a 4th part the format (qcow2)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"disks is {value!r}; give a vector of [|source, target, kind|] vectors")
    disks = []
    for entry in value:
        if (not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) not in (3, 4)
                or not all(isinstance(part, str) for part in entry)):
            raise ValueError(f"disk {entry!r} is not [|source, target, kind|] (or [|source, target, kind, format|]), "
                             "e.g. [|\"/images/vm1.img\", \"vda\", \"root\"|]")
        source, target, kind, *volume_format = entry
        disks.append(Disk(source=source, target=target, kind=kind, format=volume_format[0] if volume_format else "raw"))
    return tuple(disks)


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    # XenDomain is the 2007 name: the same component, for any hypervisor libvirt drives.
    return {"sd_actors.plugins.VM": VM, "sd_actors.plugins.XenDomain": VM}
