"""A test session builds the images its VM tests need before the first test, builder images first and
each worker starting on another image."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.base.config import Config
from lab.base.log import Log
from lab.provision import prepare


@pytest.mark.parametrize(("turn", "order"), [
    (0, ["lab-bookworm", "lab-atomic", "lab-ostree"]),
    (1, ["lab-bookworm", "lab-ostree", "lab-atomic"]),
])
def test_builder_images_first_then_each_worker_its_own_start(turn: int, order: list[str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_LIBVIRT_URI", "test:///default")
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    built: list[str] = []
    monkeypatch.setattr(prepare, "build_image", lambda config, log, name, rebuild: built.append(name))
    wanted = ["lab-atomic", "lab-atomic", "lab-ostree", "no-such-recipe", "lab-bookworm"]
    prepare.prepare_images(Config.from_env(), Log(terminal=False), wanted, turn)
    assert built == order
