"""Downloads that survive a bad network: the bytes already on disk are kept (`<file>.part`, also from an
earlier `lab images fetch` that was interrupted) and the rest asked for with an HTTP Range; a dropped
connection or a server error is retried with tenacity; the sha256 is computed while the bytes stream in, so
the file is not read again to hash it."""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from lab.base.errors import ImageError
from lab.base.log import Log
from lab.base.progress import progress

CHUNK = 1 << 20
ATTEMPTS = 6  # tries of one download before it fails
WAIT = wait_exponential(multiplier=2, max=60)  # between them: 2, 4, 8, ... seconds
PARTIAL = ".part"
IMAGE_LIMIT = 32 << 30  # bytes an image may have: Atomic's cloud images are under 1 GiB; more is no image
CHECKSUMS_LIMIT = 1 << 20  # a CHECKSUM file lists a release's files in a few KiB


class _Partial:
    """The bytes of a download on disk so far, and their sha256."""

    def __init__(self, path: Path) -> None:
        self.path, self.hash, self.size = path, hashlib.sha256(), 0
        if path.is_file():  # an earlier attempt's bytes: hashed once, here, then resumed after
            with path.open("rb") as kept:
                while chunk := kept.read(CHUNK):
                    self.hash.update(chunk)
                    self.size += len(chunk)

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.hash, self.size = hashlib.sha256(), 0

    def add(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.size += len(chunk)


def download(url: str, target: Path, log: Log, limit: int = IMAGE_LIMIT) -> str:
    """`url` to `target` (resuming `target`.part), a bar on a terminal, the size and time in the log; returns
    the file's sha256. A client error (404, 403) fails at once; a dropped connection or a server error is
    retried, each time from the last byte received. A file longer than `limit` bytes (said by the server or
    sent) is refused and its bytes removed: the server does not decide how much of the disk a fetch takes."""
    start = time.monotonic()
    partial = _Partial(target.with_name(target.name + PARTIAL))
    retrying = Retrying(retry=retry_if_exception(_worth_retrying), stop=stop_after_attempt(ATTEMPTS), wait=WAIT,
                        reraise=True, before_sleep=lambda state: log.warning(
                            f"downloading {url}: {state.outcome.exception() if state.outcome else '?'}; trying again "
                            f"from byte {partial.size} ({state.attempt_number} of {ATTEMPTS})"))
    try:
        retrying(_fetch, url, partial, log, limit)
    except (OSError, http.client.HTTPException) as exc:
        raise ImageError(f"cannot download {url}: {exc}") from exc
    partial.path.replace(target)
    log.info(f"downloaded {target.name}: {partial.size / 2**20:.0f} MiB in {time.monotonic() - start:.1f} s")
    return partial.hash.hexdigest()


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500  # a server's trouble may pass; a 404 will not
    return isinstance(exc, OSError | http.client.HTTPException)


def _fetch(url: str, partial: _Partial, log: Log, limit: int) -> None:
    """The rest of the file from byte `partial.size` on; the whole file again if the server ignores Range."""
    headers = {"Range": f"bytes={partial.size}-"} if partial.size else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and partial.size:  # nothing after the last byte: the file is whole
            return
        raise
    with response:
        if partial.size and response.status != 206:
            log.info(f"{url}: the server sends the whole file again (no Range); starting over")
            partial.restart()
        rest = _length(response.headers.get("Content-Length"))
        total = partial.size + rest if rest else None
        _within(url, total or 0, limit, partial)
        size = f" ({total / 2**20:.0f} MiB)" if total else ""
        log.info(f"downloading {url}{size}" + (f" from byte {partial.size}" if partial.size else ""))
        with progress(partial.path.name.removesuffix(PARTIAL), total, show=log.on_terminal) as advance, \
                partial.path.open("ab") as out:
            advance(partial.size)
            while chunk := response.read(CHUNK):
                _within(url, partial.size + len(chunk), limit, partial)
                out.write(chunk)
                partial.add(chunk)
                advance(len(chunk))
        if total is not None and partial.size != total:  # the connection ended early without an error
            raise http.client.IncompleteRead(b"", total - partial.size)


def _within(url: str, size: int, limit: int, partial: _Partial) -> None:
    if size > limit:
        partial.restart()
        raise ImageError(f"cannot download {url}: it is larger than {limit} bytes ({size} said or sent); refused")


def _length(header: str | None) -> int:
    """The server's Content-Length, 0 when it sent none or none that is a number (it says what it likes)."""
    return int(header) if header and header.strip().isdigit() else 0
