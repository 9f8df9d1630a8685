"""Downloads against a real HTTP server on loopback: resume, retries, hashes, bad answers.

``RepoServer`` (a ThreadingHTTPServer with Range support, request logging, throttling and
fault injection) and ``write_repository`` are shared with test_cache.py and
test_client_cli.py.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from atlasmith.download import backoff_delay, download_file, fetch_bytes, join_location
from atlasmith.errors import DownloadError, IntegrityError
from atlasmith.package import make_archive, sha256_file, write_manifest

# --- a real static server with Range, throttling and faults -------------------------------


@dataclass
class Fault:
    """Misbehaviour for one path: ``status`` for the first ``times`` requests, a body in place
    of the file, or a connection dropped after ``drop_after`` bytes (first ``times`` times)."""

    status: int | None = None
    body: bytes | None = None
    drop_after: int | None = None
    ignore_range: bool = False
    times: int = 1_000_000
    stall: float | None = None  # with drop_after: then hang this long before dropping
    trickle: float | None = None  # send 16 bytes, then wait this long, and so on


@dataclass
class RepoServer:
    """A static file server on 127.0.0.1 serving ``root``, with a log of every GET."""

    root: Path
    throttle: float | None = None  # bytes per second
    faults: dict[str, Fault] = field(default_factory=dict)
    log: list[tuple[str, str | None]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # bytes of file data sent, per path
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def gets(self, name: str) -> list[str | None]:
        """Range headers of the GETs of ``/name`` (None for whole-file requests)."""
        return [rng for path, rng in self.log if path == "/" + name]

    def start(self) -> RepoServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


_RANGE = re.compile(r"^bytes=(\d+)-$")


def _handler(repo: RepoServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            rng = self.headers.get("Range")
            repo.log.append((path, rng))
            fault = repo.faults.get(path)
            if fault is not None and fault.times > 0:
                fault.times -= 1
            else:
                fault = None
            if fault is not None and fault.status is not None:
                return self._send_status(fault.status)
            if fault is not None and fault.body is not None:
                return self._send_body(fault.body, "text/html")
            target = (repo.root / path.lstrip("/")).resolve()
            if not target.is_file() or repo.root.resolve() not in target.parents:
                return self._send_status(404)
            return self._send_file(target, rng, fault)

        def _send_status(self, status: int) -> None:
            body = f"<html><body>{status}</body></html>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_body(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_file(self, target: Path, rng: str | None, fault: Fault | None) -> None:
            size = target.stat().st_size
            match = _RANGE.match(rng or "")
            start = int(match[1]) if match and not (fault and fault.ignore_range) else 0
            if start >= size and match:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self._stream(target, start, fault.drop_after if fault else None, fault)

        def _stream(
            self, target: Path, start: int, drop_after: int | None, fault: Fault | None = None
        ) -> None:
            chunk = 64 * 1024
            sent = 0
            with open(target, "rb") as stream:
                stream.seek(start)
                while block := stream.read(16 if fault and fault.trickle else chunk):
                    if fault is not None and fault.trickle:
                        time.sleep(fault.trickle)  # just fast enough to beat a read timeout
                    if drop_after is not None and sent + len(block) > drop_after:
                        self.wfile.write(block[: drop_after - sent])
                        self.wfile.flush()
                        if fault is not None and fault.stall:
                            time.sleep(fault.stall)  # a server that hangs mid-transfer
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    try:
                        self.wfile.write(block)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    sent += len(block)
                    key = "/" + target.name
                    repo.sent[key] = repo.sent.get(key, 0) + len(block)
                    if repo.throttle:
                        time.sleep(len(block) / repo.throttle)

    return Handler


# --- a repository folder written by the tests ---------------------------------------------


def make_package(example_atlas_dir: Path, work: Path, name: str, version: str) -> Path:
    """A real package of the bundled Allen atlas as ``<name>_v<version>.tar.gz`` in ``work``."""
    base = name.rsplit("_", 1)[0]
    folder = work / f"{name}_v{version}"
    shutil.copytree(example_atlas_dir, folder)
    meta_path = folder / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    metadata.update(name=base, version=version)
    meta_path.write_text(json.dumps(metadata))
    write_manifest(folder, {"script": f"{base}.py", "test": True})
    archive = make_archive(folder, work)
    shutil.rmtree(folder)
    return archive


def write_repository(root: Path, archives: list[Path], yanked: tuple[str, ...] = ()) -> Path:
    """A static repository (index.json in the documented format, both .conf files)."""
    root.mkdir(parents=True, exist_ok=True)
    atlases: dict[str, Any] = {}
    latest: dict[str, str] = {}
    for archive in archives:
        if archive.parent != root:
            shutil.copyfile(archive, root / archive.name)
        stem = archive.name.removesuffix(".tar.gz")
        name, version = stem.rsplit("_v", 1)
        atlases.setdefault(name, {"versions": {}})["versions"][version] = {
            "archive": archive.name,
            "sha256": sha256_file(archive),
            "size": archive.stat().st_size,
            "published": "2026-11-24T21:00:00Z",
            "yanked": stem in yanked,
            "metadata": {"name": name.rsplit("_", 1)[0], "species": "Mus musculus"},
        }
        if stem not in yanked and tuple(map(int, version.split("."))) > tuple(
            map(int, latest.get(name, "0.0").split("."))
        ):
            latest[name] = version
    index = {"format": "atlasmith-index/1", "atlases": atlases}
    (root / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    conf = "[atlases]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(latest.items()))
    for conf_name in ("last_versions.conf", "latest_versions.conf"):
        (root / conf_name).write_text(conf)
    return root


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[Path], RepoServer]]:
    """Start a RepoServer on a folder; stopped after the test."""
    started: list[RepoServer] = []

    def start(root: Path) -> RepoServer:
        started.append(RepoServer(root).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


# --- tests -----------------------------------------------------------------------------------

PAYLOAD_SIZE = 3 * 1024 * 1024 + 123


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, str]:
    """A random 3 MB file (incompressible, so every byte counts) and its sha256."""
    root = tmp_path / "served"
    root.mkdir()
    path = root / "blob.tar.gz"
    path.write_bytes(os.urandom(PAYLOAD_SIZE))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_and_reports_progress(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    seen: list[tuple[int, int]] = []
    (tmp_path / "dl").mkdir()
    out = download_file(
        server.url + "blob.tar.gz",
        tmp_path / "dl" / "blob.tar.gz",
        sha256=digest,
        size=PAYLOAD_SIZE,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert out.read_bytes() == source.read_bytes()
    assert not (tmp_path / "dl" / "blob.tar.gz.part").exists()
    assert seen[-1] == (PAYLOAD_SIZE, PAYLOAD_SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert server.gets("blob.tar.gz") == [None]


def test_download_resumes_a_partial_file_with_range(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    dest = tmp_path / "blob.tar.gz"
    dest.with_name("blob.tar.gz.part").write_bytes(source.read_bytes()[:1_000_000])
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert dest.read_bytes() == source.read_bytes()
    assert server.gets("blob.tar.gz") == ["bytes=1000000-"]


def test_a_complete_verified_file_is_not_downloaded_again(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    dest = tmp_path / "blob.tar.gz"
    shutil.copyfile(source, dest)
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert server.gets("blob.tar.gz") == []
    dest.write_bytes(b"stale")  # not the right file: downloaded again
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert dest.read_bytes() == source.read_bytes()
    assert server.gets("blob.tar.gz") == [None]


def test_dropped_connections_are_resumed(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    server.faults["/blob.tar.gz"] = Fault(drop_after=700_000, times=3)
    dest = tmp_path / "blob.tar.gz"
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE, retries=2)
    assert dest.read_bytes() == source.read_bytes()
    ranges = server.gets("blob.tar.gz")
    assert ranges == [None, "bytes=700000-", "bytes=1400000-", "bytes=2100000-"]


def test_server_ignoring_range_restarts_cleanly(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    server.faults["/blob.tar.gz"] = Fault(ignore_range=True)
    dest = tmp_path / "blob.tar.gz"
    dest.with_name("blob.tar.gz.part").write_bytes(source.read_bytes()[:500_000])
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert dest.read_bytes() == source.read_bytes()
    assert server.gets("blob.tar.gz") == ["bytes=500000-"]  # its whole-file answer is used


def _finishes(call: Callable[[], Any], seconds: float) -> BaseException | None:
    """Run ``call`` in a thread; the exception it raised (None if none), failing the test if
    it does not finish in ``seconds`` (the old client looped for ever)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s"
    return outcome[0]


def test_a_server_that_ignores_range_and_drops_every_transfer_is_given_up_on(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    server.faults["/blob.tar.gz"] = Fault(ignore_range=True, drop_after=PAYLOAD_SIZE // 3)
    dest = tmp_path / "blob.tar.gz"
    error = _finishes(
        lambda: download_file(
            server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE, retries=3
        ),
        60,
    )
    assert isinstance(error, DownloadError)
    assert "ignores Range" in str(error)
    requests = server.gets("blob.tar.gz")
    assert len(requests) <= 4  # one attempt, then at most `retries` that failed
    assert server.sent["/blob.tar.gz"] <= len(requests) * PAYLOAD_SIZE
    assert not dest.exists()


def test_a_trickled_download_is_given_up_on(
    served: Callable[[Path], RepoServer],
    payload: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that sends 16 bytes every 0.1 s (160 B/s: no read ever times out) is left
    after the grace period, each attempt counting as a failure; the bytes received are kept
    for the next run. The grace period is shortened from 60 s to 1 s for the test."""
    import atlasmith.download

    monkeypatch.setattr(atlasmith.download, "DOWNLOAD_GRACE_S", 1.0)
    source, digest = payload
    server = served(source.parent)
    server.faults["/blob.tar.gz"] = Fault(trickle=0.1)
    dest = tmp_path / "blob.tar.gz"
    error = _finishes(
        lambda: download_file(
            server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE, retries=2
        ),
        60,
    )
    assert isinstance(error, DownloadError)
    assert "bytes/s" in str(error)
    assert 1 < len(server.gets("blob.tar.gz")) <= 3  # `retries` slow attempts, not more
    kept = dest.with_name(dest.name + ".part")
    assert 0 < kept.stat().st_size < PAYLOAD_SIZE
    index = source.parent / "index.json"
    index.write_bytes(b"{}" * 2000)
    server.faults["/index.json"] = Fault(trickle=0.1)
    error = _finishes(lambda: fetch_bytes(server.url + "index.json", retries=2), 60)
    assert isinstance(error, DownloadError)
    assert "bytes/s" in str(error)


class EndlessServer:
    """Answers every GET with an endless body of zeros and no Content-Length (a hostile or
    broken server); counts the bytes it sent."""

    def __init__(self) -> None:
        self.sent = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                block = bytes(1 << 20)
                try:
                    while owner.sent < 2 << 30:  # 2 GiB at most, should a client never stop
                        self.wfile.write(block)
                        owner.sent += len(block)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_an_endless_archive_without_a_size_stops_at_the_cap(tmp_path: Path) -> None:
    server = EndlessServer()
    dest = tmp_path / "atlas.tar.gz"
    try:
        error = _finishes(
            lambda: download_file(server.url + "atlas.tar.gz", dest, max_size=8 << 20), 60
        )
    finally:
        server.stop()
    assert isinstance(error, DownloadError)
    assert "sent more than 8388608 bytes" in str(error)
    assert not dest.exists()
    assert not dest.with_name("atlas.tar.gz.part").exists()  # nothing left filling the disk


_CAPPED_INDEX = r"""
import resource, sys
from atlasmith.download import fetch_bytes
from atlasmith.errors import DownloadError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    fetch_bytes(sys.argv[1] + "index.json", retries=1)
except DownloadError as err:
    print("refused:", err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("grew_kb", after - before)
"""


def test_an_endless_index_is_refused_in_bounded_memory() -> None:
    import subprocess
    import sys

    server = EndlessServer()
    try:
        run = subprocess.run(
            [sys.executable, "-c", _CAPPED_INDEX, server.url],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    finally:
        server.stop()
    assert "refused:" in run.stdout
    assert "not an index" in run.stdout
    grew_mb = int(run.stdout.split("grew_kb")[1]) / 1024
    assert grew_mb < 100, f"reading the index took {grew_mb:.0f} MB"
    assert server.sent < 1 << 30  # it stopped reading long before the 1.5 GB an attacker sends


def test_a_part_file_longer_than_the_file_restarts(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    dest = tmp_path / "blob.tar.gz"
    dest.with_name("blob.tar.gz.part").write_bytes(os.urandom(PAYLOAD_SIZE))  # wrong bytes
    with pytest.raises(IntegrityError, match="sha256 expected"):
        download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert not dest.exists()
    assert not dest.with_name("blob.tar.gz.part").exists()
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert dest.read_bytes() == source.read_bytes()


def test_server_errors_are_retried_with_backoff(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    server.faults["/blob.tar.gz"] = Fault(status=503, times=2)
    dest = tmp_path / "blob.tar.gz"
    download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE, retries=3)
    assert dest.read_bytes() == source.read_bytes()
    assert len(server.gets("blob.tar.gz")) == 3


def test_persistent_failure_gives_a_clear_download_error(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    server.faults["/blob.tar.gz"] = Fault(status=500)
    dest = tmp_path / "blob.tar.gz"
    with pytest.raises(DownloadError, match="failed after 2 attempts \\(HTTP 500\\)"):
        download_file(server.url + "blob.tar.gz", dest, sha256=digest, retries=2)
    assert not dest.exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(server.url + "missing.tar.gz", dest, retries=2)


def test_unreachable_server_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download_file("http://127.0.0.1:9/x.tar.gz", tmp_path / "x", retries=2, timeout=2)
    with pytest.raises(ConnectionError):  # a builtin, as BrainGlobe raises
        fetch_bytes("http://127.0.0.1:9/index.json", retries=1, timeout=2)


@pytest.mark.parametrize("case", ["html", "bit_flip", "too_long"])
def test_wrong_content_is_refused_and_removed(
    case: str, served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    data = bytearray(source.read_bytes())
    if case == "html":
        server.faults["/blob.tar.gz"] = Fault(body=b"<html>Service unavailable</html>")
    elif case == "bit_flip":
        data[12345] ^= 0x10
        source.write_bytes(bytes(data))
    else:
        source.write_bytes(bytes(data) + b"extra")
    dest = tmp_path / "blob.tar.gz"
    with pytest.raises(IntegrityError):
        download_file(server.url + "blob.tar.gz", dest, sha256=digest, size=PAYLOAD_SIZE)
    assert list(tmp_path.glob("blob.tar.gz*")) == []


def test_local_paths_are_copied_with_the_same_checks(
    payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    dest = tmp_path / "copy.tar.gz"
    assert (
        download_file(f"file://{source}", dest, sha256=digest).read_bytes() == source.read_bytes()
    )
    dest.unlink()
    with pytest.raises(IntegrityError):
        download_file(str(source), dest, sha256="0" * 64)
    assert not dest.exists()
    with pytest.raises(DownloadError, match="does not exist"):
        download_file(str(tmp_path / "absent"), dest)


def test_fetch_bytes(served: Callable[[Path], RepoServer], tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{}")
    server = served(tmp_path)
    assert fetch_bytes(server.url + "index.json") == b"{}"
    assert fetch_bytes(server.url + "nope.json") is None
    assert fetch_bytes(str(tmp_path / "index.json")) == b"{}"
    assert fetch_bytes(str(tmp_path / "nope.json")) is None


def test_helpers() -> None:
    assert join_location("http://h/a/", "x") == "http://h/a/x"
    assert join_location("file:///srv/a", "x") == "/srv/a/x"
    delays = [backoff_delay(n) for n in range(1, 8)]
    assert all(0.5 <= d <= 12.5 for d in delays)
    assert delays[-1] >= 10.0


def test_a_redirect_loop_is_a_one_line_error(tmp_path: Path) -> None:
    class Loop(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(DownloadError, match="redirects in a loop"):
            fetch_bytes(url + "index.json")
        with pytest.raises(DownloadError, match="redirects in a loop"):
            download_file(url + "atlas.tar.gz", tmp_path / "atlas.tar.gz")
    finally:
        server.shutdown()
        server.server_close()


def test_a_size_mismatch_names_the_size_received(
    served: Callable[[Path], RepoServer], payload: tuple[Path, str], tmp_path: Path
) -> None:
    source, digest = payload
    server = served(source.parent)
    with pytest.raises(IntegrityError, match=f"has {PAYLOAD_SIZE} bytes, the index says"):
        download_file(server.url + "blob.tar.gz", tmp_path / "b", size=PAYLOAD_SIZE + 10)
