#!/usr/bin/env bash
# Prepare this Debian host for atomic-lab: system packages, /dev/kvm access,
# and the libvirt daemons (started by hand where systemd is not PID 1).
# Idempotent and quick when everything is already in place.
set -euo pipefail

packages=(
    qemu-system-x86 qemu-utils            # the hypervisor (TCG everywhere, KVM where it works)
    libvirt-daemon-system libvirt-clients # libvirtd, virtlogd, virsh
    python3-libvirt python3-venv          # Debian's libvirt bindings, seen by the lab's venv
    gnupg                                 # publishers' signed checksums (lab images fetch)
    mmdebstrap e2fsprogs                  # image builds from Debian packages
    chromium                              # the tests open each run's report.html in a real browser
)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Without udev nobody gives /dev/kvm its usual root:kvm 0660. libvirt then
# disagrees with itself about KVM and re-probes QEMU on every domain start
# (about a minute each time). Whether KVM really boots a guest is decided
# later by the lab's own probe.
if [[ -c /dev/kvm ]] && ! pgrep -x systemd-udevd >/dev/null; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# The daemons started here run without transparent huge pages (prctl PR_SET_THP_DISABLE, which QEMU
# inherits from libvirtd). Hosts without systemd as PID 1 are containers and sandboxes, often nested VMs.
# On the 2-core nested host the lab is measured on, restoring a 235 MB saved guest took 1.5-2.5 s with
# QEMU's RAM in huge pages (1.4-1.8 s of it in QEMU's kernel time) and 0.75-0.85 s without; cold boots
# were no slower without them. A libvirtd started before this ran keeps huge pages until restarted.
start_daemon() {
    local name=$1
    if ! pgrep -x "$name" >/dev/null; then
        echo "setup: starting $name"
        python3 -c 'import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) != 0:  # PR_SET_THP_DISABLE
    sys.exit(f"setup: prctl(PR_SET_THP_DISABLE): {os.strerror(ctypes.get_errno())}")
os.execvp(sys.argv[1], sys.argv[1:])' "$name" -d
    fi
}
if [[ "$(cat /proc/1/comm)" != systemd ]]; then
    start_daemon virtlogd
    start_daemon libvirtd
fi

for _ in $(seq 50); do
    virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
    sleep 0.2
done
echo "setup: libvirt does not answer at qemu:///system; see /var/log/libvirt/libvirtd.log" >&2
exit 1
