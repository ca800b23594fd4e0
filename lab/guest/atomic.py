#!/usr/bin/python3
"""The lab's stand-in for projectatomic/atomic's system-container verbs (the original CLI is gone).

Runs inside the guest, copied there by a scenario. It follows Atomic/syscontainers.py:

  atomic build CONTEXT --tag NAME --output DIR [--host-binary PATH]...
      (lab only; Atomic used docker build) pack CONTEXT, plus host binaries and the shared
      libraries they load, into an OCI image layout with one layer.
  atomic install --system [--name NAME] [--set KEY=VALUE]... oci:DIR
      extract the rootfs to /var/lib/containers/atomic/NAME.0, render rootfs/exports/*.template
      with string.Template, install NAME.service, tmpfiles and exports/hostfs, enable the unit.
  atomic uninstall NAME
      disable and stop the unit, remove it, its tmpfiles and host files, and the checkouts.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import string
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

CHECKOUTS = Path("/var/lib/containers/atomic")
UNITS = Path("/etc/systemd/system")
TMPFILES = Path("/etc/tmpfiles.d")
RUNTIME = shutil.which("runc") or "/usr/sbin/runc"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class AtomicError(Exception):
    pass


# --- build: a directory and host binaries -> OCI image layout -----------------

def shared_libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return [Path(word) for line in out.splitlines() for word in line.split() if word.startswith("/")]


def stage_host_binary(binary: Path, rootfs: Path) -> None:
    for path in [binary, *shared_libraries(binary)]:
        target = rootfs / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path.resolve(), target)
    if binary.name == "busybox":  # applets as relative links next to it
        applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            link = rootfs / binary.parent.relative_to("/") / applet
            if not link.exists():
                link.symlink_to("busybox")


def write_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build(context: Path, tag: str, output: Path, host_binaries: list[Path]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp)
        shutil.copytree(context, rootfs, symlinks=True, dirs_exist_ok=True)
        for binary in host_binaries:
            stage_host_binary(binary, rootfs)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for path in sorted(rootfs.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)
    layer = raw.getvalue()
    (output / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    layer_ref = write_blob(output, gzip.compress(layer, mtime=0))
    config = {"architecture": "amd64", "os": "linux", "config": {"Labels": {"atomic.type": "system"}},
              "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}}
    config_ref = write_blob(output, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_ref},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_ref}]}
    manifest_ref = write_blob(output, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, **manifest_ref, "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (output / "index.json").write_text(json.dumps(index))
    (output / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    print(f"{tag}: {manifest_ref['digest']} ({len(layer)} bytes unpacked)")


# --- install / uninstall -----------------------------------------------------

def read_image(ref: str) -> tuple[str, str, list[Path]]:
    """(tag, manifest digest, layer blobs) of `oci:DIR`."""
    if not ref.startswith("oci:"):
        raise AtomicError(f"only oci:DIR images can be installed here, not {ref!r}")
    layout = Path(ref.removeprefix("oci:"))
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = json.loads(blob(layout, entry["digest"]).read_text())
    tag = entry.get("annotations", {}).get("org.opencontainers.image.ref.name", layout.name)
    return tag, entry["digest"], [blob(layout, layer["digest"]) for layer in manifest["layers"]]


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/", 1)


def template_values(name: str, destdir: Path, image: str, image_id: str, manifest: dict[str, Any],
                    overrides: dict[str, str]) -> dict[str, str]:
    """Built-in defaults < manifest defaultValues < --set < the variables atomic forces."""
    values = {"RUN_DIRECTORY": "/run", "STATE_DIRECTORY": "/var/lib", "CONF_DIRECTORY": "/etc",
              "UUID": str(uuid.uuid4()), "PIDFILE": f"/run/container-{name}.pid", "RUNTIME": RUNTIME}
    values.update({key: str(value) for key, value in manifest.get("defaultValues", {}).items()})
    values.update(overrides)
    values.update({"DESTDIR": str(destdir), "NAME": name, "IMAGE_NAME": image, "IMAGE_ID": image_id,
                   "EXEC_START": f"{values['RUNTIME']} --systemd-cgroup run '{name}'",
                   "EXEC_STOP": f"{values['RUNTIME']} --systemd-cgroup kill '{name}'",
                   "EXEC_STARTPRE": "", "EXEC_STOPPOST": "",
                   "HOST_UID": str(os.getuid()), "HOST_GID": str(os.getgid())})
    return values


def render(template: Path, values: dict[str, str]) -> str:
    try:
        return string.Template(template.read_text()).substitute(values)
    except KeyError as missing:
        raise AtomicError(f"The template file '{template}' still contains an unreplaced value for: {missing}") \
            from None


def install(ref: str, name: str | None, sets: list[str]) -> None:
    if os.geteuid() != 0:
        raise AtomicError("Only root can use --system")
    tag, image_id, layers = read_image(ref)
    name = name or tag
    destdir = CHECKOUTS / f"{name}.0"
    if (CHECKOUTS / name).exists():
        raise AtomicError(f"{name} is already installed")
    print(f"Extracting to {destdir}")
    rootfs = destdir / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in layers:
        with tarfile.open(layer) as tar:
            tar.extractall(rootfs)  # an image this tool built (bookworm's python has no extraction filters)
    exports = rootfs / "exports"
    manifest = json.loads((exports / "manifest.json").read_text()) if (exports / "manifest.json").exists() else {}
    overrides = dict(item.split("=", 1) for item in sets)
    values = template_values(name, destdir, tag, image_id, manifest, overrides)
    for source, target in (("config.json.template", "config.json"), ("service.template", f"{name}.service"),
                           ("tmpfiles.template", f"tmpfiles-{name}.conf")):
        if not (exports / source).exists():
            raise AtomicError(f"{tag} has no exports/{source}")
        (destdir / target).write_text(render(exports / source, values))
    installed = install_hostfs(exports / "hostfs", manifest.get("installedFilesTemplate", []), values)
    (destdir / "info").write_text(json.dumps({"image": tag, "revision": image_id, "values": values,
                                              "installed-files": installed, "runtime": values["RUNTIME"]}, indent=1))
    (CHECKOUTS / name).symlink_to(destdir.name)
    shutil.copy2(destdir / f"{name}.service", UNITS / f"{name}.service")
    shutil.copy2(destdir / f"tmpfiles-{name}.conf", TMPFILES / f"{name}.conf")
    run("systemctl", "daemon-reload")
    run("systemd-tmpfiles", "--create", str(TMPFILES / f"{name}.conf"))
    run("systemctl", "enable", name)


def install_hostfs(hostfs: Path, templated: list[str], values: dict[str, str]) -> list[str]:
    installed = []
    for source in sorted(p for p in hostfs.rglob("*") if p.is_file()) if hostfs.is_dir() else []:
        target = Path("/") / source.relative_to(hostfs)
        target.parent.mkdir(parents=True, exist_ok=True)
        if str(target) in templated:
            target.write_text(render(source, values))
        else:
            shutil.copy2(source, target)
        print(f"Created file {target}")
        installed.append(str(target))
    return installed


def uninstall(name: str) -> None:
    link = CHECKOUTS / name
    if not link.is_symlink():
        return
    info = json.loads((link / "info").read_text())
    run("systemctl", "disable", "--now", name)
    (UNITS / f"{name}.service").unlink(missing_ok=True)
    run("systemctl", "daemon-reload")
    tmpfiles = TMPFILES / f"{name}.conf"
    if tmpfiles.exists():
        run("systemd-tmpfiles", "--remove", str(tmpfiles))
        tmpfiles.unlink()
    for path in info.get("installed-files", []):
        Path(path).unlink(missing_ok=True)
    link.unlink()
    for slot in (f"{name}.0", f"{name}.1"):
        shutil.rmtree(CHECKOUTS / slot, ignore_errors=True)


def run(*command: str) -> None:
    print(" ".join(command))
    subprocess.run(command, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="atomic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("build")
    b.add_argument("context", type=Path)
    b.add_argument("--tag", required=True)
    b.add_argument("--output", type=Path, required=True)
    b.add_argument("--host-binary", type=Path, action="append", default=[])
    i = verbs.add_parser("install")
    i.add_argument("--system", action="store_true", required=True)
    i.add_argument("--name")
    i.add_argument("--set", action="append", default=[], dest="sets")
    i.add_argument("image")
    u = verbs.add_parser("uninstall")
    u.add_argument("name")
    args = parser.parse_args()
    try:
        if args.verb == "build":
            build(args.context, args.tag, args.output, args.host_binary)
        elif args.verb == "install":
            install(args.image, args.name, args.sets)
        else:
            uninstall(args.name)
    except (AtomicError, OSError, subprocess.CalledProcessError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
