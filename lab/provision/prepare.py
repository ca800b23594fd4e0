"""What runs need before their own VM: the accelerator (a provisioner) and the images.

`lab images build` rebuilds one image; a test session builds every image its selected tests need,
before the first of them boots (`prepare_images`), so no build runs beside a test.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import libvirt

from lab.base.artifacts import RunDir
from lab.base.config import Config
from lab.base.errors import HarnessError
from lab.base.log import Log
from lab.base.signals import ignore_sigterm, trap_signals
from lab.image.external import Imports, imported
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


class Workbench:
    """A run's image builder and its provisioner, each made once: a build may need the provisioner (for a
    builder VM), and the provisioner's KVM probe boots the lab image's kernel, which the builder provides."""

    def __init__(self, conn: libvirt.virConnect, pool: Pool, config: Config, log: Log, run_id: str,
                 artifacts: Path, on_open: Callable[[Provisioner], None] = lambda provisioner: None) -> None:
        self.conn, self.pool, self.config, self.log, self.run_id = conn, pool, config, log, run_id
        self.cache = ImageCache(config, pool, log)
        self.builder = ImageBuilder(self.cache, log, self.provisioner, artifacts)
        self.on_open = on_open
        self.made: Provisioner | None = None

    def image(self, ref: str) -> Image:
        """The image a run boots: a recipe's (built if need be), an imported one's, or a disk file's."""
        if ref in self.cache.recipes():
            return self.builder.ensure(ref)
        if imported(self.config, ref):
            record = Imports(self.config, self.cache).get(ref)
            if record is None:
                raise HarnessError(f"the volume of imported image {ref} is gone from pool {self.pool.name}; "
                                   "import it again (lab images import / fetch)")
            return record.image()
        return self.cache.from_file(Path(ref))

    def provisioner(self) -> Provisioner:
        if self.made is None:
            self.made = open_provisioner(self.conn, self.pool, self.config, self.log, self.run_id, self.builder)
            self.on_open(self.made)
        return self.made


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
    bench = Workbench(conn, pool, config, log, run_id, run_dir.path)
    restore = trap_signals()
    try:
        return bench.builder.ensure(name, rebuild=rebuild)
    finally:
        ignore_sigterm()
        if bench.made is not None:
            bench.made.teardown()
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
