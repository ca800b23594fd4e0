"""From a real sos report (bookworm's sosreport 4.0 in a lab-atomic guest, tests/data) to the layout and
the guest commands that recreate it: no guest needed."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from lab.base.errors import UsageError
from lab.replay.plan import daemon_json, plan
from lab.replay.sosreport import read

SOS = Path(__file__).parent / "data" / "sosreport-lab-atomic"


@pytest.fixture(scope="module")
def layout():  # type: ignore[no-untyped-def]
    return read(SOS)


def test_the_layout_has_the_hosts_names_kinds_and_fill(layout) -> None:  # type: ignore[no-untyped-def]
    assert (layout.hostname, layout.kernel) == ("vm1", "6.1.0-57-cloud-amd64")
    assert [(pv.device, pv.vg) for pv in layout.pvs] == [("vda2", "atomicos"), ("vdc", "atomicos"), ("vdd", "srv")]
    lvs = {f"{lv.vg}/{lv.name}": lv for lv in layout.lvs}
    assert sorted(lvs) == ["atomicos/docker-pool", "atomicos/root", "atomicos/swap", "atomicos/thin1", "srv/old"]
    pool = lvs["atomicos/docker-pool"]
    assert (pool.kind, pool.size, pool.chunk, pool.meta_size) == ("thin-pool", 2 << 30, 512 << 10, 4 << 20)
    assert 55 < (pool.data_percent or 0) < 70 and (pool.meta_percent or 0) > 0
    assert (lvs["atomicos/thin1"].kind, lvs["atomicos/thin1"].pool) == ("thin", "docker-pool")
    mounts = {m.path: (m.fstype, m.ftype) for m in layout.mounts}
    assert mounts == {"/": ("xfs", 1), "/boot": ("ext4", None), "/var/lib/thin1": ("xfs", 1),
                      "/srv/old": ("xfs", 0)}
    assert layout.swaps == ["/dev/mapper/atomicos-swap"]
    assert layout.lvm_settings == {"thin_pool_autoextend_threshold": "80", "thin_pool_autoextend_percent": "25"}
    assert "dm.thinpooldev=/dev/mapper/atomicos-docker--pool" in layout.docker_storage


def test_the_archive_reads_like_its_directory(layout, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "sosreport-vm1.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(SOS, arcname="sosreport-vm1-2026-12-01-abcdefg")
    assert read(archive) == layout


def test_the_plan_scales_into_the_budget_and_keeps_names_and_kinds(layout) -> None:  # type: ignore[no-untyped-def]
    the_plan = plan(layout)
    assert 0.4 < the_plan.scale < 0.5  # 18 GiB of the host's disks into 8 GiB
    assert [d.serial for d in the_plan.disks] == ["host-vda", "host-vdc", "host-vdd"]
    commands = "\n".join(the_plan.commands)
    disk = "/dev/disk/by-id/virtio-host-"
    assert f"vgcreate -q -s 1m atomicos {disk}vda-part2 {disk}vdc" in commands
    assert "--type thin-pool" in commands and "-c 512k --poolmetadatasize 2m -n docker-pool atomicos" in commands
    assert "-T atomicos/docker-pool -n thin1" in commands
    assert "mkfs.xfs -q -f -m crc=0 -n ftype=0 /dev/srv/old" in commands
    assert "mkswap -q /dev/atomicos/swap && swapon /dev/atomicos/swap" in commands
    assert the_plan.mounts == {"/": "/replay", "/boot": "/replay/boot", "/var/lib/thin1": "/var/lib/thin1",
                               "/srv/old": "/srv/old"}
    assert "thin_pool_autoextend_threshold = 80" in commands and "/etc/lvm/lvmlocal.conf" in commands
    assert any("vdb: a 0 MiB disk with no PV" in note for note in the_plan.notes)  # the seed disk


def test_dockers_storage_options_become_its_daemon_json(layout) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(daemon_json(layout)) == {"storage-driver": "devicemapper", "storage-opts": [
        "dm.fs=xfs", "dm.thinpooldev=/dev/mapper/atomicos-docker--pool", "dm.min_free_space=10%"]}


def test_bad_input_is_one_line(tmp_path: Path, layout) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("not an archive\n")
    with pytest.raises(UsageError, match="not an sos report"):
        read(tmp_path / "notes.txt")
    with pytest.raises(UsageError, match="no sos_commands"):
        read(tmp_path)
    no_lvm = tmp_path / "sos"
    shutil.copytree(SOS, no_lvm)
    shutil.rmtree(no_lvm / "sos_commands" / "lvm2")
    with pytest.raises(UsageError, match="no LVM data"):
        read(no_lvm)
    with pytest.raises(UsageError, match="GiB a replay may use"):
        plan(layout, budget=1 << 30)


def test_an_image_whose_root_vg_is_one_of_the_hosts_is_refused(layout) -> None:  # type: ignore[no-untyped-def]
    from lab.replay.replay import check_image

    with pytest.raises(UsageError, match="image lab-atomic has its root on VG atomicos"):
        check_image(layout, "atomicos", "lab-atomic")
    check_image(layout, None, "lab-bookworm")


def test_docker_and_containers_settings_and_clustered_vgs(tmp_path: Path) -> None:
    sos = tmp_path / "sos"
    shutil.copytree(SOS, sos)
    (sos / "etc" / "docker").mkdir()
    (sos / "etc" / "docker" / "daemon.json").write_text('{"log-driver": "journald", "storage-driver": "overlay2"}')
    (sos / "etc" / "containers").mkdir()
    (sos / "etc" / "containers" / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
    vgs = next((sos / "sos_commands" / "lvm2").glob("vgs_*"))
    vgs.write_text(vgs.read_text().replace("  srv      wz--n- ", "  srv      wz--nc "))
    layout = read(sos)
    assert json.loads(daemon_json(layout)) == {  # the sysconfig options win over daemon.json's driver
        "log-driver": "journald", "storage-driver": "devicemapper",
        "storage-opts": ["dm.fs=xfs", "dm.thinpooldev=/dev/mapper/atomicos-docker--pool", "dm.min_free_space=10%"]}
    commands = "\n".join(plan(layout).commands)
    assert "/etc/containers/storage.conf" in commands and 'driver = "overlay"' in commands
    assert any(note.startswith("VG srv: clustered or shared") for note in plan(layout).notes)
