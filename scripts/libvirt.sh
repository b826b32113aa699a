# Sourced by scripts/demo.sh: make qemu:///system answer on a machine without systemd, as
# Debian's libvirt-daemon-system would (its account, kvm group, virtlogd, libvirtd). Needs root.
# Never starts a second libvirtd beside a running one: a failing second one deletes the first
# one's sockets.

libvirt_answers() {
    virsh -c qemu:///system version >/dev/null 2>&1
}

ensure_libvirt() {
    if [ "$(id -u)" != 0 ]; then
        echo "the VM demo needs root (libvirtd, storage pools, qemu as libvirt-qemu)" >&2
        return 1
    fi
    getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
    id libvirt-qemu >/dev/null 2>&1 || useradd --system --gid libvirt-qemu --no-create-home \
        --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
    # Not for KVM itself (guests here are TCG): without /dev/kvm access libvirt re-probes qemu on
    # every lookup (about 50 s per domain start).
    if [ -e /dev/kvm ] && getent group kvm >/dev/null && ! id -nG libvirt-qemu | grep -qw kvm; then
        usermod --append --groups kvm libvirt-qemu
        chown "$(stat -c %u:%g /dev/kvm)" /dev/kvm   # a new ctime: libvirtd re-checks access
    fi
    mkdir -p /run/libvirt /var/log/libvirt /var/lib/libvirt /var/cache/libvirt
    [ -S /run/libvirt/virtlogd-sock ] && pgrep -x virtlogd >/dev/null || virtlogd -d
    if ! libvirt_answers; then
        pgrep -x libvirtd >/dev/null || libvirtd -d
        for _ in $(seq 200); do libvirt_answers && break; sleep 0.1; done
        libvirt_answers || { echo "libvirtd does not answer on qemu:///system" >&2; return 1; }
    fi
}
