#!/usr/bin/env bash
# A stand-in "remote" libvirt host: an sshd on 127.0.0.1 only, with its own keys and config under DIR
# and its host key trusted in root's known_hosts for its port, so the lab can be driven through
# qemu+ssh:// exactly as a remote host, host key checks included (make bench, make nightly).
# Prints the LAB_LIBVIRT_URI to use. `scripts/loopback-remote.sh stop DIR` stops it.
set -euo pipefail
dir=${2:-${1:-/tmp/atomic-lab-remote}}
port=${LOOPBACK_SSH_PORT:-2222}

if [[ ${1:-} == stop ]]; then
    [[ -f $dir/sshd.pid ]] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    exit 0
fi

if [[ ! -x /usr/sbin/sshd ]]; then
    # installed, not started: policy-rc.d keeps the package's own sshd (port 22, all addresses) off
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >&2
fi

mkdir -p "$dir" /run/sshd
chmod 0700 "$dir"
[[ -f $dir/host_key ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[[ -f $dir/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519" -C atomic-lab-loopback
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
cat > "$dir/sshd_config" <<CONFIG
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding local
StrictModes no
CONFIG
if ! { [[ -f $dir/sshd.pid ]] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; }; then
    rm -f "$dir/sshd.pid"
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
    for _ in $(seq 50); do [[ -s $dir/sshd.pid ]] && break; sleep 0.1; done
    if [[ ! -s $dir/sshd.pid ]]; then
        echo "loopback-remote: sshd did not start on 127.0.0.1:$port; see $dir/sshd.log" >&2
        tail -3 "$dir/sshd.log" >&2
        exit 1
    fi
fi
# trust this host key for the port (libvirt's ssh and the lab's own SSH both read root's known_hosts),
# replacing what an earlier loopback host with another key left there
mkdir -p ~/.ssh && touch ~/.ssh/known_hosts
ssh-keygen -q -R "[127.0.0.1]:$port" -f ~/.ssh/known_hosts >/dev/null 2>&1 || true
printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >> ~/.ssh/known_hosts
echo "qemu+ssh://root@127.0.0.1:$port/system?keyfile=$dir/id_ed25519"
