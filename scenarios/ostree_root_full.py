"""ostree-root-full: the root of an OSTree host runs full; a deploy fails, and the root is grown online.

atomic-host-operator-blog.txt: the root volume "3G ... almost half used" with two trees; the field wiki:
`lvextend -r ... /dev/atomicos/root` "don't work". On lab-ostree the root LV is xfs mounted at /sysroot,
and / is a deployment checked out on it: /var and the repository share its space. Here / is filled
through /var until ostree's own deploy fails with ENOSPC. The wiki's `lvextend -r` then fails, and
not for the file system: LVM cannot write its metadata archive to /etc/lvm/archive on the full root
("Couldn't create temporary archive name.") and leaves the LV as it was. What works: lvextend without
the archive, `xfs_growfs` on the mounted sysroot, the metadata backup afterwards; the same deploy then
succeeds, nothing deleted. With room on the root, `lvextend -r` is tried again and what bookworm's
fsadm does with the sysroot recorded.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.lvm import lv_bytes
from lab.machine import Machine
from lab.scenario import partly, scenario

ROOT_LV = "/dev/atomicos/root"
NOSPACE = "No space left on device"
ARCHIVE_FAILED = "Couldn't create temporary archive name."  # LVM's, when /etc/lvm/archive has no room


@scenario(
    "ostree-root-full",
    "an OSTree host's root fills until `ostree admin deploy` fails with ENOSPC; the wiki's `lvextend -r` fails "
    "there (LVM cannot archive its metadata); lvextend without the archive and xfs_growfs /sysroot work, and the "
    "deploy succeeds (operator blog, wiki)",
    image="lab-ostree",
    memory=1024,
    params={"grow": "1G"},
    tags=("ostree", "storage", "catalog"),
    covers=(
        partly("root-half-used", "the root's use with two trees is recorded, not compared with the field's"),
        partly("lvextend-root", "why it failed in the field is not known; a full root makes `lvextend -r` fail "
                                "writing LVM's archive, and with room it works"),
    ),
    timeout=1800,
)
def ostree_root_full(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("the root LV is xfs at /sysroot; / is a deployment on it, /var its own directory there"):
        mount = vm.succeed("findmnt -n -o SOURCE,FSTYPE /sysroot").split()
        assert mount == ["/dev/mapper/atomicos-root", "xfs"], mount
        lab.evidence("df-before.txt", vm.succeed("df -h /sysroot / /var"))
        lab.record("sysroot_bytes_before", size(vm))

    ref = vm.succeed("ostree admin status | sed -n 's/^ *origin refspec: //p' | head -n 1").strip()
    osname = vm.succeed("ls /ostree/deploy").split()[0]
    with lab.step("a new commit; then / filled through /var until the sysroot has no space"):
        tree = "/var/tmp/v2"
        vm.succeed(f"mkdir -p {tree}/usr/share/lab && echo 2 > {tree}/usr/share/lab/version && "
                   f"ostree commit --repo=/ostree/repo --branch={ref} --subject='lab 2' --tree=ref={ref} "
                   f"--tree=dir={tree}")
        vm.succeed("fallocate -l $(( $(df --output=avail -B1 /sysroot | tail -n 1) - (1 << 20) )) /var/lab-fill")
        vm.fail("dd if=/dev/zero of=/var/lab-fill-2 bs=64k 2>&1", NOSPACE, timeout=300)
        lab.evidence("df-full.txt", vm.succeed("df -h /sysroot"))

    with lab.step("ostree admin deploy fails: no space left on the device"):
        refused = vm.fail(f"ostree admin deploy --os={osname} {ref} 2>&1", NOSPACE, timeout=900)
        lab.evidence("deploy-refused.txt", refused)
        assert vm.succeed("ostree admin status").count(osname) == 1, "a deployment was added anyway"

    with lab.step("the wiki's `lvextend -r` on the full root fails: LVM cannot archive its metadata there"):
        lv_before = lv_size(vm)
        tried = vm.execute(f"lvextend -r -L +{lab.params['grow']} {ROOT_LV}", timeout=300)
        lab.evidence("lvextend-r-full.txt", f"rc={tried.rc}\n{tried.stdout}{tried.stderr}")
        assert tried.rc != 0 and ARCHIVE_FAILED in tried.stderr, f"rc={tried.rc} {tried.stderr}"
        assert lv_size(vm) == lv_before, "the LV grew although lvextend failed"

    _what_works(lab, vm, ref, osname, lv_before)


def _what_works(lab: ScenarioContext, vm: Machine, ref: str, osname: str, lv_before: int) -> None:
    """The full root grown without LVM's archive, the deploy again, and the wiki's `lvextend -r` with room."""
    with lab.step("what works on a full root: lvextend without the archive (-An, archive=0), xfs_growfs /sysroot"):
        vm.succeed(f"lvextend -An --config 'backup {{ archive = 0 }}' -L +{lab.params['grow']} {ROOT_LV}")
        assert lv_size(vm) > lv_before
        grown = vm.succeed("xfs_growfs /sysroot")
        lab.evidence("xfs_growfs.txt", grown)
        assert "data blocks changed from" in grown, grown
        lab.record("sysroot_bytes_after", size(vm))
        assert size(vm) > lab.facts["sysroot_bytes_before"]
        vm.succeed("vgcfgbackup atomicos")  # the metadata backup LVM skipped, now that there is room

    with lab.step("the same deploy succeeds; nothing was deleted"):
        vm.succeed(f"ostree admin deploy --os={osname} {ref}", timeout=900)
        status = vm.succeed("ostree admin status")
        lab.evidence("status-after.txt", status)
        assert "(pending)" in status, status
        vm.succeed("test -f /var/lab-fill")

    with lab.step("with room on the root, the wiki's `lvextend -r`: what bookworm's fsadm does with /sysroot"):
        before = size(vm)
        tried = vm.execute(f"lvextend -r -L +{lab.params['grow']} {ROOT_LV}", timeout=300)
        lab.evidence("lvextend-r-room.txt", f"rc={tried.rc}\n{tried.stdout}{tried.stderr}")
        lab.record("lvextend_r_with_room", {"rc": tried.rc, "filesystem_grew": size(vm) > before})


def size(vm: Machine) -> int:
    """The sysroot file system's size in bytes, as df sees it."""
    return int(vm.succeed("df --output=size -B1 /sysroot | tail -n 1"))


def lv_size(vm: Machine) -> int:
    return lv_bytes(vm, ROOT_LV)
