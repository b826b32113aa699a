#!/usr/bin/env bash
# `make demo`: the main job. Resolve the 2007 example pool; then, on this host, boot a pool of two
# real virtual machines with `sd-actors up` (qemu:///system, TCG guests with a Debian kernel and a
# busybox userspace), show them, stop the daemon (the guests keep running), start it again (it
# re-attaches to them through its journal), and take the pool down (domains and volumes removed).
# Needs root. State goes to temporary folders, so the demo leaves nothing behind and can run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sd=.venv/bin/sd-actors
python=.venv/bin/python

echo "== sd-actors parse descriptions/examples/pool.sf   (the 2007 SmartDomains pool, resolved)"
"$sd" parse descriptions/examples/pool.sf | head -n 30
echo "   … (the whole tree: sd-actors parse descriptions/examples/pool.sf)"

echo
echo "== libvirt: qemu:///system (libvirtd and virtlogd are started if none runs)"
# shellcheck source=scripts/libvirt.sh
source scripts/libvirt.sh
ensure_libvirt
virsh -c qemu:///system version | sed 's/^/   /'

demo=$(mktemp -d /tmp/sd-actors-demo.XXXXXX)
# Volumes live where qemu's user (libvirt-qemu) can reach them.
pool=$(mktemp -d /var/tmp/sd-actors-demo-pool.XXXXXX)
chmod 755 "$pool"
export XDG_STATE_HOME="$demo/state" XDG_CONFIG_HOME="$demo/config"
port=$($python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
state="$XDG_STATE_HOME/sd-actors"
host="127.0.0.1:$port"
daemon_pid=""
start_daemon() {
    "$sd" daemon --bind "tcp://$host" --state-dir "$state" --hypervisor qemu:///system 2>>"$demo/daemon.log" &
    daemon_pid=$!
    for _ in $(seq 200); do [ -f "$state/daemon.json" ] && return 0; sleep 0.1; done
    echo "the daemon did not start; its log:" >&2
    cat "$demo/daemon.log" >&2
    return 1
}
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
}
cleanup() {
    stop_daemon
    for domain in sd-demo-web sd-demo-db; do   # only if the demo was interrupted before `down`
        virsh -c qemu:///system destroy "$domain" >/dev/null 2>&1 || true
        virsh -c qemu:///system undefine "$domain" >/dev/null 2>&1 || true
    done
    virsh -c qemu:///system pool-destroy sd-actors-demo >/dev/null 2>&1 || true
    virsh -c qemu:///system pool-undefine sd-actors-demo >/dev/null 2>&1 || true
    rm -rf "$demo" "$pool"
}
trap cleanup EXIT

echo
echo "== the guest: Debian's kernel and a busybox initramfs (tests/plugins/guest.py), and a base image"
$python tests/plugins/guest.py /var/cache/sd-actors/demo-guest | sed 's/^/   /'
mkdir -p "$demo/root/etc" "$demo/root/root"
echo unconfigured >"$demo/root/etc/hostname"
tar -C "$demo/root" -czf "$demo/base.tar.gz" .

echo
echo "== keys (the daemon's and yours), and sd-actors daemon --hypervisor qemu:///system"
"$sd" keys init --state-dir "$state" >/dev/null
user_key=$("$sd" keys init | sed -n 's/.*public key: //p')
"$sd" keys authorize --state-dir "$state" -- "$user_key" >/dev/null
"$sd" keys trust "$host" -- "$("$sd" keys show --state-dir "$state")" >/dev/null
start_daemon
echo "   daemon ready on tcp://$host (log: $demo/daemon.log)"

properties=(-D "sd.kernel=/var/cache/sd-actors/demo-guest/vmlinuz" -D "sd.ramdisk=/var/cache/sd-actors/demo-guest/initrd.img"
            -D "sd.baseImage=$demo/base.tar.gz" -D "sd.poolPath=$pool")
echo
echo "== sd-actors up scripts/demo-pool.sf --name pool   (two VMs on a loopback storage backend)"
"$sd" up scripts/demo-pool.sf --name pool --host "$host" "${properties[@]}"
echo
echo "== sd-actors status pool"
"$sd" status pool --host "$host"
echo
echo "== virsh list: the guests libvirt runs"
virsh -c qemu:///system list | grep -E 'Id|sd-demo' | sed 's/^/   /'

echo
echo "== inside the guests: each wrote its hostname and ip (from the kernel command line) into its root volume"
for vm in web db; do
    proof=""
    for _ in $(seq 300); do   # a TCG guest boots in a few seconds
        proof=$(debugfs -R "cat /root/booted" "$pool/sd-demo-$vm.img" 2>/dev/null || true)
        [ -n "$proof" ] && break
        sleep 0.1
    done
    echo "   sd-demo-$vm: ${proof:-(no proof of boot yet)}"
done

echo
echo "== the daemon stops (SIGTERM): it detaches, the guests keep running"
stop_daemon
virsh -c qemu:///system list | grep -E 'Id|sd-demo' | sed 's/^/   /'
echo
echo "== a new daemon on the same state folder re-attaches to them (its journal names their UUIDs)"
start_daemon
"$sd" up scripts/demo-pool.sf --name pool --host "$host" "${properties[@]}"
for _ in $(seq 100); do
    "$sd" status pool --json --host "$host" | grep -q '"state": "deploying"\|"state": "created"\|"state": "deployed"' || break
    sleep 0.1
done
grep -o 're-attached to domain .*' "$demo/daemon.log" | sed 's/^/   daemon log: /'
"$sd" status pool --host "$host"

echo
echo "== sd-actors down pool   (domains destroyed and undefined, volumes deleted: keepVolumes false)"
"$sd" down pool --host "$host"
virsh -c qemu:///system list --all | grep -c sd-demo | sed 's/^/   sd-demo domains left: /' || true
