"""A tiny bootable guest for the real-VM tests, built from this machine's Debian packages.

:func:`build_guest` makes, in a cache folder, everything a VM needs for direct kernel boot:

- ``vmlinuz``: a copy of Debian's kernel (linux-image-amd64, ``/boot/vmlinuz-*``);
- ``initrd.img``: a gzip'd cpio (newc) initramfs holding busybox-static, the kernel modules that
  kernel needs to reach a virtio disk and network (virtio_pci, virtio_blk, virtio_net, ext4 and
  their dependencies, with a ``modules.dep`` from ``depmod -b``), and an ``/init`` (:data:`INIT`).

The ``/init`` mounts proc, sys and dev, loads the modules, reads ``ip=IP::GATEWAY:NETMASK:HOST::off``
and ``hostname=HOST`` from ``/proc/cmdline`` (Debian's kernel has no ``ip=`` autoconfiguration,
so the init applies them), mounts ``/dev/vda`` read-write on ``/newroot``, writes
``/root/booted`` there (``hostname=…``, ``ip=…`` as read back from eth0, ``date=…``), prints
:data:`PROOF_PREFIX` followed by the same words on the serial console, syncs, unmounts and powers
off — or, with ``sd.stay`` on its command line (the VM's ``extra``), keeps running until it is
destroyed, like a service would. A guest that fails prints ``sd-actors-guest: FAILED …`` and
powers off too, so a test never waits on a guest that hangs.

The files are rebuilt only when their inputs (kernel, busybox, the init script) change: the cache
folder's ``stamp`` records them. Everything is world-readable and the folder world-traversable,
since qemu:///system runs its guests as the libvirt-qemu user.

It also leaves ``base.tar.gz`` there, a tiny root tree for a VM's ``baseImage``.

Run as a script to build into a folder: ``python tests/plugins/guest.py /var/cache/sd-actors/guest``
(where ``descriptions/examples/qemu-pool.sf`` looks for them).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MODULES: Final = ("virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4")
"""What the guest loads, in this order (each with its dependencies): the virtio PCI transport, its disk and
network, and ext4 (crc32c_generic is what ext4 and jbd2 ask the crypto API for as ``crc32c``)."""

PROOF_PREFIX: Final = "sd-actors-guest: booted"
"""The line the guest prints on its serial console once it has written its proof file."""

PROOF_FILE: Final = "/root/booted"
"""Where, in the root volume, the guest writes its hostname, ip and date."""

INIT: Final = r"""#!/bin/busybox sh
# sd-actors test guest: mount the root volume, write a proof of boot, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s

fail() {
    echo "sd-actors-guest: FAILED $*"
    sync
    poweroff -f
}

for module in @MODULES@; do
    modprobe "$module" || fail "modprobe $module"
done

ip_conf= host= stay=
for word in $(cat /proc/cmdline); do
    case "$word" in
        ip=*) ip_conf="${word#ip=}" ;;
        hostname=*) host="${word#hostname=}" ;;
        sd.stay) stay=1 ;;
    esac
done
# ip=IP::GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF, the kernel's own syntax
IFS=: read -r address _server gateway netmask ip_host _device _autoconf <<EOF
$ip_conf
EOF
[ -n "$host" ] || host="$ip_host"
[ -n "$host" ] && hostname "$host"

ip link set lo up
if [ -n "$address" ]; then
    tries=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 50 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    ifconfig eth0 "$address" netmask "${netmask:-255.255.255.0}" up || fail "ifconfig eth0 $address"
    [ -n "$gateway" ] && route add default gw "$gateway"
fi
shown_ip=$(ip -4 -o addr show dev eth0 2>/dev/null | sed -n 's/.* inet \([0-9.]*\).*/\1/p')

tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 50 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
mount -t ext4 -o rw /dev/vda /newroot || fail "mount /dev/vda"
mkdir -p /newroot/root
proof="hostname=$(hostname) ip=$shown_ip date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "$proof" > /newroot@PROOF_FILE@ || fail "write @PROOF_FILE@"
sync
umount /newroot || fail "umount /newroot"
echo "@PROOF_PREFIX@ $proof"
# "sd.stay" on the command line (the VM's extra): keep running, as a service would, until destroyed.
if [ -n "$stay" ]; then
    while :; do sleep 3600; done
fi
poweroff -f
"""


class GuestBuildError(RuntimeError):
    """The guest could not be built: something it needs is not installed."""


@dataclass(frozen=True, slots=True)
class Guest:
    """The files of a built guest."""

    kernel: Path
    initrd: Path
    kernel_version: str
    base_image: Path
    """``base.tar.gz``: a tiny root tree (``/etc/hostname``, ``/root``) for a VM's ``baseImage``."""


def kernel_version(boot: Path = Path("/boot"), modules: Path = Path("/lib/modules")) -> str:
    """The newest kernel version with both ``/boot/vmlinuz-VERSION`` and ``/lib/modules/VERSION``."""
    versions = [path.name.removeprefix("vmlinuz-") for path in boot.glob("vmlinuz-*")]
    versions = [version for version in versions if (modules / version / "modules.dep").is_file()]
    if not versions:
        raise GuestBuildError(f"no kernel in {boot} with its modules in {modules}: install linux-image-amd64 "
                              "(scripts/setup.sh does)")

    def key(version: str) -> list[int | str]:
        return [int(part) if part.isdigit() else part for part in re.split(r"[.-]", version)]

    return max(versions, key=key)


def init_script() -> str:
    return (INIT.replace("@MODULES@", " ".join(MODULES)).replace("@PROOF_FILE@", PROOF_FILE)
            .replace("@PROOF_PREFIX@", PROOF_PREFIX))


def _program(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise GuestBuildError(f"{name} is not installed: install the Debian package {package} (scripts/setup.sh does)")
    return found


def _busybox() -> Path:
    busybox = Path(_program("busybox", "busybox-static"))
    if b"ld-linux" in busybox.read_bytes()[:65536]:
        raise GuestBuildError(f"{busybox} is dynamically linked; install busybox-static instead of busybox")
    return busybox


def module_files(version: str, modules: tuple[str, ...] = MODULES) -> list[Path]:
    """The ``.ko`` files of ``modules`` and of everything they depend on, from ``modprobe --show-depends``."""
    modprobe = _program("modprobe", "kmod")
    files: list[Path] = []
    for module in modules:
        shown = subprocess.run([modprobe, "--set-version", version, "--show-depends", module], capture_output=True,
                               text=True, check=False)
        if shown.returncode != 0:
            raise GuestBuildError(f"kernel {version} has no module {module}: {shown.stderr.strip()}")
        for line in shown.stdout.splitlines():
            words = line.split()
            if words[:1] == ["insmod"] and Path(words[1]) not in files:
                files.append(Path(words[1]))
    return files


def _stamp(version: str, busybox: Path) -> str:
    digest = hashlib.sha256()
    for part in (version, init_script(), *MODULES):
        digest.update(part.encode() + b"\0")
    for path in (Path("/boot") / f"vmlinuz-{version}", busybox, Path("/lib/modules") / version / "modules.dep"):
        status = path.stat()
        digest.update(f"{path}:{status.st_size}:{status.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _base_image(cache: Path) -> Path:
    """The root tree a guest's volume starts from (its busybox comes with the initramfs)."""
    image = cache / "base.tar.gz"
    if not image.is_file():
        with tempfile.TemporaryDirectory(dir=cache, prefix="base-") as building:
            tree = Path(building) / "tree"
            for folder in ("etc", "root", "tmp"):
                (tree / folder).mkdir(parents=True)
            (tree / "etc" / "hostname").write_text("unconfigured\n")
            made = Path(building) / "base.tar.gz"
            with tarfile.open(made, "w:gz") as archive:
                archive.add(tree, arcname=".")
            made.chmod(0o644)
            os.replace(made, image)
    return image


def _cpio_newc(tree: Path, output: Path) -> None:
    """``tree`` as a gzip'd newc cpio archive, owned by root, in a stable order."""
    cpio = _program("cpio", "cpio")
    names = sorted(str(path.relative_to(tree)) for path in tree.rglob("*"))
    listing = "".join(f"{name}\n" for name in [".", *names]).encode()
    archived = subprocess.run([cpio, "--create", "--format=newc", "--owner=0:0", "--quiet"], cwd=tree,
                              input=listing, capture_output=True, check=False)
    if archived.returncode != 0:
        raise GuestBuildError(f"cpio failed: {archived.stderr.decode(errors='replace').strip()}")
    with gzip.open(output, "wb", compresslevel=6) as writing:
        writing.write(archived.stdout)


def build_guest(cache: Path) -> Guest:
    """Build the guest's kernel and initramfs into ``cache`` (reused when its inputs did not change)."""
    version = kernel_version()
    busybox = _busybox()
    depmod = _program("depmod", "kmod")
    created = [folder for folder in (cache, *cache.parents) if not folder.exists()]
    cache.mkdir(parents=True, exist_ok=True)
    for folder in {cache, *created}:  # whatever the umask: qemu's user must reach the files
        folder.chmod(0o755)
    kernel, initrd, stamp = cache / "vmlinuz", cache / "initrd.img", cache / "stamp"
    want = _stamp(version, busybox)
    if kernel.is_file() and initrd.is_file() and stamp.is_file() and stamp.read_text() == want:
        return Guest(kernel=kernel, initrd=initrd, kernel_version=version, base_image=_base_image(cache))

    with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as building:
        tree = Path(building) / "tree"
        for name in ("bin", "dev", "proc", "sys", "newroot", "root", "tmp", "etc"):
            (tree / name).mkdir(parents=True)
        shutil.copy2(busybox, tree / "bin" / "busybox")
        (tree / "bin" / "sh").symlink_to("busybox")
        source = Path("/lib/modules") / version
        for module in module_files(version):
            target = tree / "lib" / "modules" / version / module.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(module, target)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (source / name).is_file():
                shutil.copy2(source / name, tree / "lib" / "modules" / version / name)
        depmoded = subprocess.run([depmod, "-b", str(tree), version], capture_output=True, text=True, check=False)
        if depmoded.returncode != 0:
            raise GuestBuildError(f"depmod -b failed: {depmoded.stderr.strip()}")
        init = tree / "init"
        init.write_text(init_script())
        init.chmod(0o755)
        made_kernel, made_initrd = Path(building) / "vmlinuz", Path(building) / "initrd.img"
        shutil.copyfile(Path("/boot") / f"vmlinuz-{version}", made_kernel)
        _cpio_newc(tree, made_initrd)
        for made in (made_kernel, made_initrd):
            made.chmod(0o644)
        os.replace(made_kernel, kernel)
        os.replace(made_initrd, initrd)
    stamp.write_text(want)
    return Guest(kernel=kernel, initrd=initrd, kernel_version=version, base_image=_base_image(cache))


if __name__ == "__main__":
    built = build_guest(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/var/tmp/sd-actors-guest"))
    print(f"kernel {built.kernel} ({built.kernel_version})\ninitrd {built.initrd}\nbase image {built.base_image}")
