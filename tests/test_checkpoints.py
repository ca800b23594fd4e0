"""Setup checkpoints without a hypervisor: what their key covers, how the store keeps and drops them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lab.base.config import Config
from lab.base.disks import Disk
from lab.base.errors import UsageError
from lab.machine.ssh import KeyPair
from lab.provision.warm import Checkpoint, WarmStore
from lab.scenario import Node, Setup, declare
from tests.test_warm import _Pool, _shape, _two_saved_guests

SCENARIO = '''
from pathlib import Path
from helpers import install

IMAGES = Path(__file__).parent / "images"
PORT = 2379


def prepare(lab):
    install(lab.machine, IMAGES, PORT, lab.params["ordering"])
'''
HELPERS = '''
def install(vm, images, port, ordering):
    vm.succeed(f"install {images} {port} {ordering}")
'''


def _load(directory: Path, scenario: str = SCENARIO, helpers: str = HELPERS) -> ModuleType:
    """The scenario module in `directory`, freshly imported (with its helper module beside it)."""
    (directory / "images").mkdir(exist_ok=True)
    (directory / "images" / "etcd").write_text("FROM scratch\n", encoding="utf-8") \
        if not (directory / "images" / "etcd").exists() else None
    (directory / "scenario_mod.py").write_text(scenario, encoding="utf-8")
    (directory / "helpers.py").write_text(helpers, encoding="utf-8")
    for name in ("scenario_mod", "helpers"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location("scenario_mod", directory / "scenario_mod.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(directory))


def _digest(directory: Path, params: dict[str, object] | None = None, **texts: str) -> str:
    module = _load(directory, **texts)
    values = {"ordering": "correct", "boots": 3, **(params or {})}
    return Setup("installed", module.prepare, reads=("ordering",)).digest(values)


def test_the_key_follows_the_setup_its_callees_its_files_and_the_parameters_it_reads(tmp_path: Path) -> None:
    key = _digest(tmp_path)
    assert _digest(tmp_path) == key
    assert _digest(tmp_path, {"boots": 5}) == key  # a parameter it does not read
    changed = {
        "the parameter it reads": _digest(tmp_path, {"ordering": "race"}),
        "its own source": _digest(tmp_path, scenario=SCENARIO.replace('lab.params["ordering"])',
                                                                       'lab.params["ordering"]) ')),
        "a function it calls, in another file": _digest(tmp_path, helpers=HELPERS.replace("install {", "install -v {")),
        "a constant it reads": _digest(tmp_path, scenario=SCENARIO.replace("2379", "2380")),
    }
    (tmp_path / "images" / "etcd").write_text("FROM busybox\n", encoding="utf-8")
    changed["a file under a folder it names"] = _digest(tmp_path)
    assert key not in changed.values(), changed
    assert len(set(changed.values())) == len(changed)


def test_the_setup_sees_only_the_parameters_it_reads() -> None:
    setup = Setup("installed", lambda lab: None, reads=("ordering",))
    assert setup.params({"ordering": "race", "boots": 3}) == {"ordering": "race"}


@pytest.mark.parametrize(("shape", "message"), [
    ({"machines": {"host1": Node(), "host2": Node()}, "shared_disks": [Disk("1G", "shared")],
      "params": {"ordering": "x"}}, "guests share one"),
    ({"params": {"boots": 3}}, "reads parameters it does not declare: \\['ordering'\\]"),
])
def test_a_setup_a_checkpoint_cannot_hold_is_refused_at_declaration(shape: dict[str, object], message: str) -> None:
    setup = Setup("installed", lambda lab: None, reads=("ordering",))
    with pytest.raises(ValueError, match=message):
        declare("with-setup", "a scenario", lambda lab: None, setup=setup, **shape)  # type: ignore[arg-type]


def test_a_setup_names_files_that_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="files not found"):
        Setup("installed", lambda lab: None, files=(tmp_path / "atomic.py",))
    with pytest.raises(ValueError, match="lower-case"):
        Setup("Installed Stuff", lambda lab: None)


def _checkpoint(tmp_path: Path, pool: _Pool, store: WarmStore, parent: str, key: str,
                together: tuple[str, ...] = ()) -> None:
    """A checkpoint `key` made from saved guest `parent` (beside `together`'s), with a root and a scenario disk
    of its own."""
    disks = {"lab-root": store.root_volume(key), "cidata": store.seed_volume(parent),
             "docker": store.disk_volume(key, "docker")}
    Path(store.saves.target(key)).write_bytes(b"saved")
    pool.volumes |= {store.root_volume(key), store.disk_volume(key, "docker")}
    shape = _shape(pool, "a", "image-a.qcow2")
    store.mark_saved(key, KeyPair.generate(tmp_path / key, key), frozenset(), shape, (),
                     Checkpoint(parent, "installed", "run1", disks, together))


def test_a_checkpoint_goes_with_the_saved_guest_it_was_made_from(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pool, store = _two_saved_guests(tmp_path, monkeypatch)
    _checkpoint(tmp_path, pool, store, "ka", "ca")
    assert store.has("ca") and store.made_by("ca") == "run1"
    assert store.disks("ca")["docker"] == "warm-ca-disk-docker.qcow2"
    pool.volumes.discard("warm-ka-seed.iso")  # a volume it restores is gone: not usable
    assert not store.has("ca")
    pool.volumes.add("warm-ka-seed.iso")
    store.discard("ka")
    assert not store.has("ca") and not Path(store.saves.target("ca")).exists()
    assert not {v for v in pool.volumes if v.startswith(("warm-ka-", "warm-ca-"))}, pool.volumes


def test_prune_and_a_rebuild_drop_checkpoints_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool, store = _two_saved_guests(tmp_path, monkeypatch)
    _checkpoint(tmp_path, pool, store, "ka", "ca")
    _checkpoint(tmp_path, pool, store, "kb", "cb")
    (store.directory / "kb.json").unlink()  # its saved guest half gone (a killed prune)
    assert store.prune(max_idle_days=30) == ["cb"]
    assert store.discard_using(["image-a.qcow2"]) == ["ca", "ka"]
    assert not store.has("ca") and not store.has("ka")


def test_a_set_of_checkpoints_goes_with_any_of_its_saved_guests(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pool, store = _two_saved_guests(tmp_path, monkeypatch)
    _checkpoint(tmp_path, pool, store, "ka", "c1", together=("kb",))  # host1's, made beside host2's
    _checkpoint(tmp_path, pool, store, "kb", "c2", together=("ka",))
    store.discard("kb")
    assert not store.has("c1") and not store.has("c2")  # host1's is never restored without host2's
    assert not {v for v in pool.volumes if v.startswith(("warm-c1-", "warm-c2-"))}, pool.volumes
    _checkpoint(tmp_path, pool, store, "ka", "c3", together=("kb",))  # kb gone (a killed prune): stale
    assert store.prune(max_idle_days=30) == ["c3"] and store.has("ka")


def test_the_checkpoint_key_follows_its_saved_guest_digest_and_disks(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, store = _two_saved_guests(tmp_path, monkeypatch)
    disk = Disk("10G", "docker")
    docker = (disk.serial, disk.bytes)
    key = store.checkpoint_key("ka", "d1", [docker])
    assert key == store.checkpoint_key("ka", "d1", [docker])
    others = [store.checkpoint_key("kb", "d1", [docker]), store.checkpoint_key("ka", "d2", [docker]),
              store.checkpoint_key("ka", "d1", [("docker", 2 * docker[1])]), store.checkpoint_key("ka", "d1", [])]
    assert len({key, *others}) == 5


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_the_checkpoints_switch_takes_on_or_off(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_CHECKPOINTS", "off")
    assert Config.from_env().checkpoints is False
    monkeypatch.setenv("LAB_CHECKPOINTS", value)
    with pytest.raises(UsageError, match="expected on or off"):
        Config.from_env()
