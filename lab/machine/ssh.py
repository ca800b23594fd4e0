"""One paramiko session per machine: run commands, copy files, reconnect."""

from __future__ import annotations

import io
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.base.config import LibvirtHost
from lab.base.errors import CommandTimeout, GuestGone, HostKeyMismatch, SshUnavailable

# Base limits in seconds, multiplied by the session's scale (TCG, LAB_TIMEOUT_FACTOR). A fresh TCP+SSH
# handshake costs 1-3.5 s under TCG on an idle host (key exchange in the emulated CPU), several times that
# beside other guests; a channel opens in the guest's sshd, which a busy guest serves late.
CONNECT_TIMEOUT = 10.0
BANNER_TIMEOUT = 20.0
CHANNEL_TIMEOUT = 30.0
# QEMU's port forward accepts a connection at once, even while the guest cannot answer it (booting,
# rebooting): such a connection hangs until a timeout, and a poll that waits out the handshake's limits
# learns of a ready guest up to ~20 s late. So until the guest's sshd is known to listen, a connection
# without a banner within this (base) limit is given up and the next poll opens another. Once it listens
# (`connect(patient=True)`), the banner is waited for in full: a loaded guest's sshd took longer than the
# probe to fork and send it, and every probe given up cost it another sshd start, late, in its backlog.
BANNER_PROBE = 4.0
LOG_CHANNEL = "lab.paramiko"  # paramiko's loggers, unless a run gives its own (Log.child)


class _Demote(logging.Filter):
    """paramiko logs every refused handshake of a booting guest as an error with a traceback: expected
    while the lab polls. Its records become DEBUG: the run's transcript keeps them, the terminal shows
    them only with -v, and no other handler (pytest's report) sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = f"paramiko {record.levelname.lower()}: {record.getMessage()}", None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _quiet_logger(name: str) -> str:
    """`name`, a logger for one session's transports whose records are demoted to DEBUG."""
    for logger_name in (name, f"{name}.sftp"):
        logger = logging.getLogger(logger_name)
        logger.setLevel(logging.WARNING)  # not paramiko's key-exchange chatter
        if not any(isinstance(f, _Demote) for f in logger.filters):
            logger.addFilter(_Demote())
    return name


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_line: str

    @classmethod
    def generate(cls, path: Path, comment: str) -> KeyPair:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(private)
        return cls(path, f"{public.decode()} {comment}")

    def pkey(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_path.read_text()))


@dataclass(frozen=True)
class HostKey:
    """A guest's SSH host key, made by the lab and handed over in the seed: the guest is pinned to it before
    the first byte, on every image, whatever its console prints."""

    private_text: str  # OpenSSH PEM, as cloud-init's ssh_keys take it
    public_line: str  # "ssh-ed25519 AAAA..."
    fingerprint: str  # "SHA256:...", as paramiko reports the key a server shows

    @classmethod
    def generate(cls) -> HostKey:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = paramiko.Ed25519Key.from_private_key(io.StringIO(private))
        return cls(private, f"{public.get_name()} {public.get_base64()}", public.fingerprint)


@dataclass(frozen=True)
class CommandResult:
    command: str
    rc: int
    stdout: str
    stderr: str
    duration: float


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Records the key the guest shows; once keys are pinned, refuses any other."""

    def __init__(self) -> None:
        self.fingerprint = ""
        self.public = ""  # "ssh-ed25519 AAAA...", as known_hosts takes it
        self.pinned: frozenset[str] = frozenset()

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.fingerprint, self.public = key.fingerprint, f"{key.get_name()} {key.get_base64()}"
        if self.pinned and key.fingerprint not in self.pinned:
            raise HostKeyMismatch(f"{hostname}: SSH host key {key.get_name()} {key.fingerprint} is not the one the "
                                  f"lab gave the guest ({', '.join(sorted(self.pinned))}): refusing it")


class _Replayed:
    """A connected socket (or channel) whose first reads return the bytes already read from it: the banner
    the lab waited for, which paramiko reads again."""

    def __init__(self, sock: socket.socket | paramiko.Channel, head: bytes) -> None:
        self._sock, self._head = sock, head

    def recv(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def _await_banner(sock: socket.socket | paramiko.Channel, timeout: float) -> bytes:
    """What the server sent up to its SSH banner line; SshUnavailable if it sent none within `timeout`."""
    deadline = time.monotonic() + timeout
    head = b""
    while b"SSH-" not in head or b"\n" not in head[head.index(b"SSH-"):]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            raise SshUnavailable(f"no SSH banner within {timeout:.0f} s (sshd not answering yet)")
        data = sock.recv(256)
        if not data:
            raise SshUnavailable("the connection closed before an SSH banner (sshd not listening yet)")
        head += data
    return head


class JumpHost:
    """An SSH connection to a remote libvirt host, through which the lab reaches the guests' ports
    on that host's loopback (paramiko direct-tcpip channels, as `ssh -J` does)."""

    def __init__(self, host: LibvirtHost, log_channel: str = LOG_CHANNEL) -> None:
        self.host, self.log_channel = host, _quiet_logger(f"{log_channel}.jump")
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def channel(self, port: int, timeout: float) -> paramiko.Channel:
        """A channel to 127.0.0.1:`port` on the libvirt host."""
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                transport = self._connect(timeout)
        return transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=timeout)

    def _connect(self, timeout: float) -> paramiko.Transport:
        client = paramiko.SSHClient()
        client.set_log_channel(self.log_channel)
        client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.RejectPolicy() if self.host.verify else paramiko.AutoAddPolicy())
        try:
            client.connect(self.host.host, port=self.host.port, username=self.host.user,
                           key_filename=self.host.keyfile, timeout=timeout, banner_timeout=BANNER_TIMEOUT)
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            raise SshUnavailable(f"ssh {self.host.user}@{self.host.host}:{self.host.port} (the libvirt host): "
                                 f"{type(exc).__name__}: {exc}") from exc
        self._client = client
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        return transport

    def close(self) -> None:
        with self._lock:
            if self._client:
                self._client.close()
                self._client = None


class SshSession:
    def __init__(self, host: str, port: int, user: str, key: KeyPair, jump: JumpHost | None = None, *,
                 scale: float = 1.0, log_channel: str = LOG_CHANNEL) -> None:
        self.host, self.port, self.user, self.key, self.jump = host, port, user, key, jump
        self.scale = scale  # every limit of the SSH layer is multiplied by it
        self.log_channel = _quiet_logger(f"{log_channel}.{port}")  # paramiko's records: DEBUG there
        self._client: paramiko.SSHClient | None = None
        self._host_key = _PinnedHostKey()

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    @property
    def host_key_fingerprint(self) -> str:
        """SHA256:... of the key the guest showed on the last connect."""
        return self._host_key.fingerprint

    @property
    def pinned(self) -> frozenset[str]:
        return self._host_key.pinned

    @property
    def pinned_key(self) -> str:
        """The guest's host public key ("ssh-ed25519 AAAA..."), once pinned; else ''."""
        return self._host_key.public if self._host_key.pinned else ""

    def pin(self, fingerprints: frozenset[str]) -> None:
        """From now on accept only these host keys (SHA256:... fingerprints)."""
        if self._host_key.fingerprint and self._host_key.fingerprint not in fingerprints:
            raise HostKeyMismatch(f"{self.host}:{self.port}: the SSH host key seen, {self._host_key.fingerprint}, is "
                                  f"not the one the lab gave the guest ({', '.join(sorted(fingerprints))})")
        self._host_key.pinned = fingerprints

    def connect(self, *, patient: bool = False) -> None:
        """One attempt; callers poll with `lab.base.retry.wait_until`. `patient`: the guest's sshd is known to listen,
        so its banner is waited for as long as any handshake step, not just `BANNER_PROBE`."""
        self.close()
        client = paramiko.SSHClient()
        client.set_log_channel(self.log_channel)
        client.set_missing_host_key_policy(self._host_key)
        timeout, banner = CONNECT_TIMEOUT * self.scale, BANNER_TIMEOUT * self.scale
        sock: socket.socket | paramiko.Channel | None = None
        try:
            sock = self.jump.channel(self.port, timeout) if self.jump else \
                socket.create_connection((self.host, self.port), timeout=timeout)
            head = _await_banner(sock, banner if patient else BANNER_PROBE * self.scale)
            client.connect(self.host, port=self.port, username=self.user, pkey=self.key.pkey(),
                           sock=_Replayed(sock, head),  # type: ignore[arg-type]
                           timeout=timeout, banner_timeout=banner, auth_timeout=banner,
                           channel_timeout=CHANNEL_TIMEOUT * self.scale, allow_agent=False, look_for_keys=False)
        except (OSError, paramiko.SSHException, EOFError, SshUnavailable) as exc:
            client.close()
            if sock is not None:
                sock.close()
            raise SshUnavailable(f"ssh {self.user}@{self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc
        transport = client.get_transport()
        if transport:
            transport.set_keepalive(5)
        self._client = client

    def close(self) -> None:
        if self._client:
            self._client.close()
            self._client = None

    def run(self, command: str, timeout: float, abandon: Callable[[], str | None] = lambda: None) -> CommandResult:
        """Run `command`; raise SshUnavailable if the connection drops, CommandTimeout if time runs out,
        GuestGone as soon as `abandon` (polled while the command is silent) gives a reason."""
        if not self._client or not self.connected:
            raise SshUnavailable(f"not connected to {self.host}:{self.port}")
        start = time.monotonic()
        try:
            transport = self._client.get_transport()
            assert transport is not None
            channel = transport.open_session(timeout=CHANNEL_TIMEOUT * self.scale)
            channel.exec_command(command)
            stdout, stderr = _drain(channel, start + timeout, abandon)
            rc = channel.recv_exit_status()
            if rc == -1:  # paramiko's "no exit status": the connection ended under the command
                raise EOFError("the session closed without an exit status")
        except TimeoutError as exc:
            raise CommandTimeout(f"{command!r} still running after {timeout:.0f} s (limit {timeout:.0f} s)") from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise SshUnavailable(f"connection to {self.host}:{self.port} lost while running "
                                 f"{command!r}: {type(exc).__name__}: {exc}") from exc
        return CommandResult(command, rc, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                             time.monotonic() - start)

    def put(self, local: Path, remote: str) -> None:
        sftp = self._client.open_sftp()  # type: ignore[union-attr]
        try:
            sftp.put(str(local), remote)
        finally:
            sftp.close()

    def get(self, remote: str, local: Path) -> None:
        sftp = self._client.open_sftp()  # type: ignore[union-attr]
        try:
            sftp.get(remote, str(local))
        finally:
            sftp.close()


def _drain(channel: paramiko.Channel, deadline: float, abandon: Callable[[], str | None]) -> tuple[bytes, bytes]:
    stdout, stderr = bytearray(), bytearray()
    while True:
        if channel.recv_ready():
            stdout += channel.recv(65536)
            continue
        if channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
            continue
        if channel.exit_status_ready():
            return bytes(stdout), bytes(stderr)
        if channel.closed:
            raise EOFError("channel closed without an exit status")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            channel.close()
            raise TimeoutError
        if not select.select([channel], [], [], min(remaining, 1.0))[0]:
            reason = abandon()
            if reason:
                channel.close()
                raise GuestGone(reason)
