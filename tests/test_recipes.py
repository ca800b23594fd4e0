"""Image recipes: the shared guest overlay goes into every image that names it, and into its digest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lab.base.log import Log
from lab.image.store import Recipe, load_recipes
from lab.provision.builder import mmdebstrap

IMAGES = Path(__file__).resolve().parents[1] / "images"


def test_every_lab_image_carries_the_shared_guest_files() -> None:
    for recipe in load_recipes((IMAGES,)).values():
        files = recipe.build["files"]
        cloud_cfg = files["/etc/cloud/cloud.cfg.d/90-lab.cfg"]
        assert "cloud_final_modules: [scripts-user, final-message]" in cloud_cfg
        assert "ConditionPathExists=/etc/cloud/lab-local-stage" in \
            files["/etc/systemd/system/cloud-init-local.service.d/lab.conf"]
        assert files["/etc/ssh/sshd_config.d/lab.conf"].strip().endswith("PasswordAuthentication no")


def test_a_change_in_the_overlay_changes_the_image(tmp_path: Path) -> None:
    shutil.copytree(IMAGES, tmp_path / "images")
    recipe = tmp_path / "images" / "lab-bookworm.toml"
    before = Recipe.load(recipe).digest
    (tmp_path / "images" / "guest" / "etc" / "motd").write_text("changed\n")
    after = Recipe.load(recipe)
    assert after.digest != before
    assert after.build["files"]["/etc/motd"] == "changed\n"


def test_an_empty_file_added_to_the_overlay_changes_the_image(tmp_path: Path) -> None:
    """An empty file masks a generator or a unit: the digest once hashed contents only, and missed it."""
    shutil.copytree(IMAGES, tmp_path / "images")
    recipe = tmp_path / "images" / "lab-bookworm.toml"
    before = Recipe.load(recipe).digest
    (tmp_path / "images" / "guest" / "etc" / "systemd" / "system-generators" / "a-masked-generator").touch()
    assert Recipe.load(recipe).digest != before


def test_the_shared_commands_run_first_and_count_in_the_digest(tmp_path: Path) -> None:
    for recipe in load_recipes((IMAGES,)).values():
        assert recipe.build["commands"][0] == (IMAGES / "guest.sh").read_text()
    shutil.copytree(IMAGES, tmp_path / "images")
    recipe = tmp_path / "images" / "lab-atomic.toml"
    before = Recipe.load(recipe).digest
    with (tmp_path / "images" / "guest.sh").open("a") as script:
        script.write("systemctl mask one-more.service\n")
    assert Recipe.load(recipe).digest != before
    (tmp_path / "images" / "guest.sh").unlink()  # an overlay of files only (a user's own) has no shared commands
    assert Recipe.load(recipe).build["commands"][0].startswith("systemctl disable docker.service")


def test_a_recipes_environment_reaches_mmdebstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lab-ostree's INITRD=No must reach the packages' install hooks, which mmdebstrap runs in its environment."""
    fake = tmp_path / "mmdebstrap"
    fake.write_text(f'#!/bin/sh\necho "INITRD=$INITRD" > {tmp_path}/seen\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    build = load_recipes((IMAGES,))["lab-ostree"].build
    mmdebstrap(build, tmp_path / "rootfs.tar", Log(terminal=False))
    assert (tmp_path / "seen").read_text() == "INITRD=No\n"
