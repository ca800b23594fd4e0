"""A host with a known storage layout that writes a real sos report (bookworm's sosreport): what the
replay test recreates in a fresh guest."""

from lab.context import ScenarioContext
from lab.lvm import root_vg
from lab.scenario import Disk, scenario

DATA2, OLD = "/dev/disk/by-id/virtio-data2", "/dev/disk/by-id/virtio-old"
SOS = "sos report --batch --quiet --tmp-dir /var/tmp --only-plugins lvm2,block,xfs,filesys,kernel,system,devicemapper"


@scenario("sos-source", "Builds a known layout (a VG over two disks, a thin pool ~60 % full, xfs ftype=0, "
          "swap, autoextend settings) and writes an sos report of it", image="lab-atomic",
          disks=(Disk("6G", "data2"), Disk("2G", "old")), memory=1024, timeout=1500)
def sos_source(lab: ScenarioContext) -> None:
    vm, vg = lab.machine, root_vg(lab.profile)
    with lab.step("the layout"):
        vm.succeed(f"pvcreate -q {DATA2} && vgextend -q {vg} {DATA2}")
        vm.succeed(f"lvcreate -y -q --type thin-pool -L 2G -c 512k -n docker-pool {vg}")
        vm.succeed(f"lvcreate -q -V 3G -T {vg}/docker-pool -n thin1 && mkfs.xfs -q /dev/{vg}/thin1"
                   f" && mkdir -p /var/lib/thin1 && mount /dev/{vg}/thin1 /var/lib/thin1")
        vm.succeed("dd if=/dev/urandom of=/var/lib/thin1/fill bs=1M count=1200 status=none && sync")
        vm.succeed(f"lvcreate -q -L 256M -n swap {vg} && mkswap -q /dev/{vg}/swap && swapon /dev/{vg}/swap")
        vm.succeed(f"pvcreate -q {OLD} && vgcreate -q srv {OLD} && lvcreate -q -l 100%FREE -n old srv"
                   " && mkfs.xfs -q -m crc=0 -n ftype=0 /dev/srv/old && mkdir -p /srv/old"
                   " && mount /dev/srv/old /srv/old")
        for key, default, value in (("threshold", 100, 80), ("percent", 20, 25)):  # lvm.conf's default lines
            setting = f"thin_pool_autoextend_{key}"
            vm.succeed(f"sed -i 's/^\\t# {setting} = {default}$/\\t{setting} = {value}/' /etc/lvm/lvm.conf")
        lab.record("autoextend", vm.succeed("lvmconfig activation/thin_pool_autoextend_threshold "
                                            "activation/thin_pool_autoextend_percent").split())
        options = ("--storage-driver devicemapper --storage-opt dm.fs=xfs --storage-opt "
                   f"dm.thinpooldev=/dev/mapper/{vg}-docker--pool --storage-opt dm.min_free_space=10%")
        vm.write_file("/etc/sysconfig/docker-storage", f'DOCKER_STORAGE_OPTIONS="{options}"\n')
        lab.evidence("layout.txt", vm.succeed("lsblk; echo; pvs; vgs; lvs -a; echo; findmnt -l; swapon --show"))
    with lab.step("sos report"):
        out = vm.succeed(f"{SOS} 2>&1; ls -1t /var/tmp/sosreport-*.tar.[gx]z | head -n 1", timeout=900)
        archive = out.strip().splitlines()[-1]
        lab.fetch_evidence(archive, "sosreport" + archive[archive.index(".tar"):])
