"""What runs need before their own VM: the accelerator (a provisioner) and the images.

`lab images build` rebuilds one image; a test session builds every image its selected tests need,
before the first of them boots (`prepare_images`), so no build runs beside a test.
"""

from __future__ import annotations

import secrets

import libvirt

from lab.base.artifacts import RunDir
from lab.base.config import Config
from lab.base.log import Log
from lab.base.signals import ignore_sigterm, trap_signals
from lab.image.store import KERNEL_IMAGE, Image, ImageCache, load_recipes
from lab.provision.builder import ImageBuilder
from lab.provision.provision import Provisioner
from lab.virt.cleanup import RunLock
from lab.virt.hypervisor import connect
from lab.virt.storage import Pool


def open_provisioner(conn: libvirt.virConnect, pool: Pool, config: Config, log: Log, run_id: str,
                     builder: ImageBuilder) -> Provisioner:
    """A provisioner for one run id; a KVM probe, if needed, boots the lab image's kernel."""
    provisioner = Provisioner.open(conn, pool, config, log, run_id,
                                   probe_kernel=lambda: builder.ensure(KERNEL_IMAGE).kernel_volume)
    log.info(f"accelerator: {provisioner.accel} ({provisioner.accel_reason}); "
             f"timeouts x{provisioner.timeouts.scale:g}")
    return provisioner


def build_image(config: Config, log: Log, name: str, *, rebuild: bool = True) -> Image:
    """Build one image (`lab images build NAME` rebuilds it), with a run id and artifacts like any run.
    Without `rebuild` a cached image is returned at once, and nothing is written."""
    conn = connect(config.libvirt_uri)
    pool = Pool(conn, config.pool_name, config.pool_dir)
    cache = ImageCache(config, pool, log)
    image = cache.recipe(name).image()  # an unknown name fails before anything is created
    if not rebuild and cache.is_cached(image):
        return image
    run_id = secrets.token_hex(4)
    lock = RunLock(config.state_dir, run_id)
    run_dir = RunDir(config.runs_dir, f"build-{name}")
    log.open_transcript(run_dir.transcript)
    made: list[Provisioner] = []

    def provisioner() -> Provisioner:
        if not made:
            made.append(open_provisioner(conn, pool, config, log, run_id, builder))
        return made[0]

    builder = ImageBuilder(cache, log, provisioner, run_dir.path)
    restore = trap_signals()
    try:
        return builder.ensure(name, rebuild=rebuild)
    finally:
        ignore_sigterm()
        for each in made:
            each.teardown()
        restore()
        lock.release()
        log.close()


def prepare_images(config: Config, log: Log, names: list[str], turn: int = 0) -> None:
    """Build the images among `names` the cache lacks. Builder images come first; the rest start at
    `turn` (a test worker's number), so two workers build two images at once and then wait for each
    other's (each image has a lock), instead of a build running beside a test."""
    recipes = load_recipes(config.images_dirs)
    wanted = [name for name in dict.fromkeys(names) if name in recipes]
    builders = [name for name in dict.fromkeys(recipes[n].build.get("builder_image", "") for n in wanted) if name]
    rest = [name for name in wanted if name not in builders]
    if rest:
        rest = rest[turn % len(rest):] + rest[:turn % len(rest)]
    for name in [*builders, *rest]:
        build_image(config, log, name, rebuild=False)
