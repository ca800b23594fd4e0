"""The guest commands the lifecycle reads a boot with: its boot id, its journal, cloud-init's end, and the
preparation a saved guest gets so that its restores log in fast."""

from __future__ import annotations

# Shell builtins where they will do: under TCG every process costs tens to hundreds of milliseconds.
BOOT_ID = "read -r boot_id </proc/sys/kernel/random/boot_id; echo \"$boot_id\""
# A restored guest's first command runs as the login user, without sudo (0.15 s under TCG): before a guest is
# saved, the login user gets its authorized_keys file and a copy of date(1) that may set the clock (file
# capability CAP_SYS_TIME), runnable by the user's group only. Where that fails (no setcap), the copy is not
# left and restores do both through sudo.
SET_CLOCK = "/usr/local/libexec/lab/set-clock"
PREPARE_RESTORES = ("chown {user}: ~{user}/.ssh/authorized_keys && "
                    f"install -D -m 0750 -g \"$(id -gn {{user}})\" \"$(command -v date)\" {SET_CLOCK} && "
                    f"setcap cap_sys_time+ep {SET_CLOCK} || {{{{ rm -f {SET_CLOCK}; exit 1; }}}}")
JOURNAL = "journalctl -b --no-pager -o short-monotonic"  # this boot's journal
LIST_BOOTS = "journalctl --list-boots --no-pager"
# cloud-init sets a guest up at its first boot only, as Atomic operators ran it: the lab's seed has it
# disable its own later runs (cloudinit/user-data.yaml's bootcmd writes this file, and its systemd generator
# then leaves cloud-init.target out) unless EVERY_BOOT exists.
CLOUD_INIT_OFF, EVERY_BOOT = "/etc/cloud/cloud-init.disabled", "/etc/cloud/lab-every-boot"
# Done when cloud-init is not part of this boot (its generator did not write /run/cloud-init/enabled, or its
# units are masked), or when no cloud-init unit has a job queued or running (the final stage runs only when
# the seed brought scripts, see images/guest) and no stage failed or reported errors. A shell loop, because
# `cloud-init status --wait` is a Python process that costs seconds under TCG beside the stages.
_STATUS, _RESULT = "/run/cloud-init/status.json", "/run/cloud-init/result.json"
CLOUD_INIT_DONE = ("test ! -e /run/cloud-init/enabled || [ \"$(systemctl is-enabled cloud-init.service)\" = masked ] "
                   "|| { while [ -n \"$(systemctl list-jobs --no-legend | grep ' cloud-')\" ]; do sleep 0.2; done; "
                   "! systemctl -q is-failed cloud-init-local cloud-init cloud-config cloud-final "
                   f"&& test -e {_STATUS} && ! grep -qs '\"errors\": \\[$' {_STATUS} {_RESULT} "
                   "|| { cloud-init status --long; exit 1; }; }")
