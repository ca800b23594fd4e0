"""A run's provenance and bundle: what `lab rerun` compares and runs (no guest needed)."""

from __future__ import annotations

import dataclasses
import shutil
import tarfile
from pathlib import Path

from lab.base.config import Config
from lab.run import bundle
from lab.scenario import load_file

HERE = Path(__file__).parent


def _recorded(tmp_path: Path, config: Config) -> Path:
    run_dir = tmp_path / "20261201T000000.000000Z-require-verbs"
    run_dir.mkdir()
    scenario = next(s for s in load_file(HERE / "scenarios" / "health.py") if s.name == "require-verbs")
    bundle.record(run_dir, scenario, "lab-bookworm", config)
    (run_dir / "result.json").write_text('{"run_id": "r1", "params": {}, "image": "lab-bookworm"}\n')
    (run_dir / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n")
    return run_dir


def test_a_bundle_carries_source_recipe_and_templates_but_no_private_key(tmp_path: Path) -> None:
    config = dataclasses.replace(Config.from_env(), scenarios_dirs=(HERE / "scenarios",))
    run_dir = _recorded(tmp_path, config)
    archive = bundle.pack(run_dir, tmp_path / "b.tar.gz")
    with tarfile.open(archive) as tar:
        packed = {name.partition("/")[2] for name in tar.getnames()}
    assert {"source/health.py", "image/lab-bookworm.toml", "image/guest/etc/cloud/cloud.cfg.d/90-lab.cfg",
            "cloudinit/user-data.yaml", "provenance.json", "result.json"} <= packed
    assert "key" not in packed
    with bundle.opened(archive) as opened:  # rerun unpacks only its record and the code it runs
        names = {str(p.relative_to(opened)) for p in opened.rglob("*") if p.is_file()}
        assert {"source/health.py", "image/lab-bookworm.toml", "provenance.json", "result.json"} <= names
        assert not any(name.startswith("cloudinit/") for name in names)
        assert bundle.differences(opened, config) == []
        scenario, params, image, recipes = bundle.bundled_scenario(opened)
        assert (scenario.name, params, image, recipes) == ("require-verbs", {}, "lab-bookworm", (opened / "image",))


def test_rerun_says_where_this_checkout_differs(tmp_path: Path) -> None:
    config = dataclasses.replace(Config.from_env(), scenarios_dirs=(HERE / "scenarios",))
    run_dir = _recorded(tmp_path, config)
    changed = tmp_path / "scenarios"
    shutil.copytree(HERE / "scenarios", changed)
    (changed / "health.py").write_text((changed / "health.py").read_text().replace('"/run/lab-there"', '"/run/x"'))
    images = tmp_path / "images"
    shutil.copytree(config.images_dirs[0], images)
    (images / "lab-bookworm.toml").write_text((images / "lab-bookworm.toml").read_text() + "\n# changed\n")
    here = dataclasses.replace(config, scenarios_dirs=(changed,), images_dirs=(images,))
    lines = bundle.differences(run_dir, here)
    assert lines[0].startswith("scenario require-verbs: the source here differs from the bundle's")
    assert any('+    vm.succeed("mkdir -p /run/x")' in line or 'require_absent("/run/x")' in line for line in lines)
    assert lines[-1].startswith("image recipe lab-bookworm.toml: ") and "the bundle's recipe builds" in lines[-1]
