"""The one pinned-file fetcher (fusebench.fetch) as datasets and weights use it: over HTTP, retries of
transient failures, truncated transfers, blob id / sha256 checks, atomic writes."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusebench import fetch
from fusebench.fetch import FetchFailed, Pin, Rejected, Source, fetch_pinned, git_blob_sha1
from fusebench.weights import WeightsEntry, fetch_weights

DATA = bytes(range(256)) * 64


class _Server(http.server.BaseHTTPRequestHandler):
    """Serves ``files``; a path in ``flaky`` answers 503 once, one in ``short`` sends half its body."""

    files: dict[str, bytes] = {}
    flaky: set[str] = set()
    short: set[str] = set()
    hits: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        if self.path in self.flaky:
            self.flaky.discard(self.path)
            self.send_error(503)
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if self.path in self.short else data)
        self.close_connection = True


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(fetch, "RETRY_DELAY_S", 0.0)
    _Server.files, _Server.flaky, _Server.short, _Server.hits = {}, set(), set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_git_blob_sha1_of_bytes_and_files(tmp_path: Path) -> None:
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`
    (tmp_path / "f").write_bytes(b"hello\n")
    assert git_blob_sha1(tmp_path / "f") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_retry_then_verified_by_blob_id(server: str, tmp_path: Path) -> None:
    _Server.files = {"/a.bin": DATA}
    _Server.flaky = {"/a.bin"}
    target = tmp_path / "out" / "a.bin"
    target.parent.mkdir()
    digests, source = fetch_pinned(target, Pin(git_blob_sha1=git_blob_sha1(DATA)), [Source("up", f"{server}/a.bin")])
    assert target.read_bytes() == DATA and source.kind == "up"
    assert digests["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert _Server.hits == ["/a.bin", "/a.bin"]


def test_truncated_transfer_is_retried_then_reported(server: str, tmp_path: Path) -> None:
    _Server.files = {"/a.bin": DATA}
    _Server.short = {"/a.bin"}
    target = tmp_path / "a.bin"
    with pytest.raises(FetchFailed, match=r"got 8192 of 16384 bytes\) after 3 attempts"):
        fetch_pinned(target, Pin(sha256=hashlib.sha256(DATA).hexdigest()), [Source("up", f"{server}/a.bin")])
    assert not list(tmp_path.iterdir())  # no file, no temporary


def test_mismatch_falls_back_or_stops(server: str, tmp_path: Path) -> None:
    _Server.files = {"/bad.bin": DATA[:-1] + b"x", "/good.bin": DATA}
    pin = Pin(sha256=hashlib.sha256(DATA).hexdigest(), size=len(DATA))
    sources = [Source("mirror", f"{server}/bad.bin"), Source("upstream", f"{server}/good.bin")]
    fetch_pinned(tmp_path / "a.bin", pin, sources)
    assert (tmp_path / "a.bin").read_bytes() == DATA
    with pytest.raises(Rejected, match=r"mirror .*bad.bin: sha256 [0-9a-f]{64}, expected"):
        fetch_pinned(tmp_path / "b.bin", pin, sources, fallback_on_mismatch=False)
    assert not (tmp_path / "b.bin").exists()


def test_weights_use_the_same_fetcher_over_http(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights gained retries and the truncation check by sharing the datasets' fetcher."""
    entry = WeightsEntry(
        name="fake",
        repo="someone/Fake",
        commit="0123456789abcdef0123456789abcdef01234567",
        path="models/fake.pth",
        git_blob_sha1=git_blob_sha1(DATA),
        folder="fake",
    )
    monkeypatch.delenv("FUSEBENCH_WEIGHTS_MIRROR", raising=False)
    _Server.files = {f"/{entry.repo}/{entry.commit}/{entry.path}": DATA}
    _Server.flaky = set(_Server.files)
    path = fetch_weights(entry, tmp_path / "weights", upstream=server)
    assert path.read_bytes() == DATA and len(_Server.hits) == 2
