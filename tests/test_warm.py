"""Warm starts without a hypervisor: the save-file header rewrite and the store's key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lab.base.config import Config
from lab.image.store import Image
from lab.machine.ssh import KeyPair
from lab.provision.saves import HEADER, MAGIC, SaveFile
from lab.provision.warm import Shape, WarmStore, WarmUnusable, written

STREAM = bytes(range(256)) * 4096  # stands in for QEMU's migration stream (1 MiB)


def _save_file(path: Path, xml: str, cookie: bytes, *, magic: bytes = MAGIC, version: int = 2) -> None:
    """A file laid out as libvirt writes one: header, XML, cookie, 64 KiB of padding, stream."""
    xml_b, cookie_b = xml.encode() + b"\0", cookie + b"\0"
    data_len = len(xml_b) + len(cookie_b) + 64 * 1024
    header = HEADER.pack(magic, version, data_len, 1, 0, len(xml_b))
    path.write_bytes(header + xml_b + cookie_b + b"\0" * (data_len - len(xml_b) - len(cookie_b)) + STREAM)


def test_a_private_copy_carries_the_new_xml_and_the_same_stream(tmp_path: Path) -> None:
    saved, copy = tmp_path / "guest.save", tmp_path / "copy.save"
    _save_file(saved, "<domain><name>old</name></domain>", b"<cookie><cpu/></cookie>")
    original = SaveFile.read(saved)
    assert original.xml == "<domain><name>old</name></domain>" and original.cookie == b"<cookie><cpu/></cookie>"
    longer = "<domain><name>" + "n" * 5000 + "</name></domain>"
    original.copy_with_xml(saved, copy, longer)
    again = SaveFile.read(copy)
    assert (again.xml, again.cookie, again.data_len, again.was_running) == (
        longer, original.cookie, original.data_len, 1)
    assert copy.read_bytes()[again.stream_offset:] == STREAM
    assert copy.stat().st_mode & 0o777 == 0o600


def test_an_xml_too_big_for_the_header_is_refused(tmp_path: Path) -> None:
    saved = tmp_path / "guest.save"
    _save_file(saved, "<domain/>", b"<cookie/>")
    with pytest.raises(WarmUnusable, match="does not fit"):
        SaveFile.read(saved).copy_with_xml(saved, tmp_path / "copy", "x" * 70 * 1024)


@pytest.mark.parametrize(("magic", "version"), [(b"LibvirtQemudPart", 2), (MAGIC, 3)])
def test_an_unknown_or_partial_save_file_is_refused(tmp_path: Path, magic: bytes, version: int) -> None:
    saved = tmp_path / "guest.save"
    _save_file(saved, "<domain/>", b"<cookie/>", magic=magic, version=version)
    with pytest.raises(WarmUnusable, match="not the uncompressed v2"):
        SaveFile.read(saved)


@pytest.mark.parametrize(("data_len", "cookie_offset"), [(1 << 30, 10), (1024, 4096)])
def test_a_header_that_asks_to_read_too_much_or_out_of_its_data_is_refused(data_len: int, cookie_offset: int) -> None:
    asked: list[tuple[int, int]] = []  # a remote host's volume: each read is a download

    def read(offset: int, length: int) -> bytes:
        asked.append((offset, length))
        return HEADER.pack(MAGIC, 2, data_len, 1, 0, cookie_offset) if offset == 0 else b"\0" * length

    with pytest.raises(WarmUnusable, match="at most 1048576 are read"):
        SaveFile.parse(read, "warm-k-memory.save")
    assert asked == [(0, HEADER.size)]


class _Pool:
    def __init__(self, names: set[str]) -> None:
        self.volumes = names
        self.written = dict.fromkeys(names, "1796267567.079278007")

    def modified(self, name: str) -> str:
        return self.written[name]

    def names(self) -> list[str]:
        return sorted(self.volumes)

    def delete(self, name: str) -> None:
        self.volumes.discard(name)


def test_the_key_changes_with_everything_the_saved_guest_depends_on(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cloudinit = tmp_path / "cloudinit"
    cloudinit.mkdir()
    (cloudinit / "user-data").write_text("#cloud-config\n")
    monkeypatch.setenv("LAB_CLOUDINIT_DIR", str(cloudinit))
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    pool = _Pool({"image-lab-atomic-abc.qcow2", "image-lab-atomic-def.qcow2"})
    store = WarmStore(Config.from_env(), pool)  # type: ignore[arg-type]
    shape = _shape(pool, "lab-atomic", "image-lab-atomic-abc.qcow2")
    key = store.key(shape)
    assert store.key(_shape(pool, "lab-atomic", "image-lab-atomic-abc.qcow2")) == key
    pool.written["image-lab-atomic-abc.qcow2"] = "1796267999.5"  # the same volume uploaded anew
    shape = _shape(pool, "lab-atomic", "image-lab-atomic-abc.qcow2")
    assert store.key(shape) != key
    key = store.key(shape)
    for changed in (dataclasses.replace(shape, memory_mib=2048), dataclasses.replace(shape, vcpus=2),
                    dataclasses.replace(shape, hypervisor="QEMU 8000000"),
                    _shape(pool, "lab-atomic", "image-lab-atomic-def.qcow2")):
        assert store.key(changed) != key
    (cloudinit / "user-data").write_text("#cloud-config\npackages: [vim]\n")
    assert store.key(shape) != key


def _shape(pool: _Pool, name: str, volume: str) -> Shape:
    return Shape(Image(name, volume, "qcow2"), 1024, 1, "qemu", "QEMU 7002000",
                 written(pool, [volume]))  # type: ignore[arg-type]


def _two_saved_guests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[_Pool, WarmStore]:
    """Saved guests ka and kb, made from image-a.qcow2 and image-b.qcow2."""
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    pool = _Pool({"image-a.qcow2", "image-b.qcow2"})
    store = WarmStore(Config.from_env(), pool)  # type: ignore[arg-type]
    for key, volume in (("ka", "image-a.qcow2"), ("kb", "image-b.qcow2")):
        shape = _shape(pool, volume[6], volume)
        store.directory.mkdir(parents=True, exist_ok=True)
        Path(store.saves.target(key)).write_bytes(b"saved")
        pool.volumes |= {store.root_volume(key), store.seed_volume(key)}
        store.mark_saved(key, KeyPair.generate(tmp_path / key, key), frozenset(), shape, (f"{key}.service",))
    return pool, store


def test_prune_discards_the_saved_guests_whose_image_was_written_since(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pool, store = _two_saved_guests(tmp_path, monkeypatch)
    assert store.prune(max_idle_days=30) == []
    pool.written["image-b.qcow2"] = "1796267999.5"  # uploaded anew under the same name
    assert store.prune(max_idle_days=30) == ["kb"]
    assert store.has("ka") and not store.has("kb")


def test_a_rebuild_discards_the_saved_guests_made_from_the_image(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pool, store = _two_saved_guests(tmp_path, monkeypatch)
    assert store.has("ka") and store.has("kb") and store.failed_units("kb") == ("kb.service",)
    assert store.discard_using(["image-a.qcow2"]) == ["ka"]
    assert not store.has("ka") and not Path(store.saves.target("ka")).exists() and store.has("kb")
    assert pool.volumes == {"image-a.qcow2", "image-b.qcow2", "warm-kb-root.qcow2", "warm-kb-seed.iso"}


def test_a_guest_saved_over_an_image_rewritten_since_the_run_began_is_pruned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    pool = _Pool({"image-a.qcow2"})
    store = WarmStore(Config.from_env(), pool)  # type: ignore[arg-type]
    shape = _shape(pool, "a", "image-a.qcow2")
    key = store.key(shape)
    pool.written["image-a.qcow2"] = "1796267999.5"  # rebuilt while the run's guest booted, before its save
    store.directory.mkdir(parents=True, exist_ok=True)
    Path(store.saves.target(key)).write_bytes(b"saved")
    pool.volumes |= {store.root_volume(key), store.seed_volume(key)}
    store.mark_saved(key, KeyPair.generate(tmp_path / key, key), frozenset(), shape, ())
    assert store.prune(max_idle_days=30) == [key]
