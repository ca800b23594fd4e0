"""`lab images`: list (--json), build, import, fetch and prune images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.log import Log
from lab.doors.tables import print_table
from lab.image.external import Imports
from lab.image.store import ImageCache
from lab.provision.prepare import build_image
from lab.provision.warm import WarmStore
from lab.virt.hypervisor import connect
from lab.virt.storage import Pool


def cmd_images(args: argparse.Namespace, config: Config, log: Log) -> int:
    if args.images_cmd == "build":
        image = build_image(config, log, args.name)
        print(f"built {args.name}: volume {image.disk_volume}")
        return 0
    listing = args.images_cmd == "list"  # reads only: defines no pool of its own
    cache = ImageCache(config, Pool(connect(config.libvirt_uri), config.pool_name, config.pool_dir,
                                    create=not listing), log)
    imports = Imports(config, cache)
    if args.images_cmd in ("import", "fetch"):
        record = imports.add(args.path, args.name, args.profile) if args.images_cmd == "import" \
            else imports.fetch(args.name)
        check = f"verified: {record.verified_by}" if record.verified else "unverified: no published sha256 at hand"
        print(f"imported {record.name}: volume {record.volume}, sha256 {record.sha256} ({check}); "
              f"run with --image {record.name}")
        return 0
    if args.images_cmd == "prune":
        for volume in cache.prune():
            print(f"removed stale image volume {volume}")
        for key in WarmStore(config, cache.pool).prune(args.idle_days):
            print(f"removed saved guest {key}")
        return 0
    rows = _image_rows(cache, imports, sha256=args.sha256)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_images(rows)
    return 0


def _image_rows(cache: ImageCache, imports: Imports, *, sha256: bool) -> list[dict[str, Any]]:
    """Recipes (cached or not), then external images (manifests and imports)."""
    rows = []
    for name, recipe in sorted(cache.recipes().items()):
        image = recipe.image()
        cached = cache.is_cached(image)
        rows.append({"name": name, "kind": "recipe", "state": "cached" if cached else "not cached",
                     "volume": image.disk_volume, "description": recipe.description,
                     "size_mib": round(sum(map(cache.pool.allocation, image.volumes)) / 2**20) if cached else None,
                     "sha256": {v: cache.pool.sha256(v) for v in image.volumes} if cached and sha256 else {}})
    for name in sorted({*imports.manifests, *(r.name for r in imports.all())}):
        found, manifest = imports.get(name), imports.manifests.get(name)
        source = f"imported from {found.source if found else '?'}"
        state = "not imported" if found is None else "imported" if found.verified else "imported, unverified"
        rows.append({"name": name, "kind": "external", "state": state,
                     "volume": found.volume if found else (manifest.file if manifest else ""),
                     "description": manifest.description if manifest else source,
                     "size_mib": round(cache.pool.allocation(found.volume) / 2**20) if found else None,
                     "sha256": {found.volume: found.sha256} if found else {}})
    return rows


def _print_images(rows: list[dict[str, Any]]) -> None:
    lines = []
    for row in rows:
        size = f"{row['size_mib']} MiB" if row["size_mib"] is not None else ""
        lines.append((row["name"], row["state"], row["volume"], size, row["description"]))
        lines += [("", f"sha256 {digest}", each, "", "") for each, digest in row["sha256"].items()]
    print_table(("image", "state", "volume", "size", "description"), lines)


def add_parsers(sub: Any) -> None:
    images = sub.add_parser("images", help="list, build, import or fetch images; prune old ones")
    images_sub = images.add_subparsers(dest="images_cmd", required=True)
    listing = images_sub.add_parser("list", help="known images, whether they are cached, their size")
    listing.add_argument("--sha256", action="store_true", help="also print each cached volume's sha256")
    listing.add_argument("--json", action="store_true", help="as JSON: name, kind, state, volume, size, sha256")
    prune = images_sub.add_parser("prune", help="remove stale image versions and unused saved guests")
    prune.add_argument("--idle-days", type=float, default=7.0,
                       help="also remove saved guests no run restored for this many days (default 7)")
    build = images_sub.add_parser("build", help="(re)build an image from its recipe")
    build.add_argument("name")
    take = images_sub.add_parser("import", help="import a local qcow2/raw disk under a name (--image NAME)")
    take.add_argument("path", type=Path)
    take.add_argument("--as", dest="name", required=True, help="the name to run it by (a manifest's, to verify it)")
    take.add_argument("--profile", help="use this image's profile (a manifest or recipe name); default: the "
                                        "manifest of NAME, if any")
    fetch = images_sub.add_parser("fetch", help="download a manifest's image, verify its sha256 and import it")
    fetch.add_argument("name")
    images.set_defaults(func=cmd_images)
