"""External images: manifests of upstream qcow2 files (`images/external/*.toml`) and disks a user
imports or fetches under a name (`lab images import PATH --as NAME`, `lab images fetch NAME`).

An imported image is one read-only pool volume `image-file-<name>-<sha256[:12]>.<format>` (the prefix
`lab images prune` keeps, like `--image PATH` imports) plus a record
in `state/imports/<name>.json` (volume, format, sha256, source, profile), so `--image NAME` boots it
with the profile its manifest (or `--profile`) gives.
"""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.base.config import Config
from lab.base.errors import ImageError, UsageError
from lab.image.download import CHECKSUMS_LIMIT, download
from lab.image.signed import verified_checksums
from lab.image.store import Image, ImageCache, Profile, file_digest, load_recipes, probe_disk_image

_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")  # the upstream file's name: downloads are kept under it
LOOPBACK = ("127.0.0.1:", "127.0.0.1/", "localhost:", "localhost/")  # a mirror on this machine may be plain http


@dataclass(frozen=True)
class Manifest:
    """An upstream image as its publisher ships it, and how the lab must treat it."""

    name: str
    description: str
    file: str
    url: str
    sha256: str  # optional: with neither it nor a signed checksum file, imports say they are unverified
    profile: Profile
    checksum_url: str = ""  # the publisher's signed checksum file (Fedora's CHECKSUM)
    signing_key: Path | None = None  # the publisher's public key, shipped beside the manifest
    fingerprint: str = ""  # the key's primary fingerprint: only its signature is accepted

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = tomllib.loads(path.read_text())
        source, signed = data["source"], data.get("signature", {})
        for url in (source["url"], signed.get("checksum_url", "")):
            if url and not url.startswith(("https://", *(f"http://{host}" for host in LOOPBACK))):
                raise ImageError(f"{path}: {url}: a manifest downloads over https (or from this machine) only")
        if not _FILE.fullmatch(source["file"]):
            raise ImageError(f"{path}: source.file {source['file'][:60]!r}: a file name is needed, not a path")
        key = path.parent / signed["key"] if "key" in signed else None
        return cls(data["name"], data["description"], source["file"], source["url"], source.get("sha256", ""),
                   Profile.from_dict(data.get("profile", {})), signed.get("checksum_url", ""), key,
                   signed.get("fingerprint", ""))

    def published_sha256(self, checksums: Path) -> str:
        """The image's sha256 from the signed checksum file, once its signature checks out."""
        assert self.signing_key is not None
        sums = verified_checksums(checksums, self.signing_key, self.fingerprint)
        if self.file not in sums:
            raise ImageError(f"{checksums.name}, signed by {self.fingerprint}, lists no {self.file}")
        if self.sha256 and self.sha256 != sums[self.file]:
            raise ImageError(f"manifest {self.name}: its sha256 {self.sha256} is not the signed {sums[self.file]}")
        return sums[self.file]


def load_manifests(images_dirs: tuple[Path, ...]) -> dict[str, Manifest]:
    manifests = (Manifest.load(p) for d in images_dirs for p in sorted((d / "external").glob("*.toml")))
    return {m.name: m for m in manifests}


@dataclass(frozen=True)
class Imported:
    name: str
    volume: str
    format: str
    sha256: str
    source: str
    profile: Profile
    verified: bool  # the sha256 matched the manifest's, or the publisher's signed checksum
    verified_by: str = ""  # which of the two

    def image(self) -> Image:
        return Image(self.name, self.volume, self.format, self.profile)


def imported(config: Config, name: str) -> Imported | None:
    """The record of an image imported as `name`, if any."""
    path = config.state_dir / "imports" / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Imported(**{**data, "profile": Profile.from_dict(data["profile"])})


def trust(config: Config, ref: str) -> tuple[bool, str]:
    """Whether a run's image is vouched for, and how: built here from a recipe, or imported against a sha256
    or a publisher's signature; a disk file given by path is not."""
    if ref in load_recipes(config.images_dirs):
        return True, "built here from its recipe"
    record = imported(config, ref)
    if record is not None:
        return record.verified, (f"imported, checked against {record.verified_by}" if record.verified
                                 else "imported with no sha256 or signature to check it against")
    return False, "a disk file given by path, checked against nothing"


def not_imported(config: Config, name: str) -> str:
    """Why `--image name` cannot run yet ("" if it can, or if the name is no external image)."""
    if name in load_manifests(config.images_dirs) and imported(config, name) is None:
        return (f"image {name} is not imported: `lab images fetch {name}` downloads it, or "
                f"`lab images import PATH --as {name}` takes a copy you have")
    return ""


class Imports:
    """The named images imported into the lab pool."""

    def __init__(self, config: Config, cache: ImageCache) -> None:
        self.config, self.cache = config, cache
        self.directory = config.state_dir / "imports"
        self.manifests = load_manifests(config.images_dirs)

    def get(self, name: str) -> Imported | None:
        record = imported(self.config, name)
        return record if record and self.cache.pool.lookup(record.volume) is not None else None

    def all(self) -> list[Imported]:
        names = sorted(p.stem for p in self.directory.glob("*.json"))
        return [record for name in names if (record := self.get(name))]

    def add(self, path: Path, name: str, profile_from: str | None = None, source: str = "",
            signed: tuple[str, str] | None = None, sha256: str = "") -> Imported:
        """Import a local qcow2/raw file as `name`; refuses a non-disk file and a checksum mismatch: against
        `signed` (sha256, signer) when a publisher's signed checksum file gave it, else the manifest's sha256.
        `sha256`: the file's, when its download computed it already."""
        if name in load_recipes(self.config.images_dirs):
            raise UsageError(f"{name!r} is a lab image built from a recipe; import under another name")
        fmt = probe_disk_image(path)
        manifest = self.manifests.get(name)
        if signed:
            expected, how = signed[0], f"the publisher's checksum file, signed by {signed[1]}"
        else:
            expected, how = (manifest.sha256 if manifest else ""), "the manifest's sha256"
        digest = sha256 or file_digest(path)
        if expected and digest != expected:
            raise UsageError(f"{path}: sha256 {digest} is not the {path.name} of manifest {name} "
                             f"({expected}): refusing it")
        record = Imported(name, f"image-file-{name}-{digest[:12]}.{fmt}", fmt, digest, source or str(path.resolve()),
                          self._profile(name, profile_from), bool(expected), how if expected else "")
        with self.cache.lock(f"import-{name}"):
            if self.cache.pool.lookup(record.volume) is None:
                with self.cache.log.nested(f"importing {path} as {name}"):
                    self.cache.pool.upload_file(record.volume, path, fmt)
            old = self.get(name)
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{name}.json").write_text(json.dumps(asdict(record), indent=2) + "\n")
            if old and old.volume != record.volume:
                self.cache.pool.delete(old.volume)
        return record

    def fetch(self, name: str) -> Imported:
        """Download a manifest's image (with a progress bar on a terminal), verify it and import it."""
        manifest = self.manifests.get(name)
        if manifest is None:
            known = ", ".join(sorted(self.manifests)) or "none"
            where = ", ".join(str(d / "external") for d in self.config.images_dirs)
            raise UsageError(f"no manifest for {name!r} in {where} (known: {known})")
        downloads = self.config.build_dir / "downloads"  # a download cut short resumes from here next time
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.config.build_dir, prefix=f"fetch-{name}-") as tmp:
            expected = ""
            if manifest.checksum_url:
                checksums = Path(tmp) / "CHECKSUM"
                download(manifest.checksum_url, checksums, self.cache.log, CHECKSUMS_LIMIT)
                expected = manifest.published_sha256(checksums)
                self.cache.log.info(f"{manifest.file}: sha256 {expected}, signed by {manifest.fingerprint}")
        target = downloads / manifest.file
        digest = download(manifest.url, target, self.cache.log)
        try:
            return self.add(target, name, source=manifest.url, sha256=digest,
                            signed=(expected, manifest.fingerprint) if expected else None)
        finally:
            target.unlink(missing_ok=True)  # imported, or refused: either way the next fetch starts afresh

    def _profile(self, name: str, profile_from: str | None) -> Profile:
        source = profile_from or name
        if source in self.manifests:
            return self.manifests[source].profile
        recipes = load_recipes(self.config.images_dirs)
        if source in recipes:
            return recipes[source].profile
        if profile_from:
            known = ", ".join(sorted({*self.manifests, *recipes}))
            raise UsageError(f"--profile {profile_from}: no image of that name (known: {known})")
        return Profile()
