"""The guest's serial console, captured to a file: tail it and watch it; typed into (`interact`)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import libvirt

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# When a (re)boot gets where: the first line of each stage on the console, in order.
BOOT_TIMELINE = {
    "shut_down": re.compile(r"reboot: (Restarting system|Power down)"),
    "firmware": re.compile(r"SeaBIOS|iPXE|Booting from "),
    "grub": re.compile(r"GNU GRUB|Booting `|Loading Linux"),
    "kernel": re.compile(r"Linux version \d"),
    "systemd": re.compile(r"Welcome to .*Linux"),
    # systemd's status line once sshd listens: "ssh.service - OpenBSD Secure Shell server" (Debian), older
    # systemd's description only ("OpenSSH server daemon" on Fedora and CentOS), or its socket unit
    "sshd": re.compile(r"Started (sshd?\.service|OpenSSH server daemon|OpenBSD Secure Shell server)|"
                       r"Listening on (sshd?\.socket|OpenSSH Server Socket|OpenBSD Secure Shell server socket)"),
}


def booting(text: str) -> bool:
    """Whether console output (since a reboot was asked for) shows the next boot begun: firmware or a kernel."""
    clean = strip_ansi(text)
    return any(BOOT_TIMELINE[stage].search(clean) for stage in ("firmware", "kernel"))


_STATUS = re.compile(r"\[  OK  \] ")
# A getty's prompt on the console: systemd writes no more status lines there while a getty holds it.
_LOGIN_PROMPT = re.compile(r"^\S+ login: ", re.MULTILINE)


def sshd_state(text: str) -> Literal["started", "pending", "unknown"]:
    """Where sshd is in the boot that console output (since a boot or reboot was asked for) shows: "started"
    (it listens; a loaded guest may still send its banner late), "pending" (systemd reports units on this
    console, in the shutdown before the boot or in the boot, and sshd is not among them yet: a connection now
    is answered late or not at all) or "unknown" (nothing to go by, or a getty took the console after the last
    status line, so sshd's would not show: probe)."""
    clean = strip_ansi(text)
    if BOOT_TIMELINE["sshd"].search(clean):
        return "started"
    last_status = max((m.start() for m in _STATUS.finditer(clean)), default=-1)
    last_prompt = max((m.start() for m in _LOGIN_PROMPT.finditer(clean)), default=-1)
    return "pending" if last_status > last_prompt else "unknown"


# What the console shows at milestones of a cold boot.
MILESTONES = {
    "first_console_output": re.compile(r"\S"),
    **{name: pattern for name, pattern in BOOT_TIMELINE.items() if name != "shut_down"},
    # the final stage's message, or (lab images, whose final stage runs only for scripts) the host keys
    # the init stage announces last
    "cloud_init_finished": re.compile(r"Cloud-init v\. \S+ finished at|-----END SSH HOST KEY FINGERPRINTS-----"),
}


_PANIC = re.compile(r"Kernel panic - not syncing.*")


def panic_line(text: str) -> str | None:
    """The kernel's panic line, if the console shows one."""
    match = _PANIC.search(text)
    return match.group(0).strip() if match else None


# The kernel's last line before the machine restarts: a reboot, or a panic with a reboot timeout (panic=N).
_RESTART = re.compile(r"reboot: Restarting system|Rebooting in \d+ seconds")


def restarting(text: str) -> bool:
    """Whether the console shows the kernel restarting the machine (not powering it off)."""
    return _RESTART.search(text) is not None


# A boot that ends here never reaches SSH: waiting longer cannot help.
_DEAD_END = re.compile(r"Kernel panic - not syncing.*|You are in emergency mode.*|Entering emergency mode.*|"
                       r"Give root password for maintenance.*|Dropping to a shell!.*|No bootable device.*")


def dead_end(text: str) -> str | None:
    """The console line of a boot that went where no login can follow (panic, emergency or initramfs shell,
    a firmware that found nothing to boot)."""
    match = _DEAD_END.search(strip_ansi(text))
    return match.group(0).strip() if match else None


# Where a boot can be, in order, and what the console shows when it gets there.
_PHASES = (
    ("still shutting down", re.compile(r"Reached target .*(Reboot|Power-Off|Shutdown)|systemd-shutdown|"
                                       r"reboot: (Restarting system|Power down)")),
    ("firmware", BOOT_TIMELINE["firmware"]),
    ("bootloader (GRUB)", BOOT_TIMELINE["grub"]),
    ("kernel", BOOT_TIMELINE["kernel"]),
    ("initramfs", re.compile(r"Loading, please wait|Begin: |dracut|ostree-prepare-root")),
    ("systemd", re.compile(r"Welcome to .*Linux|\[  OK  \] |systemd\[1\]")),
    ("cloud-init", re.compile(r"cloud-init\[\d+\]|Cloud-init v\. ")),
    ("sshd and login", re.compile(rf"{BOOT_TIMELINE['sshd'].pattern}| login: ")),
)


# The kernel's own words for a boot that stalls rather than stops (its backtrace fills the console's tail).
_KERNEL_TROUBLE = re.compile(r"(?:watchdog: )?BUG: .*|rcu: INFO: .*|INFO: task \S+ blocked for more than .*|"
                             r"general protection fault.*|Oops: .*")


def boot_phase(text: str) -> str:
    """Where a boot is, read from its console output: the phase of the latest milestone, with the last line
    and the first stall or bug the kernel reported, if any."""
    clean = strip_ansi(text)
    phase, at = "nothing yet (no console output since the boot began)", -1
    for name, pattern in _PHASES:
        found = [m.start() for m in pattern.finditer(clean)]
        if found and found[-1] > at:
            phase, at = name, found[-1]
    lines = [line for line in clean.splitlines() if line.strip()]
    trouble = _KERNEL_TROUBLE.search(clean)
    return phase + (f"; last console line: {lines[-1].strip()[:160]!r}" if lines else "") + \
        (f"; the kernel reported: {trouble.group(0).strip()[:160]!r}" if trouble else "")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def size(path: Path) -> int:
    """Where a console capture ends now (0 before it exists): an offset for `read`."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read(path: Path, since: int = 0) -> str:
    """A console capture from offset `since` on, with the serial line's carriage returns dropped."""
    with path.open("rb") as console:
        console.seek(since)
        return console.read().decode(errors="replace").replace("\r", "")


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console output captured)"
    clean = _ANSI.sub("", text.replace("\r", ""))
    kept = [line for line in clean.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(the console stayed silent)"


class ConsoleWatcher:
    """Polls a console file and records when each milestone first appears."""

    def __init__(self, path: Path, start: float, patterns: dict[str, re.Pattern[str]] = MILESTONES,
                 interval: float = 0.2, *, since: int = 0) -> None:
        self.path, self.start, self.patterns, self.interval = path, start, patterns, interval
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"console:{path.name}", daemon=True)
        self._offset = since
        self._buffer = ""

    def __enter__(self) -> ConsoleWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval) and len(self.seen) < len(self.patterns):
            self._scan()

    def _scan(self) -> None:
        try:
            with self.path.open("r", errors="replace") as console:
                console.seek(self._offset)
                chunk = console.read()
                self._offset = console.tell()
        except OSError:
            return
        self._buffer = (self._buffer + chunk)[-65536:]
        now = round(time.monotonic() - self.start, 2)
        text = strip_ansi(self._buffer)  # systemd colours the unit names in its status lines
        for name, pattern in self.patterns.items():
            if name not in self.seen and pattern.search(text):
                self.seen[name] = now


class ConsoleStream:
    """A running domain's serial console (a pty) read from a libvirt stream into `write`: how the lab
    captures the console of a guest on a remote libvirt host, whose files it cannot read
    (`to_file`), and how `lab console RUN -i` shows it (`interact`); `send` types into it.

    The stream is non-blocking and read from libvirt's event loop (`run_event_loop`): a blocking
    read holds the GIL in libvirt-python and stalls every other thread."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain, write: Callable[[bytes], object],
                 close: Callable[[], object] = lambda: None) -> None:
        self._write, self._close = write, close
        self._stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        events = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        self._lock = threading.Lock()  # the event loop thread writes, the run's thread stops
        self.open = True
        self._stream.eventAddCallback(events, self._on_event, None)

    @classmethod
    def to_file(cls, conn: libvirt.virConnect, dom: libvirt.virDomain, path: Path) -> ConsoleStream:
        out = path.open("ab", buffering=0)  # unbuffered: each chunk is in the file as it arrives
        return cls(conn, dom, out.write, out.close)

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        while True:
            try:
                data = stream.recv(65536)
            except libvirt.libvirtError:
                data = b""
            if data == -2:
                return  # drained; wait for the next event
            if not isinstance(data, bytes) or not data:
                self.stop()  # end of stream: the domain stopped
                return
            with self._lock:
                if self.open:
                    self._write(data)

    def send(self, data: bytes) -> None:
        """Type `data` into the console."""
        while data:
            sent = self._stream.send(data)
            if sent == -2:  # the stream is full: libvirt takes it in a moment
                time.sleep(0.01)
                continue
            data = data[sent:]

    def stop(self) -> None:
        with self._lock:  # no libvirt call under this lock: the event loop may be waiting for it
            if not self.open:
                return
            self.open = False
            self._close()
        with contextlib.suppress(libvirt.libvirtError):  # already ended with its domain
            self._stream.eventRemoveCallback()
            self._stream.abort()


ESCAPE = b"\x1d"  # Ctrl-]: leaves an interactive console, as it leaves virsh's


def interact(conn: libvirt.virConnect, dom: libvirt.virDomain, terminal: int = 0, screen: int = 1) -> None:
    """This terminal typing into the guest's serial console (GRUB's menu, a login, an emergency shell) and
    showing it, until Ctrl-] or the guest stops. The event loop must run (`run_event_loop`)."""
    stream = ConsoleStream(conn, dom, lambda data: os.write(screen, data))
    saved = termios.tcgetattr(terminal)
    tty.setraw(terminal)  # every key goes to the guest, Ctrl-C included
    try:
        while stream.open:
            ready, _, _ = select.select([terminal], [], [], 0.5)
            typed = os.read(terminal, 1024) if ready else b""
            if ESCAPE in typed:
                stream.send(typed.split(ESCAPE)[0])
                break
            stream.send(typed)
    finally:
        termios.tcsetattr(terminal, termios.TCSADRAIN, saved)
        stream.stop()


def run_event_loop() -> None:
    """libvirt's default event loop in a daemon thread, once per process (console streams need it).
    It must be registered before the connection is opened."""
    global _EVENT_LOOP
    if _EVENT_LOOP is None:
        libvirt.virEventRegisterDefaultImpl()
        _EVENT_LOOP = threading.Thread(target=_loop, name="libvirt-events", daemon=True)
        _EVENT_LOOP.start()


def _loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


_EVENT_LOOP: threading.Thread | None = None
