#!/usr/bin/env bash
# `make demo`: the main job. Resolve the 2007 example pool; then, on this host, boot the pool of
# descriptions/examples/qemu-pool.sf with `sd-actors up` (two QEMU/TCG guests on qemu:///system with
# a Debian kernel and a busybox userspace), show their own proof of boot from their consoles, stop
# the daemon (the guests keep running), start it again (it re-attaches to them through its journal),
# and take the pool down (each root filesystem archived, domains and volumes removed).
# Needs root. State goes to temporary folders; what the pool leaves (its saved images, console
# logs) is removed at the end, so the demo can run again.
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
example=descriptions/examples/qemu-pool.sf
domains=(qemu-dom1 qemu-dom2)
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
    for domain in "${domains[@]}"; do   # domains only if the demo was interrupted before `down`
        virsh -c qemu:///system destroy "$domain" >/dev/null 2>&1 || true
        virsh -c qemu:///system undefine "$domain" >/dev/null 2>&1 || true
        rm -f "/var/tmp/$domain.tar.gz" "/var/log/sd-actors/$domain.console"
    done
    virsh -c qemu:///system pool-destroy sd-actors-qemu-pool >/dev/null 2>&1 || true
    virsh -c qemu:///system pool-undefine sd-actors-qemu-pool >/dev/null 2>&1 || true
    rm -rf "$demo" /var/lib/sd-actors/qemu-pool
}
trap cleanup EXIT

echo
echo "== the guest: Debian's kernel, a busybox initramfs and a base image (tests/plugins/guest.py)"
$python tests/plugins/guest.py /var/cache/sd-actors/guest | sed 's/^/   /'

echo
echo "== keys (the daemon's and yours), and sd-actors daemon --hypervisor qemu:///system"
"$sd" keys init --state-dir "$state" >/dev/null
user_key=$("$sd" keys init | sed -n 's/.*public key: //p')
"$sd" keys authorize --state-dir "$state" -- "$user_key" >/dev/null
"$sd" keys trust "$host" -- "$("$sd" keys show --state-dir "$state")" >/dev/null
start_daemon
echo "   daemon ready on tcp://$host (log: $demo/daemon.log)"

echo
echo "== sd-actors up $example --name pool   (two VMs on a loopback storage backend)"
"$sd" up "$example" --name pool --host "$host"
echo
echo "== sd-actors status pool"
"$sd" status pool --host "$host"
echo
echo "== virsh list: the guests libvirt runs"
virsh -c qemu:///system list | grep -E 'Id|qemu-dom' | sed 's/^/   /'
echo
echo "== their consoles (consoleLog): each guest says who it booted as (the ip and hostname of the description)"
for domain in "${domains[@]}"; do
    proof=""
    for _ in $(seq 300); do   # a TCG guest boots in a few seconds
        proof=$(grep -a -m1 'sd-actors-guest:' "/var/log/sd-actors/$domain.console" 2>/dev/null || true)
        [ -n "$proof" ] && break
        sleep 0.1
    done
    echo "   $domain: ${proof:-(nothing on its console yet)}"
done

echo
echo "== the daemon stops (SIGTERM): it detaches, the guests keep running"
stop_daemon
virsh -c qemu:///system list | grep -E 'Id|qemu-dom' | sed 's/^/   /'
echo
echo "== a new daemon on the same state folder re-attaches to them (its journal names their UUIDs)"
start_daemon
"$sd" up "$example" --name pool --host "$host"
for _ in $(seq 100); do
    "$sd" status pool --json --host "$host" | grep -q '"state": "deploying"\|"state": "created"\|"state": "deployed"' || break
    sleep 0.1
done
grep -o 're-attached to domain .*' "$demo/daemon.log" | sed 's/^/   daemon log: /'
"$sd" status pool --host "$host"

echo
echo "== sd-actors down pool   (root filesystems archived: saveImage; domains undefined; volumes deleted)"
"$sd" down pool --host "$host"
echo "   qemu-dom domains left: $(virsh -c qemu:///system list --all --name | grep -c qemu-dom || true)"
for domain in "${domains[@]}"; do
    proof=$(tar -xzOf "/var/tmp/$domain.tar.gz" root/booted)
    echo "   /var/tmp/$domain.tar.gz holds root/booted: $proof"
done
