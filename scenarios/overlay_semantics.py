"""overlay-semantics: what bookworm's kernel overlayfs does that a plain file system does not.

overlayfs-discussion.txt: `rm` in the merged view leaves a "tombstone" in the upper layer; a small change
copies the whole file up ("the overlays are too big … they are only modifying a small amount of files");
"make sure you have redirect_dir=on,metacopy=on"; "inotify not working properly, so changes need to be
watched for on the underlying fs"; a limit on how many layers stack. containers-storage-slides.txt: overlay
is "not a posix compatible file system". Each is read from the guest's kernel: the upper directory's
files, their xattrs and blocks, rename(2)'s errno, inotify's events, the kernel log.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import reproduced, scenario

BASE = "/srv/ov"
MIB = 32  # the big lower file: a copy-up of it shows in the upper directory's blocks
PLAIN = "redirect_dir=off,metacopy=off,index=off"  # the baseline, whatever the kernel's build defaults
FEATURES = "redirect_dir=on,metacopy=on,index=off"
XATTR = "python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())' {} trusted.overlay.{}"
RENAME = "python3 -c 'import os,sys; os.rename(sys.argv[1], sys.argv[2])' {0}/moving {0}/moved"


@scenario(
    "overlay-semantics",
    "kernel overlayfs: whiteouts, whole-file copy-up, broken hard links and rename(2) EXDEV, redirect_dir and "
    "metacopy, inotify blind to the layers, the lower-layer limit (overlayfs thread, storage talk)",
    image="lab-bookworm",
    memory=1024,
    tags=("storage", "catalog"),
    covers=(
        reproduced("overlay-whiteouts"),
        reproduced("overlay-copy-up"),
        reproduced("overlay-not-posix", "shown by hard links that a copy-up breaks and directory renames "
                                        "refused with EXDEV (index=off, redirect_dir=off)"),
        reproduced("overlay-redirect-metacopy"),
        reproduced("overlay-inotify"),
        reproduced("overlay-layer-limit", "bookworm's kernel stacks at most 500 lower layers; the thread's "
                                          "\"like 63\" was an old engine's figure"),
    ),
    timeout=900,
)
def overlay_semantics(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step(f"a lower layer (a {MIB} MiB file, a hard-linked pair, a directory), mounted with {PLAIN}"):
        vm.succeed("modprobe overlay")
        lab.record("kernel_defaults", vm.succeed("grep -H . /sys/module/overlay/parameters/*"))
        _lower(vm)
        _mount(vm, "plain", PLAIN)
        lab.evidence("mounts.txt", vm.succeed("grep overlay /proc/mounts"))
    _whiteouts(lab, vm)
    _copy_up(lab, vm)
    _not_posix(lab, vm)
    _redirect_and_metacopy(lab, vm)
    _inotify(lab, vm)
    _layer_limit(lab, vm)


def _lower(vm: Machine) -> None:
    vm.succeed(f"mkdir -p {BASE}/lower/dir {BASE}/lower/moving/sub && cd {BASE}/lower && "
               f"head -c {MIB}M /dev/urandom > big && cp big big2 && echo keep > gone && echo one > a && ln a b && "
               "echo x > dir/inside && echo y > moving/sub/file && echo old > watched")


def _mount(vm: Machine, name: str, options: str) -> None:
    top = f"{BASE}/{name}"
    vm.succeed(f"mkdir -p {top}/upper {top}/work {top}/merged && mount -t overlay overlay -o "
               f"lowerdir={BASE}/lower,upperdir={top}/upper,workdir={top}/work,{options} {top}/merged")


def _whiteouts(lab: ScenarioContext, vm: Machine) -> None:
    top = f"{BASE}/plain"
    with lab.step("rm of a lower file: a whiteout (a 0:0 character device) in upper; lower keeps the file"):
        vm.succeed(f"rm {top}/merged/gone")
        vm.require_absent(f"{top}/merged/gone")
        assert vm.succeed(f"stat -c '%F %t:%T' {top}/upper/gone").strip() == "character special file 0:0"
        assert vm.succeed(f"cat {BASE}/lower/gone").strip() == "keep"
    with lab.step("a directory removed and made again: opaque in upper, the lower entries hidden"):
        vm.succeed(f"rm -r {top}/merged/dir && mkdir {top}/merged/dir")
        assert vm.succeed(XATTR.format(f"{top}/upper/dir", "opaque")).strip() == "y"
        assert vm.succeed(f"ls -A {top}/merged/dir").strip() == ""
        lab.evidence("whiteouts.txt", vm.succeed(f"ls -lR {top}/upper"))


def _copy_up(lab: ScenarioContext, vm: Machine) -> None:
    top = f"{BASE}/plain"
    with lab.step(f"one byte appended to the {MIB} MiB lower file: the whole file is copied up"):
        before = int(vm.succeed(f"du -sk {top}/upper").split()[0])
        vm.succeed(f"echo >> {top}/merged/big")
        after = int(vm.succeed(f"du -sk {top}/upper").split()[0])
        lab.record("copy_up_kib", {"before": before, "after": after})
        assert after - before >= MIB * 1024, (before, after)


def _not_posix(lab: ScenarioContext, vm: Machine) -> None:
    top = f"{BASE}/plain"
    with lab.step("not POSIX: a write through one hard link leaves the other name's old content"):
        assert vm.succeed(f"stat -c %h {top}/merged/a").strip() == "2"
        vm.succeed(f"echo two >> {top}/merged/a")
        assert vm.succeed(f"cat {top}/merged/b").strip() == "one"
        lab.record("hard_link_after_copy_up", vm.succeed(f"stat -c '%n %h %i' {top}/merged/a {top}/merged/b"))
    with lab.step("not POSIX: rename(2) of a lower directory fails with EXDEV (redirect_dir=off)"):
        said = vm.fail(RENAME.format(f"{top}/merged"), "[Errno 18] Invalid cross-device link")
        lab.record("rename_without_redirect_dir", said.strip().splitlines()[-1])
        lab.record("mv_copies_instead", vm.succeed(f"mv -v {top}/merged/moving {top}/merged/moved-by-mv"))


def _redirect_and_metacopy(lab: ScenarioContext, vm: Machine) -> None:
    plain, top = f"{BASE}/plain", f"{BASE}/features"
    with lab.step(f"{FEATURES}: the rename succeeds, upper records a redirect; no copy of the tree"):
        _mount(vm, "features", FEATURES)
        vm.succeed(RENAME.format(f"{top}/merged"))
        assert vm.succeed(XATTR.format(f"{top}/upper/moved", "redirect")).strip() == "moving"
        assert vm.succeed(f"cat {top}/merged/moved/sub/file").strip() == "y"
        vm.require_absent(f"{top}/upper/moved/sub/file")
    with lab.step("chmod of a lower file: metacopy=on copies its metadata only, metacopy=off its data too"):
        vm.succeed(f"chmod 600 {top}/merged/big2 {plain}/merged/big2")
        with_meta = int(vm.succeed(f"stat -c %b {top}/upper/big2").strip())
        without = int(vm.succeed(f"stat -c %b {plain}/upper/big2").strip())
        vm.succeed(XATTR.format(f"{top}/upper/big2", "metacopy"))
        lab.record("chmod_upper_blocks", {"metacopy=on": with_meta, "metacopy=off": without})
        # metacopy=on: at most the file system's block for the xattrs (ext4: 8 sectors), none of the data
        assert with_meta <= 8 and without >= MIB * 2048, (with_meta, without)


def _inotify(lab: ScenarioContext, vm: Machine) -> None:
    top, tool = f"{BASE}/plain", lab.install_guest_tool("inotify_watch")

    def watch(change: str, seconds: int) -> str:
        """What inotify reports on the merged file while `change` runs."""
        return vm.succeed(f"{tool} {top}/merged/watched {seconds} > /run/watch.out & "
                          "until grep -q ready /run/watch.out; do sleep 0.1; done; "
                          f"{change}; wait; tail -n1 /run/watch.out").strip()

    with lab.step("inotify on the merged file misses a change made to its lower layer; sees one made through it"):
        missed = watch(f"echo new >> {BASE}/lower/watched", 5)
        seen = watch(f"echo newer >> {top}/merged/watched", 20)
        lab.record("inotify", {"lower changed": missed, "merged changed": seen})
        assert missed == "none" and seen.startswith("event"), (missed, seen)
        assert "new" in vm.succeed(f"cat {top}/merged/watched")  # the change is there, unannounced


def _layer_limit(lab: ScenarioContext, vm: Machine) -> None:
    mount = "cd /srv/layers && mount -t overlay overlay -o lowerdir=$(seq -s: 1 {}) /srv/stack"
    with lab.step("500 lower layers stack; a 501st is refused by the kernel"):
        vm.succeed("mkdir -p /srv/stack && cd /srv && mkdir -p $(seq -f layers/%g 1 501) && "
                   "for n in $(seq 1 501); do echo $n > layers/$n/file$n; done")
        vm.succeed(mount.format(500) + " && cat /srv/stack/file500 && umount /srv/stack")
        marker = vm.mark_kernel_log("layer limit")
        vm.fail(mount.format(501), 32)
        said = [text for _, text in vm.get_kernel_log_since(marker) if "overlayfs" in text]
        lab.evidence("layer-limit-dmesg.txt", "\n".join(said))
        assert "overlayfs: too many lower directories, limit is 500" in said, said
