#!/usr/bin/python3
"""Watch one path with inotify and say whether the kernel reported a change: `inotify-watch PATH SECONDS`.

Runs inside the guest (bookworm has no inotify-tools in the lab's images). Prints `ready` once the watch is
set, then `event MASK` for the first event or `none` when none came within SECONDS. It only relays what the
kernel's inotify reports.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import sys

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8


def main(path: str, seconds: float) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE) < 0:
        print(f"inotify: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    readable, _, _ = select.select([fd], [], [], seconds)
    if not readable:
        print("none")
        return 0
    _, mask, _, _ = struct.unpack("iIII", os.read(fd, 4096)[:16])
    print(f"event {mask:#x}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
