"""`lab images fetch`'s downloads on a bad network: a connection cut mid-file resumes with an HTTP Range from
the last byte (in the same fetch, and in the next one after the fetch gave up), a server that ignores Range
sends the whole file again, a 404 fails at once, a 503 is retried; the sha256 is that of the whole file."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tenacity import wait_none

from lab.base.errors import ImageError
from lab.base.log import Log
from lab.image import download as downloads
from lab.image.download import download

CONTENT = bytes(range(256)) * 4096  # 1 MiB
CUT = 300_000


class Publisher(http.server.ThreadingHTTPServer):
    """A download site whose connections are cut after CUT bytes `cuts` times, that answers `errors` first."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.cuts, self.errors, self.ranges, self.length = 0, [], True, ""
        self.seen: list[str | None] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: Publisher

    def do_GET(self) -> None:
        asked = self.headers.get("Range")
        self.server.seen.append(asked)
        if self.server.errors:
            self.send_error(self.server.errors.pop(0))
            return
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and self.server.ranges else 0
        body = CONTENT[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        self.send_header("Content-Length", self.server.length or str(len(body)))
        self.end_headers()
        if self.server.cuts:
            self.server.cuts -= 1
            self.wfile.write(body[:CUT])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Publisher]:
    monkeypatch.setattr(downloads, "WAIT", wait_none())
    server = Publisher()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _get(site: Publisher, target: Path) -> str:
    return download(f"http://127.0.0.1:{site.server_port}/image.qcow2", target, Log(terminal=False))


def test_a_cut_connection_resumes_from_the_last_byte(site: Publisher, tmp_path: Path) -> None:
    site.cuts = 2
    digest = _get(site, tmp_path / "image.qcow2")
    assert (tmp_path / "image.qcow2").read_bytes() == CONTENT and digest == hashlib.sha256(CONTENT).hexdigest()
    assert site.seen == [None, f"bytes={CUT}-", f"bytes={2 * CUT}-"]
    assert not (tmp_path / "image.qcow2.part").exists()


def test_a_server_that_ignores_range_sends_it_all_again(site: Publisher, tmp_path: Path) -> None:
    site.cuts, site.ranges = 1, False
    assert _get(site, tmp_path / "image.qcow2") == hashlib.sha256(CONTENT).hexdigest()
    assert (tmp_path / "image.qcow2").read_bytes() == CONTENT


def test_the_next_fetch_resumes_what_a_failed_one_left(site: Publisher, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "ATTEMPTS", 2)
    site.cuts = 2
    with pytest.raises(ImageError, match="cannot download"):
        _get(site, tmp_path / "image.qcow2")
    assert (tmp_path / "image.qcow2.part").stat().st_size == 2 * CUT
    site.seen = []
    assert _get(site, tmp_path / "image.qcow2") == hashlib.sha256(CONTENT).hexdigest()
    assert site.seen == [f"bytes={2 * CUT}-"]


def test_a_missing_file_fails_at_once_and_a_busy_server_is_asked_again(site: Publisher, tmp_path: Path) -> None:
    site.errors = [404]
    with pytest.raises(ImageError, match="404"):
        _get(site, tmp_path / "image.qcow2")
    assert site.seen == [None]
    site.errors, site.seen = [503, 503], []
    assert _get(site, tmp_path / "image.qcow2") == hashlib.sha256(CONTENT).hexdigest()
    assert len(site.seen) == 3


def test_a_length_that_is_no_number_is_no_length(site: Publisher, tmp_path: Path) -> None:
    site.length = "lots"
    assert _get(site, tmp_path / "image.qcow2") == hashlib.sha256(CONTENT).hexdigest()


@pytest.mark.parametrize("says_length", [True, False])
def test_a_file_longer_than_the_limit_is_refused_and_its_bytes_removed(site: Publisher, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      says_length: bool) -> None:
    site.length = "" if says_length else "none"  # said up front, or only found out while the bytes come
    url = f"http://127.0.0.1:{site.server_port}/image.qcow2"
    with pytest.raises(ImageError, match=f"larger than {len(CONTENT) - 1} bytes"):
        download(url, tmp_path / "image.qcow2", Log(terminal=False), limit=len(CONTENT) - 1)
    assert site.seen == [None]  # refused, not retried
    assert not (tmp_path / "image.qcow2.part").exists() and not (tmp_path / "image.qcow2").exists()
    assert download(url, tmp_path / "image.qcow2", Log(terminal=False), limit=len(CONTENT)) == \
        hashlib.sha256(CONTENT).hexdigest()
