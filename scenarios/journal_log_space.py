"""journal-log-space: a container logging through docker's journald driver fills the journal to its limit.

Recreates the operator blog's "lack of log space" with container logs going to journald: journald is
limited to `SystemMaxUse` (lowered here so that the limit is reached in seconds), a chatty container
logs through `--log-driver=journald`, and journald rotates and deletes its oldest archived files, so
`docker logs` no longer has the container's first lines. Everything asserted is journald's, docker's and
the filesystem's own account: journald's start line with the limit, `journalctl --disk-usage`, the
archived journal files, and what `docker logs` still returns.
"""

from __future__ import annotations

import re
import shlex

from lab.containers import busybox_image, start_docker
from lab.context import ScenarioContext
from lab.scenario import reproduced, scenario

LIMIT_MIB = 24
JOURNALD_CONF = f"[Journal]\nStorage=persistent\nSystemMaxUse={LIMIT_MIB}M\nSystemMaxFileSize=4M\n"
# Lines of about 4 KiB that journald cannot compress (it compresses every field over 512 bytes: with
# lines of 4000 x's, 9216 of them and the rest of the journal took 17.1M of the 24M, and nothing was
# deleted): a random pad, the same on every line. journald's per-service rate limit (10000 messages in
# 30 s) is not what stops them.
CHATTY = ("i=0; pad=$(head -c 3000 /dev/urandom | base64 | tr -d '\\n'); "
          "while :; do echo \"line $i $pad\"; i=$((i+1)); done")
ENOUGH = LIMIT_MIB * 1024 * 3 // 8  # lines of about 4 KiB each: half as much again as the limit holds
USAGE = re.compile(r"take up ([\d.]+)([KMG])")


@scenario("journal-log-space", "A container logging through journald fills the journal to SystemMaxUse; journald "
          "rotates and deletes the oldest files, and docker logs loses the first lines", image="lab-atomic",
          memory=1024, tags=("containers", "catalog"), covers=(reproduced("journal-log-space"),),
          timeout=1200)
def journal_log_space(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step(f"journald limited to {LIMIT_MIB} MiB"):
        vm.write_file("/etc/systemd/journald.conf.d/lab.conf", JOURNALD_CONF)
        since = vm.succeed("date +%s").strip()
        vm.succeed("systemctl restart systemd-journald")
        started = vm.wait_until_succeeds(f"journalctl --since @{since} -u systemd-journald -o cat | "
                                         "grep 'System Journal'", timeout=60)
        lab.evidence("journald-start.txt", started)
        assert f"max {LIMIT_MIB}.0M" in started, started  # journald read the limit
    with lab.step("a container logs through docker's journald driver until journald has rotated"):
        start_docker(vm, {"log-driver": "journald"})
        image = busybox_image(vm)
        with lab.sample("journal on disk (MiB, du)", "du -sm /var/log/journal", every=2):
            vm.succeed(f"docker run -d --name chatty {image} sh -c {shlex.quote(CHATTY)}")
            vm.wait_until_succeeds("test \"$(journalctl CONTAINER_NAME=chatty -n 1 -o cat | cut -d' ' -f2)\" "
                                   f"-ge {ENOUGH}", timeout=900)
        vm.succeed("docker stop -t 1 chatty && journalctl --flush --sync")
    with lab.step("journald stays under its limit, and the container's first lines are gone"):
        usage = vm.succeed("journalctl --disk-usage")
        lab.evidence("disk-usage.txt", usage + vm.succeed("ls -l /var/log/journal/*/"))
        match = USAGE.search(usage)
        assert match, usage
        mib = float(match.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024}[match.group(2)]
        assert mib <= LIMIT_MIB + 4, usage  # SystemMaxUse, give or take the active file
        first = vm.succeed("docker logs chatty 2>&1 | sed -n 1p").split(" ", 2)[:2]  # reads to the end: no SIGPIPE
        kept = vm.succeed("journalctl CONTAINER_NAME=chatty -o cat | sed -n 1p").split(" ", 2)[:2]
        # journald's oldest entry of the container is docker's first line, and it is not line 0: deleted files
        assert first == kept and int(first[1]) > 0, {"docker logs": first, "journal": kept}
        last = vm.succeed("journalctl CONTAINER_NAME=chatty -n 1 -o cat | cut -d' ' -f2").strip()
        lab.record("journal_mib", mib)
        lab.record("lines_kept", f"{first[1]}..{last} of 0..{last}")
