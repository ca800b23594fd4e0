"""smoke: the lab itself works — boot, SSH, extra disks, reboot."""

from lab.context import ScenarioContext
from lab.scenario import Disk, scenario


@scenario(
    "smoke",
    "Boot a guest, reach it over SSH, use two extra virtio disks, reboot into a new boot",
    disks=(Disk("1G", "data1"), Disk("2G", "data2")),
    memory=768,
    params={"reboots": 1},
    tags=("smoke",),
    timeout=600,
)
def smoke(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("the guest comes up with no failed unit"):
        vm.require_system_running()

    with lab.step("extra disks have their sizes"):
        sizes = vm.succeed("lsblk -dbno SERIAL,SIZE")
        lab.evidence("lsblk.txt", vm.succeed("lsblk"))
        found = dict(line.split() for line in sizes.splitlines() if len(line.split()) == 2)
        assert found.get("data1") == str(1 << 30), f"data1 should be 1 GiB: {found}"
        assert found.get("data2") == str(2 << 30), f"data2 should be 2 GiB: {found}"

    with lab.step("write and read back a file on data1, and a text file as the login user"):
        vm.succeed("mkfs.ext4 -q -L data1 /dev/disk/by-id/virtio-data1 && mkdir -p /mnt/data1"
                   " && mount LABEL=data1 /mnt/data1")
        vm.succeed("head -c 16M /dev/urandom > /mnt/data1/blob && sync && sha256sum /mnt/data1/blob"
                   " > /root/blob.sha256")
        vm.succeed("echo 3 > /proc/sys/vm/drop_caches && sha256sum -c /root/blob.sha256")
        note = "it's $HOME, \"quoted\" and `ticked`\n% and a second line\n"
        vm.write_file("/tmp/lab-notes/note.txt", note, user=vm.user)
        assert vm.succeed("cat /tmp/lab-notes/note.txt") == note
        assert vm.succeed("stat -c %U /tmp/lab-notes/note.txt").strip() == vm.user

    for _ in range(lab.params["reboots"]):
        with lab.step("reboot into a new boot"):
            before = vm.succeed("cat /proc/sys/kernel/random/boot_id").strip()
            vm.reboot()
            now = vm.succeed("cat /proc/sys/kernel/random/boot_id").strip()
            listed = vm.succeed("journalctl --list-boots --no-pager").splitlines()[1:]  # the guest's own record
            last_two = [line.split()[1] for line in listed[-2:]]
            assert last_two == [before.replace("-", ""), now.replace("-", "")], \
                f"the journal's last boots {last_two}, not the one before the reboot ({before}) then this ({now})"
        with lab.step("and again with no failed unit"):
            vm.require_system_running()

        with lab.step("disks and data survive the reboot"):
            vm.succeed("test -b /dev/disk/by-id/virtio-data1 && test -b /dev/disk/by-id/virtio-data2")
            vm.succeed("mount LABEL=data1 /mnt/data1 && sha256sum -c /root/blob.sha256 && umount /mnt/data1")

