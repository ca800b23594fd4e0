#!/usr/bin/python3
"""`rpm-ostree rollback` for OSTree hosts without rpm-ostree; runs inside the guest as root.

ostree 2022.7 has no rollback verb and no `admin set-default` (ground-truth.md §9), but
libostree can reorder deployments, which is all rpm-ostree's rollback does: the rollback
deployment (the first one after the booted one) becomes the first -- or, when the booted one
is not first (a pending deployment above it), the booted one does. Every deployment is kept,
and ostree rewrites the bootloader menu. Prints rpm-ostree's own lines.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import OSTree  # noqa: E402


def name(deployment: OSTree.Deployment) -> str:
    return f"{deployment.get_csum()}.{deployment.get_deployserial()}"


def key(deployment: OSTree.Deployment) -> tuple[str, str, int]:
    return deployment.get_osname(), deployment.get_csum(), deployment.get_deployserial()


def main() -> int:
    sysroot = OSTree.Sysroot.new_default()
    sysroot.lock()
    try:
        sysroot.load(None)
        pending, rollback = sysroot.query_deployments_for(None)
        target = sysroot.get_booted_deployment() if pending is not None else rollback
        if target is None:
            print("error: No rollback deployment found", file=sys.stderr)
            return 1
        others = [d for d in sysroot.get_deployments() if key(d) != key(target)]
        print(f"Moving '{name(target)}' to be first deployment")
        sysroot.write_deployments([target, *others], None)
    finally:
        sysroot.unlock()
    print('Run "systemctl reboot" to start a reboot')
    return 0


if __name__ == "__main__":
    sys.exit(main())
