"""Storage backends: the root and swap volumes of virtual machines, in libvirt storage pools.

``LoopbackStorageBackend`` keeps each volume as a file of a libvirt ``dir`` pool on this host.
A machine's root volume gets a filesystem made with ``makeFs`` and filled from ``baseImage``
without mounting anything: a tar or tar.gz of a root tree is unpacked into a temporary folder
and handed to ``mkfs.ext* -d``; an image file is copied in as it is (converted by ``qemu-img``
when it is not raw). The swap volume gets ``mkswap``. On teardown the root filesystem's files can
be archived (read back with ``debugfs rdump``, again without mounting), then the volumes are kept
or deleted by ``keepVolumes``. Nothing is ever mounted, so ``tempMountPoint`` is never needed.

With ``volumeFormat "qcow2"`` the volumes are qcow2 files libvirt creates; filesystems and swap
are made in a raw scratch file that ``qemu-img convert`` then writes into the volume, and a saved
image is read from a raw copy.

Ownership (reliability rule 4): libvirt keeps no metadata on pools or volumes, so sd-actors marks
what it creates with an extended attribute on the file (``user.sd-actors.owner`` on a volume,
``user.sd-actors.pool`` on the pool's folder) naming the application and component. A pool or
volume without that mark, or with another component's, is never deleted.

A machine's own volumes: a volume whose mark names this application, this backend's component
path and this machine (domain) is the machine's, whichever deployment or HARestarter generation
made it (the mark holds no generation). A later deployment of the same component, or the next
generation of a restarted VM, uses it as it is (no usingExistingVolumes needed): makeFs, baseImage
and mkswap are not applied again, volumeSize and swapSize do not resize it. Any other volume of
the wanted name is refused (:class:`VolumeExists`) unless usingExistingVolumes is true.

``LVMStorageBackend`` keeps each volume as a logical volume of ``volumeGroup`` (a libvirt
``logical`` pool, given to the VM as the block device /dev/VG/LV); see its docstring for the
real-LVM path and what the test driver simulates.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, TypeVar
from urllib.parse import urlsplit

import libvirt

from sd_actors.actors import Component, DeploymentError, TerminationRecord
from sd_actors.plugins._domain_xml import Owner
from sd_actors.plugins._hypervisors import HypervisorError, hypervisor_connection
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sd_actors.actors import ComponentContext

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HYPERVISOR: Final = "qemu:///system"
"""The libvirt URI a storage backend without ``hypervisor`` uses: pools are folders of this host."""
DEFAULT_POOL_NAME: Final = "sd-actors"
DEFAULT_POOL_PATH: Final = "/var/lib/sd-actors/images"

VOLUME_OWNER_ATTRIBUTE: Final = "user.sd-actors.owner"
"""Extended attribute on a volume file: JSON naming the app, component and domain it was made for."""
POOL_OWNER_ATTRIBUTE: Final = "user.sd-actors.pool"
"""Extended attribute on a pool's folder: JSON naming the component that defined the pool."""
OWNER_TAG_PREFIX: Final = "sd-actors.owner="
"""The start of the LVM tag on a logical volume sd-actors made (see :func:`owner_tag`)."""

STORAGE_ATTRIBUTES: Final = (
    "baseImage", "volumeSize", "swapSize", "makeFs", "volumeBaseName", "usingExistingVolumes", "keepVolumes",
    "saveImage", "saveImageName", "saveImagePath", "saveImageExtension",
)
"""The attributes of a machine that say what its volumes are (a VM's, else its backend's as defaults)."""

DEFAULTS: Final[Mapping[str, object]] = {
    "volumeSize": "1g", "swapSize": "512m", "makeFs": "mkfs.ext3", "usingExistingVolumes": False,
    "keepVolumes": "statuquo", "saveImage": False, "saveImagePath": "/tmp",  # noqa: S108 (the 2007 default)
    "saveImageExtension": "tar.gz",
}
"""The 2007 defaults, as in ch/cern/openlab/smartdomains/components.sf."""

SAVE_EXTENSIONS: Final = ("tar", "tar.gz")
VOLUME_FORMATS: Final = ("raw", "qcow2")
_QCOW2_MAGIC: Final = b"QFI\xfb"
_SIZE: Final = re.compile(r"\s*(\d+)\s*([kmgt])\s*", re.IGNORECASE)
_UNITS: Final = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MKE2FS: Final = re.compile(r"(mkfs\.ext[234]|mke2fs)")
_TAR_SUFFIXES: Final = (".tar", ".tar.gz", ".tgz")
_COPY_CHUNK: Final = 1024 * 1024
_STDERR_TAIL: Final = 600
_LVM_NAME: Final = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*")
_LVM_TAG_LIMIT: Final = 1024


class StorageError(DeploymentError):
    """A pool or volume could not be made, filled, saved or removed."""


class VolumeExists(StorageError):
    """A volume of the wanted name exists, is not the machine's own and usingExistingVolumes is false: it is
    never taken over."""


class NoDeviceMapper(StorageError):
    """LVM was asked for on a kernel without device-mapper."""


# -- sizes and settings (pure) ---------------------------------------------------------------------------


def parse_size(attribute: str, text: object, *, zero_allowed: bool = False) -> int:
    """Bytes from a 2007 size string: ``"1g"``, ``"512m"``, ``"64k"``, ``"2t"`` (powers of 1024).

    ``"0"`` is accepted only where ``zero_allowed`` (swapSize: no swap).

    :raises StorageError: for anything else, saying what to write instead.
    """
    if zero_allowed and isinstance(text, str | int) and not isinstance(text, bool) and str(text).strip() == "0":
        return 0
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    size = int(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0
    if size <= 0:
        zero = ', or "0" for none' if zero_allowed else ""
        raise StorageError(f"{attribute} is {text!r}; give a whole number above 0 followed by k, m, g or t "
                           f"(powers of 1024), e.g. \"1g\" or \"512m\"{zero}")
    return size


def format_size(size: int) -> str:
    """Sizes in messages: ``1073741824`` → ``"1 GiB"``; not a whole number of its unit: ``"1.5 GiB"``."""
    for unit, name in (("t", "TiB"), ("g", "GiB"), ("m", "MiB"), ("k", "KiB")):
        if size >= _UNITS[unit]:
            whole = size % _UNITS[unit] == 0
            return f"{size // _UNITS[unit]} {name}" if whole else f"{size / _UNITS[unit]:.1f} {name}"
    return f"{size} bytes"


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeSettings:
    """What one machine's volumes are and what happens to them at the end."""

    domain: str
    root_name: str
    swap_name: str
    root_size: int
    """Bytes."""
    swap_size: int
    """Bytes; 0: no swap volume."""
    make_fs: tuple[str, ...]
    """The command that makes the root filesystem, split into words; the volume's path is appended."""
    base_image: str | None
    using_existing: bool
    keep: str
    """``all``, ``none`` or ``statuquo``."""
    save_image: bool
    save_to: str
    """The archive's path: saveImagePath/saveImageName.saveImageExtension."""


def volume_settings(domain: str, values: Mapping[str, object], *, suffix: str = ".img") -> VolumeSettings:
    """Read the storage attributes of machine ``domain`` (missing ones take :data:`DEFAULTS`).

    The volumes are named ``BASE{suffix}`` and ``BASE-swap{suffix}`` (BASE: volumeBaseName, else
    the domain's name); a logical volume is no file, so LVM's have no suffix.

    :raises StorageError: naming the attribute and what to give instead.
    """
    merged = {**DEFAULTS, **{key: value for key, value in values.items() if value is not None}}

    def text(name: str) -> str | None:
        value = merged.get(name)
        if value is not None and not isinstance(value, str):
            raise StorageError(f"{name} is {value!r}; give a string")
        return value

    def flag(name: str) -> bool:
        value = merged.get(name)
        if not isinstance(value, bool):
            raise StorageError(f"{name} is {value!r}; give true or false")
        return value

    if not domain or "/" in domain:
        raise StorageError(f"domainName is {domain!r}; volumes are named after it, so give a name without '/'")
    base = text("volumeBaseName") or domain
    if "/" in base or base.startswith("."):
        raise StorageError(f"volumeBaseName is {base!r}; volume names cannot hold '/' or start with '.'")
    make_fs = shlex.split(text("makeFs") or "")
    if not make_fs:
        raise StorageError("makeFs is empty; give the command that makes the root filesystem, e.g. mkfs.ext4")
    keep = merged.get("keepVolumes")
    keep_word = {"true": "all", "false": "none", "statuquo": "statuquo"}.get(
        str(keep).lower() if isinstance(keep, bool | str) else "")
    if keep_word is None:
        raise StorageError(f"keepVolumes is {keep!r}; give true (keep all), false (delete all) or \"statuquo\" "
                           "(delete only the volumes this deployment created)")
    extension = text("saveImageExtension")
    if extension not in SAVE_EXTENSIONS:
        raise StorageError(f"saveImageExtension is {extension!r}; give one of {', '.join(SAVE_EXTENSIONS)}")
    save_name = text("saveImageName") or domain
    if "/" in save_name:
        raise StorageError(f"saveImageName is {save_name!r}; give a file name without '/' (the folder is "
                           "saveImagePath)")
    return VolumeSettings(
        domain=domain, root_name=f"{base}{suffix}", swap_name=f"{base}-swap{suffix}",
        root_size=parse_size("volumeSize", merged.get("volumeSize")),
        swap_size=parse_size("swapSize", merged.get("swapSize"), zero_allowed=True),
        make_fs=tuple(make_fs), base_image=text("baseImage"), using_existing=flag("usingExistingVolumes"),
        keep=keep_word, save_image=flag("saveImage"),
        save_to=os.path.join(text("saveImagePath") or ".", f"{save_name}.{extension}"))


# -- pool XML (pure) -------------------------------------------------------------------------------------


def dir_pool_xml(name: str, path: str) -> str:
    """The ``<pool type='dir'>`` document for a folder of volume files."""
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = path
    return ET.tostring(pool, encoding="unicode")


def logical_pool_xml(name: str, volume_group: str) -> str:
    """The ``<pool type='logical'>`` document for an existing LVM volume group (its volumes: /dev/VG/LV)."""
    if not _LVM_NAME.fullmatch(volume_group) or volume_group in (".", ".."):
        raise StorageError(f"volumeGroup is {volume_group!r}; an LVM volume group name holds only letters, digits "
                           "and + _ . - (and does not start with -)")
    pool = ET.Element("pool", type="logical")
    ET.SubElement(pool, "name").text = name
    source = ET.SubElement(pool, "source")
    ET.SubElement(source, "name").text = volume_group
    ET.SubElement(source, "format", type="lvm2")
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = f"/dev/{volume_group}"
    return ET.tostring(pool, encoding="unicode")


def volume_xml(name: str, size: int, volume_format: str = "raw") -> str:
    """A sparse volume of ``size`` bytes (allocation 0: blocks are taken as they are written)."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(size)
    ET.SubElement(volume, "allocation", unit="bytes").text = "0"
    ET.SubElement(ET.SubElement(volume, "target"), "format", type=volume_format)
    return ET.tostring(volume, encoding="unicode")


def logical_volume_xml(name: str, size: int) -> str:
    """A logical volume of ``size`` bytes, all of them allocated at once.

    Allocation equal to capacity makes libvirt run a plain ``lvcreate -L``; a smaller one would
    make it a sparse snapshot volume (``lvcreate --virtualsize``), which fails once its few
    extents fill up.
    """
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(size)
    ET.SubElement(volume, "allocation", unit="bytes").text = str(size)
    return ET.tostring(volume, encoding="unicode")


def has_device_mapper(misc: Path = Path("/proc/misc")) -> bool:
    """True when the running kernel offers device-mapper (it lists ``device-mapper`` in /proc/misc)."""
    try:
        return any(line.split()[1:] == ["device-mapper"] for line in misc.read_text().splitlines())
    except OSError:
        return False


# -- ownership marks -------------------------------------------------------------------------------------


def read_mark(path: str, attribute: str) -> dict[str, object] | None:
    """The JSON sd-actors wrote in ``attribute`` of ``path``; None when there is none (or no such file)."""
    try:
        raw = os.getxattr(path, attribute)
    except OSError:
        return None
    try:
        mark = json.loads(raw)
    except ValueError:
        return None
    return mark if isinstance(mark, dict) else None


def _write_mark(path: str, attribute: str, mark: Mapping[str, object]) -> None:
    try:
        os.setxattr(path, attribute, json.dumps(dict(mark), sort_keys=True).encode())
    except OSError as error:
        hint = ("its filesystem keeps no extended attributes, which sd-actors uses to mark what it owns: put poolPath "
                "on ext4, xfs, btrfs or tmpfs") if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) else str(error)
        raise StorageError(f"cannot mark {path} as sd-actors': {hint}") from error


def owner_tag(mark: Mapping[str, object]) -> str:
    """The LVM tag that marks a logical volume as sd-actors': :data:`OWNER_TAG_PREFIX` and the mark's
    JSON in URL-safe base64 (LVM tags allow only letters, digits and ``_ + . - / = ! : # &``)."""
    encoded = base64.urlsafe_b64encode(json.dumps(dict(mark), sort_keys=True).encode()).decode()
    tag = OWNER_TAG_PREFIX + encoded.rstrip("=")
    if len(tag) > _LVM_TAG_LIMIT:
        raise StorageError(f"the names in {dict(mark)} make an LVM tag of {len(tag)} characters, above LVM's "
                           f"{_LVM_TAG_LIMIT}; give the application and its components shorter names")
    return tag


def read_owner_tag(tags: Iterable[str]) -> dict[str, object] | None:
    """The mark in the first of ``tags`` that :func:`owner_tag` made; None when there is none."""
    for tag in tags:
        if tag.startswith(OWNER_TAG_PREFIX):
            encoded = tag[len(OWNER_TAG_PREFIX):]
            try:
                mark = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
                return None
            return mark if isinstance(mark, dict) else None
    return None


def _owned_by(mark: Mapping[str, object] | None, owner: Owner) -> bool:
    return mark is not None and (mark.get("app"), mark.get("component")) == (owner.app, owner.component)


# -- what both backends share ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Volume:
    name: str
    path: str
    created: bool
    """Made by this deployment (statuquo deletes it); False: it existed and was reused, including one this
    component kept earlier for the same machine (statuquo keeps it: it holds data from before)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Held:
    settings: VolumeSettings
    root: _Volume
    swap: _Volume | None
    disks: tuple[tuple[str, ...], ...]


class _PoolStorageBackend(Component):
    """The volumes of machines in one libvirt storage pool: made, filled, handed to VMs, saved, kept or deleted.

    A backend opens its pool in ``deploy`` and then calls :meth:`_make_own_domain_volumes`; it says
    how its volumes are described, marked as sd-actors' and what is left of its pool at the end.
    """

    VOLUME_SUFFIX: ClassVar[str] = ".img"
    VOLUMES_START_ZEROED: ClassVar[bool] = True
    """A new volume reads as zeros (a sparse file); False: it may still hold an earlier volume's bytes."""

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._where = ":".join(context.path)
        self._owner = Owner(app=context.path[0], component=self._where, host=context.host, process=context.process)
        self._uri = DEFAULT_HYPERVISOR
        self._pool_name = DEFAULT_POOL_NAME
        self._format = "raw"
        self._connection: libvirt.virConnect | None = None
        self._pool: libvirt.virStoragePool | None = None
        self._defined_pool = False
        self._held: dict[str, _Held] = {}

    def _make_own_domain_volumes(self) -> None:
        """With its own ``domainName``, a backend makes that machine's volumes at once, as in 2007."""
        domain = self.context.attribute("domainName", None)
        if domain is not None:
            if not isinstance(domain, str):
                raise StorageError(f"{self._where}: domainName is {domain!r}; give the machine's name as a string")
            self.volumes_for(domain)

    def detach(self) -> bool:
        logger.info("%s: detached: volumes of %s kept for the next daemon", self._where,
                    ", ".join(sorted(self._held)) or "no machine")
        self._held.clear()
        self._connection = self._pool = None
        return True

    def terminate(self, record: TerminationRecord) -> None:
        try:
            for domain in reversed(list(self._held)):
                try:
                    self.release_volumes(domain)
                except (StorageError, libvirt.libvirtError, OSError) as error:
                    logger.error("%s: releasing the volumes of %r: %s", self._where, domain, error)
            self._remove_pool_if_ours()
        finally:
            self._connection = self._pool = None  # the System's connection: closed with the System

    # -- the public surface, called by VMs through their storageBackend link ----------------------------
    def volumes_for(self, domain: str, attributes: Mapping[str, object] | None = None,
                    target_prefix: str = "vd") -> list[list[str]]:
        """The disks of machine ``domain``, made now unless it already holds them: ``[[source, target, kind], …]``
        (a fourth part, ``"qcow2"``, for a qcow2 volume).

        :param domain: the machine's libvirt domain name; the volumes are named after it (or after
            ``volumeBaseName``): ``NAME.img`` (root, target ``<prefix>a``) and ``NAME-swap.img``
            (swap, ``<prefix>b``; none when swapSize is "0"); logical volumes without ``.img``.
        :param attributes: the machine's own storage attributes (see :data:`STORAGE_ATTRIBUTES`);
            missing ones come from this backend's description, then from :data:`DEFAULTS`.
        :param target_prefix: ``vd`` (virtio) or ``xvd`` (Xen).
        :raises StorageError: saying what to fix; whatever this call made is removed first.
        """
        held = self._held.get(domain)
        if held is not None:
            return [list(disk) for disk in held.disks]
        values = {name: self.context.attribute(name, None) for name in STORAGE_ATTRIBUTES}
        values.update({key: value for key, value in (attributes or {}).items() if key in STORAGE_ATTRIBUTES})
        try:
            settings = volume_settings(domain, values, suffix=self.VOLUME_SUFFIX)
        except StorageError as error:
            raise StorageError(f"{self._where}: volumes of {domain!r}: {error}") from error
        self._check_inputs(settings)
        made: list[_Volume] = []
        try:
            pool = self._pool_or_fail()
            self._libvirt(lambda: pool.refresh(0), "refresh")
            root = self._existing(settings, settings.root_name)
            swap = self._existing(settings, settings.swap_name) if settings.swap_size else None
            self._check_room(settings, root is None, swap is None and settings.swap_size > 0)
            if root is None:
                root = self._create(settings.root_name, settings.root_size, settings.domain)
                made.append(root)
                self._fill_root(settings, root)
            if swap is None and settings.swap_size:
                swap = self._create(settings.swap_name, settings.swap_size, settings.domain)
                made.append(swap)
                self._make_swap(swap, settings.swap_size)
        except BaseException:
            for volume in reversed(made):
                self._delete(volume)
            raise
        disks = [self._disk(root.path, f"{target_prefix}a", "root")]
        if swap is not None:
            disks.append(self._disk(swap.path, f"{target_prefix}b", "swap"))
        self._held[domain] = _Held(settings=settings, root=root, swap=swap, disks=tuple(disks))
        logger.info("%s: volumes of %r ready: %s", self._where, domain, ", ".join(disk[0] for disk in disks))
        return [list(disk) for disk in disks]

    def release_volumes(self, domain: str) -> None:
        """The machine ``domain`` is gone: save its root filesystem if asked, then keep or delete its volumes.

        With saveImage, a root filesystem that cannot be saved is kept whatever keepVolumes says
        (its files are not lost); the error is raised after the other volumes were handled.
        Unknown domains are ignored (released already).
        """
        held = self._held.pop(domain, None)
        if held is None:
            return
        settings, failure = held.settings, None
        if settings.save_image:
            try:
                self.save_image(held.root.path, settings.save_to)
            except StorageError as error:
                failure = error
        for volume in (held.root, held.swap):
            if volume is None:
                continue
            keep = settings.keep == "all" or (settings.keep == "statuquo" and not volume.created)
            if keep or (failure is not None and volume is held.root):
                logger.info("%s: volume %s kept (keepVolumes %s)", self._where, volume.path, settings.keep)
                if volume.created:  # no longer held: the next deployment of this machine uses it as one it did not make
                    self._mark_volume(volume, settings.domain, held=False)
            elif volume.created or _owned_by(self._volume_mark(volume), self._owner):
                self._delete(volume)
            else:
                logger.warning("%s: volume %s was not made by sd-actors for %s: kept although keepVolumes is false",
                               self._where, volume.path, self._where)
        if failure is not None:
            raise failure

    def save_image(self, volume_path: str, archive: str) -> None:
        """Archive the files of the ext filesystem in ``volume_path`` to ``archive`` (.tar or .tar.gz), unmounted."""
        folder = os.path.dirname(archive) or "."
        if not os.path.isdir(folder):
            raise StorageError(f"{self._where}: saveImagePath {folder!r} is not a folder; create it or fix the path "
                               f"(the root volume {volume_path} is kept)")
        with self._scratch("save") as tree, self._scratch("raw") as raw_folder:
            readable = volume_path
            if self._volume_is_qcow2(volume_path):  # debugfs reads raw filesystems only
                readable = os.path.join(raw_folder, "root.raw")
                self._run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", volume_path, readable],
                          f"read the qcow2 volume {volume_path} for saveImage")
            result = self._run(["debugfs", "-R", f"rdump / {tree}", readable],
                               f"read the files of {volume_path} for saveImage")
            problems = [line for line in result.stderr.splitlines() if line and not line.startswith("debugfs ")]
            if problems:
                raise StorageError(f"{self._where}: cannot read the files of {volume_path} for saveImage: "
                                   f"{'; '.join(problems)[:_STDERR_TAIL]} (is it an ext2/3/4 filesystem?); the volume "
                                   "is kept")
            partial = f"{archive}.partial"
            with tarfile.open(partial, "w:gz") if archive.endswith(".gz") else tarfile.open(partial, "w") as output:
                for entry in sorted(os.listdir(tree)):
                    if entry != "lost+found":
                        output.add(os.path.join(tree, entry), arcname=entry)
            os.replace(partial, archive)
        logger.info("%s: root filesystem of %s saved to %s", self._where, volume_path, archive)

    # -- volumes -----------------------------------------------------------------------------------------
    def _check_inputs(self, settings: VolumeSettings) -> None:
        """What must exist before anything is made: baseImage, the programs that will be run."""
        image = settings.base_image
        if image is not None and not os.path.isfile(image):
            raise StorageError(f"{self._where}: baseImage {image!r} of {settings.domain!r} is not a file on this host; "
                               "fix the path, or leave baseImage out for an empty filesystem")
        programs = [settings.make_fs[0]] if image is None or _is_tar(image) else []
        if image is not None and _is_tar(image):
            programs.append("tar")
            if not _MKE2FS.fullmatch(os.path.basename(settings.make_fs[0])):
                raise StorageError(f"{self._where}: makeFs {settings.make_fs[0]!r} cannot fill a filesystem from "
                                   f"baseImage {image!r} without mounting it; give mkfs.ext2, mkfs.ext3 or mkfs.ext4")
        if settings.swap_size:
            programs.append("mkswap")
        if settings.save_image:
            programs.append("debugfs")
        if image is not None and not _is_tar(image) and _is_qcow2(image):
            programs.append("qemu-img")
        for program in programs:
            if shutil.which(program) is None:
                package = "e2fsprogs" if _MKE2FS.fullmatch(os.path.basename(program)) or program == "debugfs" else (
                    {"mkswap": "util-linux", "qemu-img": "qemu-utils"}.get(program))
                hint = f" (Debian: apt-get install {package})" if package else ""
                raise StorageError(f"{self._where}: {program!r} is not a program on this host; install it{hint} or "
                                   "change makeFs")

    def _existing(self, settings: VolumeSettings, name: str) -> _Volume | None:
        pool = self._pool_or_fail()
        try:
            volume = pool.storageVolLookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise StorageError(f"{self._where}: cannot look up volume {name!r} in pool {self._pool_name!r}: "
                               f"{error}") from error
        path = volume.path()
        found = _Volume(name=name, path=path, created=False)
        mark = self._volume_mark(found)
        if _owned_by(mark, self._owner) and mark and mark.get("domain") == settings.domain:
            # This machine's own volume (whatever generation made it): never made again, never reformatted.
            if mark.get("held"):
                logger.info("%s: re-attached to volume %s, still held by a deployment that outlived its daemon",
                            self._where, path)
                return replace(found, created=True)
            logger.info("%s: using volume %s, kept for %r by an earlier deployment of this component", self._where,
                        path, settings.domain)
            return found  # not made by this deployment: keepVolumes "statuquo" keeps it
        if not settings.using_existing:
            whose = (f"was made by sd-actors for machine {mark.get('domain')!r} of component {mark.get('component')} "
                     f"(application {mark.get('app')})" if mark else "was not made by sd-actors")
            raise VolumeExists(f"{self._where}: volume {name!r} of {settings.domain!r} already exists in pool "
                               f"{self._pool_name!r} ({path}) and {whose}; set usingExistingVolumes true to use it, "
                               "or give another volumeBaseName, or delete it yourself if it is not needed")
        logger.info("%s: using existing volume %s", self._where, path)
        return found

    def _check_room(self, settings: VolumeSettings, root: bool, swap: bool) -> None:
        pool = self._pool_or_fail()
        needed = (settings.root_size if root else 0) + (settings.swap_size if swap else 0)
        _state, _capacity, _allocation, available = self._libvirt(pool.info, "read the size of")
        if needed > available:
            raise StorageError(f"{self._where}: the volumes of {settings.domain!r} need {format_size(needed)} "
                               f"(volumeSize {format_size(settings.root_size)}, swapSize "
                               f"{format_size(settings.swap_size)}) but pool {self._pool_name!r} has "
                               f"{format_size(available)} free; give smaller sizes or {self._room_hint()}")

    def _create(self, name: str, size: int, domain: str) -> _Volume:
        pool = self._pool_or_fail()
        volume = self._libvirt(lambda: pool.createXML(self._volume_xml(name, size), 0),
                               f"create volume {name!r} in")
        created = _Volume(name=name, path=volume.path(), created=True)
        try:
            self._mark_volume(created, domain, held=True)
        except StorageError as error:
            self._delete(created)
            raise StorageError(f"{self._where}: {error}") from error
        return created

    def _mark_volume(self, volume: _Volume, domain: str, *, held: bool) -> None:
        """Mark ``volume`` as made by this component for ``domain``; ``held``: a deployment uses it now."""
        self._set_volume_mark(volume, {
            "app": self._owner.app, "component": self._owner.component, "host": self._owner.host, "domain": domain,
            "held": held})

    def _delete(self, volume: _Volume) -> None:
        pool = self._pool_or_fail()
        try:
            pool.storageVolLookupByName(volume.name).delete(0)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                logger.error("%s: cannot delete volume %s: %s", self._where, volume.path, error)
                return
        self._volume_deleted(volume)
        logger.info("%s: deleted volume %s", self._where, volume.path)

    def _fill_root(self, settings: VolumeSettings, root: _Volume) -> None:
        image = settings.base_image
        doing = f"make the root filesystem of volume {root.name!r} with {shlex.join(settings.make_fs)}"
        if image is None:
            self._through_raw(root, settings.root_size, lambda path: self._run(
                [*settings.make_fs, *_quiet(settings.make_fs), path], doing))
        elif _is_tar(image):
            with self._scratch("base") as tree:
                self._run(["tar", "-x", "-f", image, "-C", tree, "--numeric-owner",
                           *(["--same-owner", "--same-permissions"] if os.geteuid() == 0 else [])],
                          f"unpack baseImage {image!r}")
                self._through_raw(root, settings.root_size, lambda path: self._run(
                    [*settings.make_fs, *_quiet(settings.make_fs), "-d", tree, path], doing,
                    hint=f"if it ran out of space, volumeSize {format_size(settings.root_size)} is too small "
                         f"for the files of baseImage {image!r}: give a larger volumeSize"))
        else:
            image_format = "qcow2" if _is_qcow2(image) else "raw"
            image_size = self._virtual_size(image) if image_format == "qcow2" else os.path.getsize(image)
            if image_size > settings.root_size:
                raise StorageError(f"{self._where}: baseImage {image!r} ({format_size(image_size)}) does not fit in "
                                   f"volumeSize {format_size(settings.root_size)}; give volumeSize of at least "
                                   f"{format_size(image_size)}")
            if image_format == self._format == "raw":
                _copy_image(image, root.path, skip_zeros=self.VOLUMES_START_ZEROED)
            else:  # -n: into the volume libvirt made (its mark and size stay)
                self._run(["qemu-img", "convert", "-n", "-f", image_format, "-O", self._format, image, root.path],
                          f"write baseImage {image!r} into volume {root.name!r}")

    def _make_swap(self, swap: _Volume, size: int) -> None:
        self._through_raw(swap, size, lambda path: self._run(["mkswap", path],
                                                             f"make the swap space of volume {swap.name!r}"))

    def _through_raw(self, volume: _Volume, size: int, make: Callable[[str], object]) -> None:
        """Run ``make`` on the volume's raw bytes: the volume itself, or a raw scratch file written into qcow2."""
        if self._format == "raw":
            make(volume.path)
            return
        with self._scratch("raw") as folder:
            raw = os.path.join(folder, "volume.raw")
            with open(raw, "wb") as scratch:
                scratch.truncate(size)
            make(raw)
            self._run(["qemu-img", "convert", "-n", "-f", "raw", "-O", self._format, raw, volume.path],
                      f"write volume {volume.name!r} as {self._format}")

    def _virtual_size(self, image: str) -> int:
        """The size the guest sees of a qcow2 ``image``, from ``qemu-img info``."""
        result = self._run(["qemu-img", "info", "--output=json", image], f"read the size of baseImage {image!r}")
        try:
            return int(json.loads(result.stdout)["virtual-size"])
        except (ValueError, KeyError, TypeError) as error:
            raise StorageError(f"{self._where}: qemu-img info gave no virtual size for baseImage {image!r}") from error

    # -- helpers -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scratch(self, purpose: str) -> Iterator[str]:
        folder = tempfile.mkdtemp(prefix=f"sd-actors-{purpose}-")
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _run(self, argv: list[str], doing: str, *, hint: str = "") -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        except OSError as error:
            raise StorageError(f"{self._where}: cannot {doing}: {error}") from error
        if result.returncode != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-_STDERR_TAIL:]
            raise StorageError(f"{self._where}: cannot {doing}: {argv[0]} exited with status {result.returncode}: "
                               f"{output}" + (f"; {hint}" if hint else ""))
        return result

    def _text(self, name: str, default: str) -> str:
        value = self.context.attribute(name, default)
        if not isinstance(value, str) or not value:
            raise StorageError(f"{self._where}: {name} is {value!r}; give a non-empty string")
        return value

    def _libvirt(self, call: Callable[[], T], doing: str) -> T:
        try:
            return call()
        except libvirt.libvirtError as error:
            raise StorageError(f"{self._where}: cannot {doing} pool {self._pool_name!r} on {self._uri}: "
                               f"{error}") from error

    def _connection_or_fail(self) -> libvirt.virConnect:
        if self._connection is None:
            raise StorageError(f"{self._where}: not connected to {self._uri}; the backend is not deployed")
        return self._connection

    def _pool_or_fail(self) -> libvirt.virStoragePool:
        if self._pool is None:
            raise StorageError(f"{self._where}: pool {self._pool_name!r} is not open; the backend is not deployed")
        try:
            connection = hypervisor_connection(self.context, self._uri)
        except HypervisorError as error:
            raise StorageError(f"{self._where}: {error}") from error
        if connection is not self._connection:  # the old one died with its libvirtd: find the pool again
            logger.warning("%s: the connection to %s had died: using pool %r through a new one", self._where,
                           self._uri, self._pool_name)
            self._connection = connection
            self._pool = self._libvirt(lambda: connection.storagePoolLookupByName(self._pool_name), "find again")
        return self._pool

    # -- what each backend says ---------------------------------------------------------------------
    def _volume_xml(self, name: str, size: int) -> str:
        raise NotImplementedError

    def _volume_mark(self, volume: _Volume) -> dict[str, object] | None:
        """The mark sd-actors left on ``volume``; None when there is none."""
        raise NotImplementedError

    def _set_volume_mark(self, volume: _Volume, mark: Mapping[str, object]) -> None:
        raise NotImplementedError

    def _volume_deleted(self, volume: _Volume) -> None:
        """``volume`` was deleted: forget what was kept about it beside it."""

    def _disk(self, path: str, target: str, kind: str) -> tuple[str, ...]:
        raise NotImplementedError

    def _volume_is_qcow2(self, path: str) -> bool:
        raise NotImplementedError

    def _room_hint(self) -> str:
        raise NotImplementedError

    def _remove_pool_if_ours(self) -> None:
        raise NotImplementedError


class LoopbackStorageBackend(_PoolStorageBackend):
    """The volumes of machines as files of a libvirt ``dir`` pool (``poolName`` at ``poolPath``).

    ``deploy`` connects to ``hypervisor`` (default qemu:///system; it must be on this host, since
    filesystems are made in the volume files) and uses the pool, or defines and starts it (and
    makes its folder) when it does not exist. With its own ``domainName`` the backend makes that
    machine's volumes at once, as the 2007 backends did; VMs linked to it with ``storageBackend``
    ask for theirs with :meth:`volumes_for`. The storage attributes written on the backend
    (volumeSize, baseImage, keepVolumes, …) are defaults for the machines that use it.

    ``terminate`` releases every machine's volumes still held (:meth:`release_volumes`), then
    removes the pool if this component defined it and no volume is left in it. ``detach`` (the
    daemon stops, the application does not) keeps the pool and every volume as they are: a
    volume's mark says it is still held, so the next deployment of the same component re-attaches
    to it (and later deletes it by keepVolumes as one it made) instead of refusing it. A volume kept
    by keepVolumes is marked no longer held: the next deployment of the same machine (``up`` again,
    an HARestarter's next generation) uses it as it is, as one it did not make (see the module's
    docstring).
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._pool_path = DEFAULT_POOL_PATH
        self._made_folder = False

    # -- lifecycle -------------------------------------------------------------------------------------
    def deploy(self) -> None:
        self._pool_name = self._text("poolName", DEFAULT_POOL_NAME)
        self._pool_path = os.path.abspath(self._text("poolPath", DEFAULT_POOL_PATH))
        self._format = self._text("volumeFormat", "raw")
        if self._format not in VOLUME_FORMATS:
            raise StorageError(f"{self._where}: volumeFormat is {self._format!r}; give \"raw\" or \"qcow2\"")
        if self._format == "qcow2" and shutil.which("qemu-img") is None:
            raise StorageError(f"{self._where}: qcow2 volumes are written with qemu-img, which is not on this host; "
                               "install it (Debian: apt-get install qemu-utils) or give volumeFormat \"raw\"")
        self._uri = self._text("hypervisor", DEFAULT_HYPERVISOR)
        parts = urlsplit(self._uri)
        if parts.scheme.split("+")[0] == "test" or parts.hostname not in (None, "", "localhost"):
            raise StorageError(f"{self._where}: hypervisor {self._uri!r} does not keep its pools in folders of this "
                               "host, and the volumes' filesystems are made here; give a local URI such as "
                               "qemu:///system")
        try:
            self._connection = hypervisor_connection(self.context, self._uri)
        except HypervisorError as error:
            raise StorageError(f"{self._where}: {error}") from error
        self._pool = self._open_pool()
        self._make_own_domain_volumes()

    def _volume_xml(self, name: str, size: int) -> str:
        return volume_xml(name, size, self._format)

    def _volume_mark(self, volume: _Volume) -> dict[str, object] | None:
        return read_mark(volume.path, VOLUME_OWNER_ATTRIBUTE)

    def _set_volume_mark(self, volume: _Volume, mark: Mapping[str, object]) -> None:
        _write_mark(volume.path, VOLUME_OWNER_ATTRIBUTE, mark)

    def _disk(self, path: str, target: str, kind: str) -> tuple[str, ...]:
        # By volumeFormat, never by probing the file: a guest can write qcow2's magic on a raw disk,
        # and the host would then follow a backing file of the guest's choosing.
        return (path, target, kind, "qcow2") if self._format == "qcow2" else (path, target, kind)

    def _volume_is_qcow2(self, path: str) -> bool:
        return self._format == "qcow2"

    def _room_hint(self) -> str:
        return f"free space in {self._pool_path}"

    # -- the pool ----------------------------------------------------------------------------------------
    def _open_pool(self) -> libvirt.virStoragePool:
        connection = self._connection_or_fail()
        try:
            pool = connection.storagePoolLookupByName(self._pool_name)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise StorageError(f"{self._where}: cannot look up pool {self._pool_name!r}: {error}") from error
            return self._define_pool()
        root = ET.fromstring(pool.XMLDesc(0))  # noqa: S314 (libvirt's own output)
        kind, path = root.get("type"), root.findtext("target/path")
        if kind != "dir" or (path is not None and os.path.abspath(path) != self._pool_path):
            raise StorageError(f"{self._where}: pool {self._pool_name!r} exists as a {kind} pool at {path}, not a dir "
                               f"pool at {self._pool_path}; give another poolName, or poolPath {path!r} to use it")
        if not pool.isActive():
            self._libvirt(lambda: pool.create(0), "start")
        return pool

    def _define_pool(self) -> libvirt.virStoragePool:
        connection = self._connection_or_fail()
        self._made_folder = not os.path.exists(self._pool_path)
        try:
            os.makedirs(self._pool_path, mode=0o755, exist_ok=True)
            if self._made_folder:
                # makedirs' mode is filtered by the umask; qemu (another user) must reach the volumes.
                os.chmod(self._pool_path, 0o755)  # noqa: S103 (the pool folder qemu reads, as libvirt makes it)
        except OSError as error:
            raise StorageError(f"{self._where}: cannot make poolPath {self._pool_path}: {error}") from error
        pool = None
        try:
            pool = self._libvirt(lambda: connection.storagePoolDefineXML(dir_pool_xml(self._pool_name,
                                                                                      self._pool_path), 0), "define")
            self._defined_pool = True
            _write_mark(self._pool_path, POOL_OWNER_ATTRIBUTE, {
                "app": self._owner.app, "component": self._owner.component, "host": self._owner.host,
                "pool": self._pool_name, "madeFolder": self._made_folder})
            self._libvirt(lambda: pool.create(0), "start")
        except BaseException:
            if pool is not None:
                self._undefine_pool(pool)
            raise
        logger.info("%s: defined dir pool %r at %s", self._where, self._pool_name, self._pool_path)
        return pool

    def _remove_pool_if_ours(self) -> None:
        if self._pool is None:
            return
        pool = self._pool_or_fail()
        mark = read_mark(self._pool_path, POOL_OWNER_ATTRIBUTE)
        if not (self._defined_pool or (_owned_by(mark, self._owner) and mark and mark.get("pool") == self._pool_name)):
            return
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        if pool.numOfVolumes() > 0:
            logger.info("%s: pool %r kept: it still holds volumes", self._where, self._pool_name)
            return
        self._undefine_pool(pool)

    def _undefine_pool(self, pool: libvirt.virStoragePool) -> None:
        mark = read_mark(self._pool_path, POOL_OWNER_ATTRIBUTE) or {}
        with contextlib.suppress(libvirt.libvirtError):
            if pool.isActive():
                pool.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            pool.undefine()
        with contextlib.suppress(OSError):
            os.removexattr(self._pool_path, POOL_OWNER_ATTRIBUTE)
        if self._made_folder or mark.get("madeFolder") is True:
            with contextlib.suppress(OSError):  # not empty: someone put files there, they stay
                os.rmdir(self._pool_path)
        self._defined_pool = False
        logger.info("%s: removed pool %r", self._where, self._pool_name)


def _is_tar(path: str) -> bool:
    return path.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(path)


def _is_qcow2(path: str) -> bool:
    """True when the file at ``path`` starts as a qcow2 image does (its format, not its name)."""
    try:
        with open(path, "rb") as reading:
            return reading.read(len(_QCOW2_MAGIC)) == _QCOW2_MAGIC
    except OSError:
        return False


def _quiet(make_fs: tuple[str, ...]) -> list[str]:
    """mke2fs' flags to write into a regular file without asking (-F) and without chatter (-q)."""
    return ["-F", "-q"] if _MKE2FS.fullmatch(os.path.basename(make_fs[0])) else []


def _copy_image(source: str, target: str, *, skip_zeros: bool) -> None:
    """Copy an image file into a volume; ``skip_zeros`` where the volume reads as zeros already (it stays sparse)."""
    zeros = bytes(_COPY_CHUNK)
    with open(source, "rb") as reading, open(target, "r+b") as writing:
        while chunk := reading.read(_COPY_CHUNK):
            if skip_zeros and chunk == zeros[:len(chunk)]:
                writing.seek(len(chunk), os.SEEK_CUR)
            else:
                writing.write(chunk)


# -- the LVM backend -------------------------------------------------------------------------------------


class LVMStorageBackend(_PoolStorageBackend):
    """The volumes of machines as logical volumes of ``volumeGroup`` (a libvirt ``logical`` pool).

    ``deploy`` connects to ``hypervisor`` (default qemu:///system) and uses the logical pool over
    the group (``poolName``, else any logical pool over it, else one it defines and starts, named
    after the group). The group itself must exist: sd-actors never makes or removes volume groups
    (a pool it defined is undefined at the end only when no volume is left in it; libvirt then
    deactivates the group, which holds nothing). Volumes are named ``NAME`` and ``NAME-swap``
    and given to the VM as block devices (``/dev/VG/NAME``); everything else (storage attributes
    as defaults for the machines, keepVolumes, usingExistingVolumes, saveImage, detach and
    re-attach) is as for :class:`LoopbackStorageBackend`.

    On a real host (``qemu:///system``, ``xen:///system``; it must be this host, since filesystems
    are made here) LVM needs device-mapper in the kernel and the lvm2 tools: libvirt makes a
    volume with ``lvcreate -L`` (:func:`logical_volume_xml`) and removes it with ``lvremove``;
    sd-actors runs ``makeFs`` (``-d`` with the unpacked tar baseImage), copies an image baseImage
    (all its bytes: a new LV may hold an old one's data) or ``qemu-img convert``s a qcow2 one,
    runs ``mkswap`` and, for saveImage, ``debugfs rdump`` — on /dev/VG/NAME instead of a file.
    Ownership marks are LVM tags (:func:`owner_tag`), read with ``lvs -o lv_tags`` and written with
    ``lvchange --deltag/--addtag``; only volumes whose tag names this component are ever deleted.
    The kernel of the machine sd-actors is developed on has no device-mapper, so this path is
    written from the tools' documentation and has not run against real volumes.

    On a ``test:///`` hypervisor libvirt simulates the logical pool and its volumes (creation,
    sizes, free space, deletion; its volume groups are testvg1 and testvg2): no device-mapper is
    needed, and no bytes exist. So makeFs, baseImage and mkswap are not applied (said once in the
    log; the VMs get their disks as they are), saveImage is refused, and the LVM tags are kept by
    sd-actors in this process (:class:`_SimulatedLvTags`), which is as long as the test driver
    keeps the volumes.
    """

    VOLUME_SUFFIX = ""
    VOLUMES_START_ZEROED = False

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._group = ""
        self._simulated = False
        self._told_simulated = False

    # -- lifecycle -------------------------------------------------------------------------------------
    def deploy(self) -> None:
        group = self.context.attribute("volumeGroup")
        if not isinstance(group, str):
            raise StorageError(f"{self._where}: volumeGroup is {group!r}; give the name of an LVM volume group")
        pool_name = self.context.attribute("poolName", None)
        if pool_name is not None and (not isinstance(pool_name, str) or not pool_name):
            raise StorageError(f"{self._where}: poolName is {pool_name!r}; give a non-empty string, or leave it out "
                               "to use the volume group's pool")
        try:
            logical_pool_xml(pool_name or group, group)  # the group's name is one LVM accepts
        except StorageError as error:
            raise StorageError(f"{self._where}: {error}") from error
        self._group = group
        self._uri = self._text("hypervisor", DEFAULT_HYPERVISOR)
        parts = urlsplit(self._uri)
        self._simulated = parts.scheme.split("+")[0] == "test"
        if not self._simulated:
            if parts.hostname not in (None, "", "localhost"):
                raise StorageError(f"{self._where}: hypervisor {self._uri!r} is another host, and the volumes' "
                                   "filesystems are made on this one; run the backend there (sfProcessHost) with a "
                                   "local URI such as qemu:///system")
            if not has_device_mapper():
                raise NoDeviceMapper(f"{self._where}: LVM needs device-mapper, which this kernel does not have; load "
                                     "it (modprobe dm_mod), or use LoopbackStorageBackend on this host (or a test:/// "
                                     "hypervisor to try the description)")
            for program in ("lvs", "lvchange"):
                if shutil.which(program) is None:
                    raise StorageError(f"{self._where}: {program!r} is not a program on this host; install LVM's "
                                       "tools (Debian: apt-get install lvm2)")
        try:
            self._connection = hypervisor_connection(self.context, self._uri)
        except HypervisorError as error:
            raise StorageError(f"{self._where}: {error}") from error
        self._pool = self._open_pool(pool_name)
        self._make_own_domain_volumes()

    # -- the pool ----------------------------------------------------------------------------------------
    def _open_pool(self, pool_name: str | None) -> libvirt.virStoragePool:
        connection = self._connection_or_fail()
        self._pool_name = pool_name or self._group
        pool = self._find_pool(connection, pool_name)
        if pool is None:
            self._check_group(connection)
            pool = self._libvirt(lambda: connection.storagePoolDefineXML(
                logical_pool_xml(self._pool_name, self._group), 0), "define")
            self._defined_pool = True
            try:
                self._libvirt(lambda: pool.create(0), "start")
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
                self._defined_pool = False
                raise
            logger.info("%s: defined logical pool %r over volume group %r", self._where, self._pool_name, self._group)
            return pool
        self._pool_name = pool.name()
        root = ET.fromstring(self._libvirt(lambda: pool.XMLDesc(0), "read"))  # noqa: S314 (libvirt's own output)
        kind, source = root.get("type"), root.findtext("source/name")
        if kind != "logical" or source != self._group:
            raise StorageError(f"{self._where}: pool {self._pool_name!r} exists as a {kind} pool over {source!r}, not "
                               f"a logical pool over volume group {self._group!r}; give another poolName")
        if not pool.isActive():
            self._libvirt(lambda: pool.create(0), "start")
        return pool

    def _find_pool(self, connection: libvirt.virConnect, pool_name: str | None) -> libvirt.virStoragePool | None:
        """The pool named ``pool_name``; without a name, the logical pool over the group, whatever its name."""
        if pool_name is None:
            pools = self._libvirt(lambda: connection.listAllStoragePools(
                libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_LOGICAL), "list the logical pools for")
            for pool in sorted(pools, key=lambda pool: pool.name() != self._group):  # the group's namesake first
                source = ET.fromstring(pool.XMLDesc(0)).findtext("source/name")  # noqa: S314 (libvirt's own output)
                if source == self._group:
                    return pool
            return None
        try:
            return connection.storagePoolLookupByName(pool_name)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise StorageError(f"{self._where}: cannot look up pool {pool_name!r}: {error}") from error
            return None

    def _check_group(self, connection: libvirt.virConnect) -> None:
        """The volume group exists on the hypervisor's host (libvirt asks LVM: ``vgs``)."""
        try:
            sources = connection.findStoragePoolSources("logical", None, 0)
        except libvirt.libvirtError as error:
            raise StorageError(f"{self._where}: cannot list the LVM volume groups of {self._uri}: {error}; are LVM's "
                               "tools installed there (Debian: lvm2)?") from error
        groups = [name.text or "" for name in ET.fromstring(sources).iterfind("source/name")]  # noqa: S314
        if self._group not in groups:
            raise StorageError(f"{self._where}: volumeGroup {self._group!r} is not a volume group of {self._uri} "
                               f"(it has {', '.join(groups) or 'none'}); give one of those, or make it first "
                               f"(vgcreate {self._group} DEVICE)")

    def _remove_pool_if_ours(self) -> None:
        if self._pool is None or not self._defined_pool:
            return
        pool = self._pool_or_fail()
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        if pool.numOfVolumes() > 0:
            logger.info("%s: pool %r kept: its volume group still holds volumes", self._where, self._pool_name)
            return
        # Never pool.delete(): for a logical pool that is vgremove.
        with contextlib.suppress(libvirt.libvirtError):
            if pool.isActive():
                pool.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            pool.undefine()
        self._defined_pool = False
        logger.info("%s: removed pool %r (volume group %r left as it is)", self._where, self._pool_name, self._group)

    # -- volumes -----------------------------------------------------------------------------------------
    def _check_inputs(self, settings: VolumeSettings) -> None:
        for name in (settings.root_name, settings.swap_name):
            if not _LVM_NAME.fullmatch(name) or len(name) > 127:
                raise StorageError(f"{self._where}: {name!r} of {settings.domain!r} cannot name a logical volume; "
                                   "give a domainName or volumeBaseName of letters, digits and + _ . - (at most 122)")
        if not self._simulated:
            super()._check_inputs(settings)
        elif settings.save_image:
            raise StorageError(f"{self._where}: saveImage is true for {settings.domain!r}, but the volumes of "
                               f"{self._uri} are simulated and hold no files to archive; set saveImage false, or "
                               "use a real hypervisor")

    def _fill_root(self, settings: VolumeSettings, root: _Volume) -> None:
        if self._simulated:
            self._tell_simulated()
        else:
            super()._fill_root(settings, root)

    def _make_swap(self, swap: _Volume, size: int) -> None:
        if self._simulated:
            self._tell_simulated()
        else:
            super()._make_swap(swap, size)

    def _tell_simulated(self) -> None:
        if not self._told_simulated:
            self._told_simulated = True
            logger.warning("%s: %s simulates its logical volumes, which hold no bytes: makeFs, baseImage and mkswap "
                           "are not applied, the machines get their disks empty", self._where, self._uri)

    def _volume_xml(self, name: str, size: int) -> str:
        return logical_volume_xml(name, size)

    def _disk(self, path: str, target: str, kind: str) -> tuple[str, ...]:
        return (path, target, kind)  # raw, never probed: a guest writes what it likes on its block device

    def _volume_is_qcow2(self, path: str) -> bool:
        # A logical volume is raw: a guest that wrote qcow2's magic there must not make the host follow
        # a backing file of its choosing when the image is saved.
        return False

    def _room_hint(self) -> str:
        return f"free extents in volume group {self._group!r}"

    # -- ownership: LVM tags -----------------------------------------------------------------------------
    def _volume_mark(self, volume: _Volume) -> dict[str, object] | None:
        try:
            return read_owner_tag(self._tags(volume))
        except StorageError as error:
            logger.warning("%s: %s; volume %s counts as not sd-actors'", self._where, error, volume.path)
            return None

    def _set_volume_mark(self, volume: _Volume, mark: Mapping[str, object]) -> None:
        tag = owner_tag(mark)
        if self._simulated:
            _SIMULATED_LV_TAGS.set(self._simulated_key(volume), (tag,))
            return
        old = [word for old_tag in self._tags(volume) if old_tag.startswith(OWNER_TAG_PREFIX)
               for word in ("--deltag", old_tag)]
        self._run(["lvchange", *old, "--addtag", tag, f"{self._group}/{volume.name}"],
                  f"tag logical volume {volume.path} as sd-actors'")

    def _volume_deleted(self, volume: _Volume) -> None:
        if self._simulated:
            _SIMULATED_LV_TAGS.set(self._simulated_key(volume), ())

    def _tags(self, volume: _Volume) -> tuple[str, ...]:
        if self._simulated:
            return _SIMULATED_LV_TAGS.get(self._simulated_key(volume))
        result = self._run(["lvs", "--noheadings", "--options", "lv_tags", f"{self._group}/{volume.name}"],
                           f"read the tags of logical volume {volume.path}")
        return tuple(tag for tag in result.stdout.strip().split(",") if tag)

    def _simulated_key(self, volume: _Volume) -> tuple[str, str, str]:
        return self._uri, self._libvirt(self._pool_or_fail().UUIDString, "read the UUID of"), volume.name


class _SimulatedLvTags:
    """The LVM tags of the test driver's simulated logical volumes, which it has no place for.

    One object per process, on purpose (the exception to "no global mutable state"): the test
    driver's volumes live as long as its state, and ``test:///default``'s is the process's while
    any connection is open, so a backend of a second System (a daemon that re-attached) must find
    the tags the first one wrote. Tags are keyed by the pool's UUID, which the test driver draws
    anew whenever its state is made again: tags of a state that is gone are never found.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tags: dict[tuple[str, str, str], tuple[str, ...]] = {}

    def get(self, key: tuple[str, str, str]) -> tuple[str, ...]:
        with self._lock:
            return self._tags.get(key, ())

    def set(self, key: tuple[str, str, str], tags: tuple[str, ...]) -> None:
        with self._lock:
            if tags:
                self._tags[key] = tags
            else:
                self._tags.pop(key, None)


_SIMULATED_LV_TAGS: Final = _SimulatedLvTags()


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"sd_actors.plugins.LoopbackStorageBackend": LoopbackStorageBackend,
            "sd_actors.plugins.LVMStorageBackend": LVMStorageBackend}
