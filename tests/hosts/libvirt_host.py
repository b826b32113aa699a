"""A real libvirt host of its own inside a simulated host, for tests that move guests between hosts.

``open_libvirt_host(host)`` starts ``virtlogd`` and ``libvirtd`` inside ``host``'s network
namespace and in a private mount namespace of their own (``unshare -m``), where tmpfs mounts cover
/run/libvirt, /var/lib/libvirt and /var/log/libvirt, a cache folder (:data:`CACHE`) covers
/var/cache/libvirt and a folder of the fixture covers /etc/libvirt. So the root namespace's
libvirtd (if any) never sees this one: not its sockets, domains, pools, logs or pid files. Its
``libvirtd.conf`` sets a ``host_uuid`` of its own (libvirt refuses to migrate a domain "to the
same host") and puts its sockets in a folder of the shared filesystem, so the test process and
daemons reach it by ``qemu+unix:///system?socket=…/libvirt-sock``. Its guests (qemu, TCG) run in
``host``'s network namespace: a migration stream to ``tcp://<host address>`` crosses the
simulated hosts' bridge.

On exit every process of that mount namespace (libvirtd, virtlogd, qemu) is stopped; the mounts
lived only in that namespace and go with its last process: nothing is left mounted.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import libvirt

from tests.hosts._netns import TestHost

PRIVATE_FOLDERS: Final = ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt")
"""What each libvirt host covers with a tmpfs of its own (the root namespace's stay as they are)."""
CACHE: Final = Path("/var/cache/sd-actors/libvirt-hosts")
"""Bind-mounted over /var/cache/libvirt: the qemu capabilities libvirtd probes on its first guest
(about 5 s) are kept for the next libvirt host, as a real host keeps them."""
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0


class LibvirtHostUnavailable(RuntimeError):
    """This machine cannot run a libvirt host of its own (not root, no libvirtd, qemu or unshare)."""


def libvirt_host_unavailable_reason() -> str | None:
    """Why a libvirt host cannot be started here; None when it can."""
    if os.geteuid() != 0:
        return "a libvirt host of its own needs root (mount namespaces, libvirtd, qemu as libvirt-qemu)"
    for program, package in (("libvirtd", "libvirt-daemon-driver-qemu"), ("virtlogd", "libvirt-daemon"),
                             ("qemu-system-x86_64", "qemu-system-x86"), ("unshare", "util-linux")):
        if shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"{program} is not installed (Debian: apt-get install {package}; scripts/setup.sh does)"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LibvirtHost:
    """A running libvirtd inside one simulated host."""

    host: TestHost
    uri: str
    """``qemu+unix:///system?socket=…``: how anyone on this machine reaches it."""
    host_uuid: str
    folder: Path
    """Its /etc/libvirt (bind-mounted there in its namespace) and pid files."""

    def connect(self) -> libvirt.virConnect:
        """A new connection (close it when done)."""
        return libvirt.open(self.uri)

    def qemu_processes(self, domain: str) -> list[int]:
        """The qemu processes of ``domain`` that run on this host (in its mount namespace)."""
        namespace = _namespace(self.folder / "run")
        if namespace is None:
            return []
        found = []
        for pid in _members(namespace):
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if command[0].startswith(b"/usr/bin/qemu-system") and f"guest={domain},".encode() in command:
                    found.append(pid)
        return found


def _script(etc: Path, run: Path) -> str:
    mounts = "\n".join(f"mkdir -p {folder} && mount -t tmpfs -o mode=0755 sd-actors-libvirt {folder}"
                       for folder in PRIVATE_FOLDERS)
    # set -e: a mount that fails stops here, before any daemon could start over the root's folders.
    return f"""set -e
{mounts}
mkdir -p /var/cache/libvirt && mount --bind {CACHE} /var/cache/libvirt
mount --bind {shlex.quote(str(etc))} /etc/libvirt
virtlogd -d -p {shlex.quote(str(run / "virtlogd.pid"))}
libvirtd -d -p {shlex.quote(str(run / "libvirtd.pid"))}
"""


@contextlib.contextmanager
def open_libvirt_host(host: TestHost) -> Iterator[LibvirtHost]:
    """Start virtlogd and libvirtd inside ``host`` (see the module's docstring); stop them all on exit.

    :raises LibvirtHostUnavailable: saying why, when this machine cannot run one.
    """
    reason = libvirt_host_unavailable_reason()
    if reason is not None:
        raise LibvirtHostUnavailable(reason)
    # Short: a unix socket path must fit in 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix=f"sd-lv-{host.name}-", dir="/run"))
    etc, run = folder / "etc", folder / "run"
    etc.mkdir()
    CACHE.mkdir(parents=True, exist_ok=True)
    run.mkdir()
    host_uuid = str(uuid.uuid4())
    (etc / "libvirtd.conf").write_text(
        f'host_uuid = "{host_uuid}"\nunix_sock_dir = "{run}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n')
    (etc / "virtlogd.conf").write_text("")
    (etc / "qemu.conf").write_text("")
    libvirt_host = LibvirtHost(host=host, uri=f"qemu+unix:///system?socket={run}/libvirt-sock",
                               host_uuid=host_uuid, folder=folder)
    try:
        started = host.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _script(etc, run)],
                           capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        if started.returncode != 0:
            raise LibvirtHostUnavailable(f"libvirtd could not start in {host.name}: {started.stderr.strip()}")
        _wait_until_it_answers(libvirt_host)
        yield libvirt_host
    finally:
        _stop(run)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_it_answers(libvirt_host: LibvirtHost) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            libvirt_host.connect().close()
            return
        except libvirt.libvirtError as error:
            if time.monotonic() > deadline:
                raise LibvirtHostUnavailable(f"libvirtd in {libvirt_host.host.name} did not answer on "
                                             f"{libvirt_host.uri} within {START_TIMEOUT:g} s: {error}") from None
        time.sleep(0.05)  # libvirtd is starting in another process: nothing to wait on but its socket


def _stop(run: Path) -> None:
    """Stop every process of the libvirt host's mount namespace (libvirtd, virtlogd, qemu)."""
    namespace = _namespace(run)
    if namespace is None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        members = _members(namespace)
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _members(namespace) and time.monotonic() < deadline:
            time.sleep(0.05)  # other processes ending: nothing to wait on but /proc
        if not _members(namespace):
            return


def _namespace(run: Path) -> str | None:
    """The mount namespace of the libvirt host's daemons; None if none runs (never the root's own)."""
    for pid_file in ("libvirtd.pid", "virtlogd.pid"):
        with contextlib.suppress(OSError, ValueError):
            namespace = os.readlink(f"/proc/{int((run / pid_file).read_text())}/ns/mnt")
            if namespace != os.readlink("/proc/self/ns/mnt"):  # never the root namespace's processes
                return namespace
    return None


def _members(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                    found.append(int(entry))
    return found
