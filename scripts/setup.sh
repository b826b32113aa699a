#!/usr/bin/env bash
# Prepare this checkout for `make demo` and `make test` on Debian 12 (bookworm).
#
# Idempotent and quick when nothing changed:
#   1. Debian packages that libvirt-python needs to build from source (it ships no wheel),
#      installed only when `dpkg -s` says they are missing;
#   2. a virtual environment in .venv, made with python3 (or $PYTHON) when absent or broken;
#   3. `pip install -e '.[test]'`, skipped when .venv/.sd-actors-setup records the same
#      pyproject.toml hash and checkout path as now.
# Runs as root (CI, a fresh machine) or as a user who may use sudo for apt-get.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages -----------------------------------------------------------------
# libvirt-dev + pkg-config: headers and libvirt.pc that libvirt-python's build reads;
# gcc + python3-dev: compile its C extension; python3-venv: `python3 -m venv` on Debian.
# iproute2: `ip netns` and veth pairs, the simulated hosts of the multi-host tests (tests/hosts).
# libvirt-clients + libxml2-utils: virt-xml-validate (and the xmllint it runs), which checks generated
# domain XML, Xen's too, against libvirt's schema.
# libvirt-daemon: libvirtd with its storage driver (dir and logical pools; Debian 12 has no separate
# libvirt-daemon-driver-storage) and, as a dependency, libvirt-daemon-driver-qemu: the storage tests start it
# by hand as root. e2fsprogs: mkfs.ext* -d fills a root volume and debugfs reads it back, without mounting.
# qemu-utils: qemu-img writes and reads qcow2 volumes (LoopbackStorageBackend volumeFormat "qcow2").
# Real guests (tests/plugins/guest.py builds one, tests/plugins/test_guest_boot.py boots it): qemu-system-x86
# runs them (domain type qemu, TCG); linux-image-amd64 gives the kernel (/boot/vmlinuz-*) and its modules;
# busybox-static, kmod (depmod -b, modprobe --show-depends) and cpio make the initramfs. About 45 s and
# 500 MB (mostly the kernel's modules) on a fresh Debian 12.
# chromium + chromium-driver: tests/console drive the web console in a real headless browser (selenium talks
# to Debian's chromedriver, so nothing is downloaded at test time). procps: pgrep, which scripts/libvirt.sh
# (make demo) uses to find a running libvirtd before starting one.
debian_packages=(libvirt-dev pkg-config gcc python3-dev python3-venv iproute2 libvirt-clients libxml2-utils qemu-utils
                 libvirt-daemon e2fsprogs qemu-system-x86 linux-image-amd64 busybox-static kmod cpio
                 chromium chromium-driver procps)

missing=()
for package in "${debian_packages[@]}"; do
    if ! dpkg -s "$package" >/dev/null 2>&1; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    if ((EUID == 0)); then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        die "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
    fi
    say "installing Debian packages: ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# --- 2. virtual environment -------------------------------------------------------------
python="${PYTHON:-python3}"
venv="$repo/.venv"
stamp="$venv/.sd-actors-setup"

command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3.11 or newer"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$("$python" --version 2>&1) is too old; sd-actors needs Python 3.11 or newer (set PYTHON=...)"

# A venv whose interpreter no longer runs (checkout moved, Python removed) is rebuilt.
if [[ -d "$venv" ]] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    say "rebuilding broken .venv"
    rm -rf "$venv"
fi
if [[ ! -d "$venv" ]]; then
    say "creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

# --- 3. the package, editable, with its test extras --------------------------------------
# The stamp names the checkout too: an editable install points at one path.
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $repo"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/sd-actors" ]]; then
    say "sd-actors already installed in .venv (pyproject.toml unchanged)"
else
    say "installing sd-actors and its test extras into .venv (libvirt-python compiles from source)"
    rm -f "$stamp"
    log="$venv/pip-install.log"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "pip install failed (whole log: $log); if libvirt-python failed to build, check that libvirt-dev and pkg-config are installed"
    fi
    printf '%s\n' "$want" >"$stamp"
fi

# --- 4. the installed layout, for mypy ----------------------------------------------------
# mypy cannot follow the editable install's import hook, so it reads the packages through
# .venv/mypy-path/sd_actors/<folder> -> <folder> (pyproject.toml's [tool.mypy] mypy_path),
# one link per package-dir entry. Checked every run (milliseconds); rebuilt only when it
# differs, so a mypy already running in this checkout keeps its view.
"$venv/bin/python" - "$repo" "$venv/mypy-path" <<'PYTHON'
import pathlib, shutil, sys, tomllib

repo, view = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
package_dir = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
wanted = {view.joinpath(*package.split(".")): repo / folder for package, folder in package_dir.items()}
present = {link: link.readlink() for link in view.rglob("*") if link.is_symlink()} if view.exists() else {}
if present != wanted:
    print("setup: linking .venv/mypy-path/sd_actors/* to the package folders")
    shutil.rmtree(view, ignore_errors=True)
    for link, folder in wanted.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(folder, target_is_directory=True)
PYTHON

say "ready: $venv/bin/sd-actors"
