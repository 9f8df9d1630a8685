"""The HTTP server on loopback (real uvicorn): reading with Range and ETag, uploads open only
to members, no path outside the repository, BrainGlobe's own client, load, and fuzzing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from atlasmith.errors import ConfigError
from atlasmith.package import sha256_file
from atlasmith.repository import IndexEntry, LocalRepository
from atlasmith.server import make_app, serve_in_thread
from atlasmith.tokens import TokenStore
from mounts import mounted_tmpfs
from repo_helpers import PackageFactory, package_factory


@dataclass
class Served:
    url: str
    root: Path
    token: str
    entry: IndexEntry
    archive: Path


@pytest.fixture(scope="session")
def packages(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PackageFactory:
    return package_factory(example_atlas_dir, tmp_path_factory.mktemp("packages"))


@pytest.fixture(scope="module")
def served(packages: PackageFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server over a repository holding allen_mouse_100um 1.2, with one member's token."""
    base = tmp_path_factory.mktemp("served")
    root, token_file = base / "repo", base / "config" / "tokens.json"
    archive = packages()
    entry = LocalRepository(root).publish(archive)
    token = TokenStore(token_file).add("maintainer")
    with serve_in_thread(root, token_file=token_file) as url:
        yield Served(url, root, token, entry, archive)


def state(root: Path) -> dict[str, bytes]:
    """Every file in the repository folder and its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_health_and_home_page(served: Served) -> None:
    health = httpx.get(f"{served.url}/health")
    assert health.json() == {"status": "ok", "atlases": 1}
    home = httpx.get(f"{served.url}/")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert "allen_mouse_100um" in home.text


def test_download_has_length_etag_and_304(served: Served) -> None:
    url = f"{served.url}/{served.entry.archive}"
    response = httpx.get(url)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == served.entry.size
    assert hashlib.sha256(response.content).hexdigest() == served.entry.sha256
    assert response.headers["accept-ranges"] == "bytes"
    etag = response.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    head = httpx.head(url)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == served.entry.size
    assert head.content == b""


def test_download_resumes_with_range(served: Served) -> None:
    url = f"{served.url}/{served.entry.archive}"
    half = served.entry.size // 2
    first = httpx.get(url, headers={"Range": f"bytes=0-{half - 1}"})
    assert first.status_code == 206
    assert len(first.content) == half
    rest = httpx.get(url, headers={"Range": f"bytes={half}-"})
    assert rest.status_code == 206
    assert (
        rest.headers["content-range"] == f"bytes {half}-{served.entry.size - 1}/{served.entry.size}"
    )
    assert hashlib.sha256(first.content + rest.content).hexdigest() == served.entry.sha256
    beyond = httpx.get(url, headers={"Range": f"bytes={served.entry.size + 10}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{served.entry.size}"


def test_layout_files_are_served(served: Served) -> None:
    index = httpx.get(f"{served.url}/index.json").json()
    assert index["atlases"]["allen_mouse_100um"]["versions"]["1.2"]["sha256"] == served.entry.sha256
    conf = httpx.get(f"{served.url}/last_versions.conf").text
    assert conf == httpx.get(f"{served.url}/latest_versions.conf").text
    assert "allen_mouse_100um = 1.2" in conf
    structures = httpx.get(f"{served.url}/{served.entry.structures}").json()
    assert structures[0]["acronym"] == "root"


@pytest.mark.parametrize(
    "path",
    [
        "/../config/tokens.json",
        "/%2e%2e/config/tokens.json",
        "/..%2fconfig%2ftokens.json",
        "/.atlasmith-index.lock",
        "/previews/../../config/tokens.json",
        "/structures/.hidden",
        "/etc/passwd",
        "//etc/passwd",
        "/nothing.tar.gz",
    ],
)
def test_nothing_outside_the_layout_is_served(served: Served, path: str) -> None:
    # a raw socket, so that no client library normalises the path first
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404)
    assert b"maintainer" not in answer
    assert b'"sha256"' not in answer


def test_token_file_inside_the_served_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inside the served folder"):
        make_app(LocalRepository(tmp_path), TokenStore(tmp_path / "tokens.json"))


def _put(served: Served, archive: Path, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.put(
        f"{served.url}/atlases/{archive.name}",
        content=archive.read_bytes(),
        headers=headers,
        timeout=120,
    )


def test_upload_refusals_change_nothing(served: Served, packages: PackageFactory) -> None:
    new = packages(name="refused_mouse")
    before = state(served.root)
    no_token = _put(served, new, None)
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    assert _put(served, new, "atm_not-a-real-token").status_code == 403
    existing = _put(served, served.archive, served.token)
    assert existing.status_code == 409
    assert "already published" in existing.json()["detail"]
    assert state(served.root) == before


def test_yank_and_unyank_are_for_members_only(packages: PackageFactory, tmp_path: Path) -> None:
    """``POST /atlases/<atlas>/<version>/yank`` and ``.../unyank``: 401 without a token, 403
    with a wrong one, nothing changed; a member's go through the repository's crash-safe
    change, and the served page follows."""
    from atlasmith.errors import AtlasNotFoundError
    from atlasmith.repository import HttpRepository

    root, token_file = tmp_path / "repo", tmp_path / "config" / "tokens.json"
    LocalRepository(root).publish(packages())
    token = TokenStore(token_file).add("maintainer")
    name = "allen_mouse_100um"
    with serve_in_thread(root, token_file=token_file) as url:
        before = state(root)
        for action in ("yank", "unyank"):
            where = f"{url}/atlases/{name}/1.2/{action}"
            assert httpx.post(where, json={"reason": "x"}).status_code == 401
            wrong = {"Authorization": "Bearer atm_not-a-real-token"}
            assert httpx.post(where, json={"reason": "x"}, headers=wrong).status_code == 403
        member = {"Authorization": f"Bearer {token}"}
        yank = f"{url}/atlases/{name}/1.2/yank"
        assert httpx.post(yank, json={"reason": "x" * 1001}, headers=member).status_code == 422
        assert state(root) == before
        with HttpRepository(url, token=token) as repository:
            assert repository.yank(name, "1.2", "wrong orientation").yanked
            assert repository.yank(name, "1.2").yank_reason == "wrong orientation"
            page = httpx.get(f"{url}/atlases/{name}.html").text
            assert "yanked: wrong orientation" in page
            assert 'class="download"' not in page
            assert not repository.unyank(name, "1.2").yanked
            assert 'class="download"' in httpx.get(f"{url}/atlases/{name}.html").text
            with pytest.raises(AtlasNotFoundError, match="9.9"):
                repository.unyank(name, "9.9")
    assert LocalRepository(root).read_index().entry(name).version == "1.2"


def test_upload_failing_validation_says_why(
    served: Served, packages: PackageFactory, tmp_path: Path
) -> None:
    from atlasmith.package import make_archive, write_manifest

    folder = tmp_path / "broken_mouse_100um_v1.0"
    shutil.copytree(packages.valid_folder, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.update(name="broken_mouse", version="1.0")
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "meshes" / "997.obj").unlink()
    write_manifest(folder, {})
    archive = make_archive(folder, tmp_path)
    before = state(served.root)
    response = _put(served, archive, served.token)
    assert response.status_code == 422
    assert "mesh" in response.json()["detail"]
    assert "997" in response.json()["detail"]
    garbage = tmp_path / "garbage_mouse_100um_v1.0.tar.gz"
    garbage.write_bytes(b"this is not gzip")
    response = _put(served, garbage, served.token)
    assert response.status_code == 400
    assert "garbage_mouse_100um_v1.0.tar.gz" in response.json()["detail"]
    bad_name = httpx.put(
        f"{served.url}/atlases/evil.sh",
        content=b"x",
        headers={"Authorization": f"Bearer {served.token}"},
    )
    assert bad_name.status_code == 400
    assert state(served.root) == before


def test_upload_over_the_size_cap_is_refused(packages: PackageFactory, tmp_path: Path) -> None:
    token_file = tmp_path / "config" / "tokens.json"
    token = TokenStore(token_file).add("maintainer")
    archive = packages(name="large_mouse")
    root = tmp_path / "repo"
    with serve_in_thread(root, token_file=token_file, max_upload_bytes=1000) as url:
        response = httpx.put(
            f"{url}/atlases/{archive.name}",
            content=archive.read_bytes(),
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 413
    assert not root.exists() or not any(root.rglob("*.tar.gz"))


def test_brainglobe_client_downloads_and_opens_our_atlas(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brainglobe_atlasapi import bg_atlas

    # these machines are offline: BrainGlobe's probes of google.com and GIN are patched out
    monkeypatch.setattr(bg_atlas, "check_internet_connection", lambda *a, **k: True)
    monkeypatch.setattr(bg_atlas, "check_gin_status", lambda *a, **k: True)
    monkeypatch.setattr(bg_atlas.BrainGlobeAtlas, "_remote_url_base", served.url + "/{}")
    atlas = bg_atlas.BrainGlobeAtlas(
        "allen_mouse_100um", brainglobe_dir=tmp_path / "bg", interm_download_dir=tmp_path
    )
    assert atlas.local_full_name == "allen_mouse_100um_v1.2"
    assert atlas.remote_version == (1, 2)
    assert atlas.check_latest_version() is True
    assert atlas.reference.shape == (132, 80, 114)
    assert atlas.structures["root"]["id"] == 997
    assert atlas.structure_from_coords((66, 40, 57), as_acronym=True) != "Outside atlas"
    assert atlas.mesh_from_structure("root").points.shape[1] == 3


def test_fifty_clients_download_ten_times_each(served: Served) -> None:
    url = f"{served.url}/{served.entry.archive}"

    def client_downloads(_: int) -> list[str]:
        hashes = []
        with httpx.Client(timeout=120) as client:
            for _ in range(10):
                digest = hashlib.sha256()
                with client.stream("GET", url) as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes(1024 * 1024):
                        digest.update(chunk)
                hashes.append(digest.hexdigest())
        return hashes

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = [h for hashes in pool.map(client_downloads, range(50)) for h in hashes]
    assert len(results) == 500
    assert set(results) == {served.entry.sha256}
    assert sha256_file(served.archive) == served.entry.sha256


def test_fuzzed_requests_never_get_a_server_error(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/health", "/{file_path}", "/atlases/{file_name}"}
    before = state(served.root)
    for operation in operations:

        @given(operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def no_server_error(case: schemathesis.Case) -> None:
            for headers in ({}, {"Authorization": f"Bearer {served.token}"}):
                response = case.call(headers=headers)
                assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        no_server_error()
    assert state(served.root) == before


def test_serve_and_publish_commands_end_to_end(packages: PackageFactory, tmp_path: Path) -> None:
    """`atlasmith serve` in its own process; `atlasmith publish --to http://...` uploads to it."""
    import subprocess
    import sys
    import time

    from click.testing import CliRunner

    from atlasmith.cli import main

    token_file = tmp_path / "config" / "tokens.json"
    token = TokenStore(token_file).add("maintainer")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "atlasmith", "serve", str(tmp_path / "repo")]
    command += ["--port", str(port), "--token-file", str(token_file)]
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/health").json()["status"] == "ok"
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                assert server.poll() is None
                time.sleep(0.1)
        archive = str(packages())
        runner = CliRunner()
        publish = ["publish", archive, "--to", url, "--new-repository", "--token"]
        refused = runner.invoke(main, [*publish, "atm_bad"])
        assert refused.exit_code == 1
        assert "403" in refused.output
        done = runner.invoke(main, [*publish, token])
        assert done.exit_code == 0, done.output
        assert "allen_mouse_100um = 1.2" in httpx.get(f"{url}/last_versions.conf").text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert b"PUT /atlases/allen_mouse_100um_v1.2.tar.gz" in (tmp_path / "serve.log").read_bytes()


def test_atlasmith_client_fetches_from_our_server(served: Served, tmp_path: Path) -> None:
    from atlasmith.brainglobe import fetch

    atlas = fetch("allen_mouse_100um", repository=served.url, cache_dir=tmp_path / "cache")
    assert atlas.metadata["version"] == "1.2"
    assert (tmp_path / "cache" / "allen_mouse_100um_v1.2" / "manifest.json").is_file()
    assert atlas.structures["root"]["id"] == 997


def test_health_reports_a_damaged_index(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "index.json").write_text("{broken")
    with serve_in_thread(root, token_file=tmp_path / "tokens.json") as url:
        response = httpx.get(f"{url}/health")
    assert response.status_code == 503
    assert "index.json" in response.json()["detail"]


# --- connections: an idle flood or a trickled request head cannot stop the server ---------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _limit_descriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # a common default


@contextlib.contextmanager
def _server_process(root: Path, log: Path, *extra: str) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "atlasmith", "serve", str(root), "--port", str(port),
               "--token-file", str(root.parent / "tokens.json"), *extra]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_limit_descriptors
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    httpx.get(f"{url}/health", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_1100_idle_connections_do_not_stop_the_server(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    root = tmp_path / "repo"
    root.mkdir()
    log = tmp_path / "server.log"
    idle: list[socket.socket] = []
    try:
        with _server_process(root, log) as url:
            port = int(url.rsplit(":", 1)[1])
            for _ in range(1100):  # each sends nothing, ever
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            latencies = []
            for _ in range(5):
                start = time.monotonic()
                answer = httpx.get(f"{url}/health", timeout=5)  # a liveness bound, not a timing
                latencies.append(time.monotonic() - start)
                assert answer.status_code == 200
            closed = 0
            for sock in idle:  # the server closed the idle ones it needed room for
                sock.setblocking(False)
                try:
                    closed += sock.recv(1) == b""
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed += 1
            shown = ", ".join(f"{t * 1000:.0f}" for t in latencies)
            print(f"\n/health with 1,100 idle connections open: {shown} ms; {closed} idle "
                  "connections closed by the server")  # fmt: skip
            assert closed >= 1100 - 1024
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    text = log.read_text()
    assert "Too many open files" not in text  # accept never ran out of descriptors
    assert len(text) < 100_000  # no line written per connection


def test_a_client_that_stops_reading_a_download_is_disconnected(tmp_path: Path) -> None:
    """A client asks for a 32 MB archive and reads nothing (a trickled download at its
    limit): with ``--send-timeout 2`` the server drops it once its buffers have been full for
    2 s, while other clients download whole. Without the deadline the whole file would still
    arrive once the client read again."""
    root = tmp_path / "repo"
    root.mkdir()
    size = 32 * 1024**2
    (root / "big_100um_v1.0.tar.gz").write_bytes(os.urandom(size))
    with _server_process(root, tmp_path / "server.log", "--send-timeout", "2") as url:
        port = int(url.rsplit(":", 1)[1])
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /big_100um_v1.0.tar.gz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(6)  # reads nothing: the server's buffers fill, then 2 s pass
        whole = httpx.get(f"{url}/big_100um_v1.0.tar.gz", timeout=60)
        assert len(whole.content) == size  # a client that reads is served meanwhile
        stalled.settimeout(10)
        received = 0
        try:
            while chunk := stalled.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass  # aborted: what was buffered may be lost too
        finally:
            stalled.close()
        assert received < size // 2


def test_a_request_head_never_sent_or_trickled_is_cut_off(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    with _server_process(root, tmp_path / "server.log", "--header-timeout", "1") as url:
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port), timeout=30)
        trickle = socket.create_connection(("127.0.0.1", port), timeout=30)
        trickle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        trickle.setblocking(False)
        ended = {"silent": False, "trickle": False}
        deadline = time.monotonic() + 30  # a bound against a hang: the timeout is 1 s
        while not all(ended.values()) and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                trickle.send(b"X")  # one header byte at a time, never the end of the head
            for name, sock in (("silent", silent), ("trickle", trickle)):
                sock.setblocking(False)
                try:
                    ended[name] = ended[name] or sock.recv(1) == b""
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    ended[name] = True
            time.sleep(0.2)
        silent.close()
        trickle.close()
        assert ended == {"silent": True, "trickle": True}
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200


# --- every failure answered with a status and a reason, never a 500 -----------------------


@contextlib.contextmanager
def _fresh_server(tmp_path: Path, root: Path | None = None) -> Iterator[tuple[str, Path, str]]:
    root = root if root is not None else tmp_path / "repo"
    root.mkdir(parents=True, exist_ok=True)
    token_file = tmp_path / "config" / "tokens.json"
    token = TokenStore(token_file).add("maintainer")
    with serve_in_thread(root, token_file=token_file) as url:
        yield url.rstrip("/"), token_file, token


def _upload(url: str, token: str, archive: Path) -> httpx.Response:
    return httpx.put(
        f"{url}/atlases/{archive.name}",
        content=archive.read_bytes(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )


def test_long_names_are_refused_with_a_4xx(tmp_path: Path) -> None:
    long = "a" * 300
    with _fresh_server(tmp_path) as (url, _, token):
        for path in (f"/{long}", f"/previews/{long}.png", f"/brainglobe/atlas/{long}",
                     f"/structures/{long}.json"):  # fmt: skip
            status = httpx.get(f"{url}{path}").status_code
            assert 400 <= status < 500, (path, status)
        put = httpx.put(f"{url}/atlases/{long}_v1.2.tar.gz", content=b"x",
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert 400 <= put.status_code < 500


def test_a_damaged_token_file_is_503_not_500(tmp_path: Path, packages: PackageFactory) -> None:
    with _fresh_server(tmp_path) as (url, token_file, token):
        token_file.write_text("{damaged")
        answer = _upload(url, token, packages())
        assert answer.status_code == 503
        assert "token file" in answer.json()["detail"]


def test_an_index_replaced_by_a_folder_is_503_and_nothing_is_stored(
    tmp_path: Path, packages: PackageFactory
) -> None:
    root = tmp_path / "repo"
    (root / "index.json").mkdir(parents=True)
    with _fresh_server(tmp_path, root) as (url, _, token):
        answer = _upload(url, token, packages())
        assert answer.status_code == 503
        assert "not a file" in answer.json()["detail"]
        assert httpx.get(f"{url}/health").status_code == 503
    assert sorted(p.name for p in root.iterdir()) == ["index.json"]  # nothing else stored


def test_a_full_disk_is_507_and_leaves_nothing(tmp_path: Path, packages: PackageFactory) -> None:
    with mounted_tmpfs(tmp_path / "small", "size=8m") as root:
        with _fresh_server(tmp_path, root) as (url, _, token):
            answer = _upload(url, token, packages())
            assert answer.status_code == 507
            assert "disk is full" in answer.json()["detail"]
            assert httpx.get(f"{url}/health").status_code == 200
        assert list(root.iterdir()) == []  # no hidden leftover, no archive without index


def test_a_stalled_upload_is_408_and_leaves_nothing(tmp_path: Path) -> None:
    from atlasmith.server import serve_app_in_thread

    root = tmp_path / "repo"
    root.mkdir()
    tokens = TokenStore(tmp_path / "config" / "tokens.json")
    token = tokens.add("maintainer")
    app = make_app(LocalRepository(root), tokens)
    app.state.body_idle_s = 1.0  # the default is 60 s
    with serve_app_in_thread(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"PUT /atlases/allen_mouse_100um_v1.2.tar.gz HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Content-Length: 1000000\r\n\r\n" + b"\x1f\x8b" + bytes(100)
            )  # ...and then nothing more
            answer = b""
            while chunk := sock.recv(4096):  # the server answers, then closes
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"too slow" in answer
    assert list(root.iterdir()) == []  # the partial upload is gone


@pytest.mark.parametrize("members", [0, 2])
def test_serve_says_at_start_which_folder_it_serves_where(members: int, tmp_path: Path) -> None:
    """`atlasmith serve` (a free port: 0) logs one start line with the absolute folder, the
    address it really listens at, and whether uploads are on (with how many tokens)."""
    import queue
    import re
    import threading

    (tmp_path / "repo").mkdir()
    token_file = tmp_path / "config" / "tokens.json"
    for member in range(members):
        TokenStore(token_file).add(f"member{member}")
    command = [sys.executable, "-m", "atlasmith", "serve", "repo", "--port", "0"]
    command += ["--token-file", str(token_file)]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stderr or []])
    reader.start()
    try:
        line = ""
        while " serving " not in line:
            line = lines.get(timeout=60)
        found = re.search(r" serving (\S+) at (http://127\.0\.0\.1:\d+/) \((.+)\)$", line)
        assert found, line
        assert found[1] == str((tmp_path / "repo").resolve())  # absolute, though given relative
        assert httpx.get(found[2] + "health").json()["status"] == "ok"  # the real address
        uploads = f"uploads on: {members} member token(s) in {token_file}"
        assert found[3] == (uploads if members else "read-only")
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
