"""The repository conformance suite: every backend (local directory, HTTP server, S3) must pass
the same tests. Each backend fixture gives the repository under test and a raw reader that
bypasses it, so that the tests check what is really stored."""

from __future__ import annotations

import configparser
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from atlasmith.errors import (
    ArchiveError,
    AtlasExistsError,
    AtlasmithError,
    AtlasNotFoundError,
    AuthenticationError,
    IntegrityError,
    RepositoryError,
    ValidationError,
)
from atlasmith.package import make_archive, sha256_file, write_manifest
from atlasmith.repository import (
    HttpRepository,
    LocalRepository,
    Repository,
    S3Repository,
    open_repository,
)
from atlasmith.server import serve_in_thread
from atlasmith.tokens import TokenStore
from repo_helpers import PackageFactory, package_factory


@dataclass
class Backend:
    """A repository under test and a way to read its stored files without it."""

    repo: Repository
    raw: Callable[[str], bytes | None]
    drop: Callable[[str], None]  # delete a stored file behind the repository's back


@pytest.fixture(scope="session")
def packages(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PackageFactory:
    return package_factory(example_atlas_dir, tmp_path_factory.mktemp("packages"))


def _local_raw(root: Path) -> Callable[[str], bytes | None]:
    def read(name: str) -> bytes | None:
        path = root / name
        return path.read_bytes() if path.is_file() else None

    return read


def _local_drop(root: Path) -> Callable[[str], None]:
    def drop(name: str) -> None:
        (root / name).unlink()

    return drop


#: The request log of each moto server process, by its URL.
MOTO_LOGS: dict[str, Path] = {}


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server process (moto's standalone server) on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    log = log_path.open("wb")
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    MOTO_LOGS[url] = log_path  # its request log, for tests that count requests
    try:
        _wait_for(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("moto server exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def _s3_backend(moto_url: str, bucket: str) -> Backend:
    import boto3

    options = {"key": "testing", "secret": "testing", "endpoint_url": moto_url}
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)

    def raw(name: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=f"atlases/{name}")["Body"].read()  # type: ignore[no-any-return]
        except client.exceptions.NoSuchKey:
            return None

    def drop(name: str) -> None:
        client.delete_object(Bucket=bucket, Key=f"atlases/{name}")

    repo = S3Repository(f"s3://{bucket}/atlases", **options)
    return Backend(repo, raw, drop)


@pytest.fixture(params=["local", "http", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    root = tmp_path / "repo"
    if request.param == "local":
        yield Backend(LocalRepository(root), _local_raw(root), _local_drop(root))
    elif request.param == "http":
        token_file = tmp_path / "config" / "tokens.json"
        token = TokenStore(token_file).add("maintainer")
        with (
            serve_in_thread(root, token_file=token_file) as url,
            HttpRepository(url, token=token) as repo,
        ):
            yield Backend(repo, _local_raw(root), _local_drop(root))
    else:
        moto_url = request.getfixturevalue("moto_url")
        yield _s3_backend(moto_url, f"bucket-{uuid.uuid4().hex[:12]}")


def snapshot(backend: Backend) -> dict[str, bytes | None]:
    names = ["index.json", "last_versions.conf", "latest_versions.conf", "index.html"]
    return {name: backend.raw(name) for name in names}


def test_new_repository_is_empty(backend: Backend) -> None:
    assert backend.repo.read_index().names() == []
    with pytest.raises(AtlasNotFoundError, match="index.json"):
        backend.repo.open_file("index.json")


def test_publish_stores_archive_index_and_conf(backend: Backend, packages: PackageFactory) -> None:
    archive = packages()
    entry = backend.repo.publish(archive)
    assert (entry.atlas_name, entry.version) == ("allen_mouse_100um", "1.2")
    assert entry.sha256 == sha256_file(archive)
    assert entry.size == archive.stat().st_size
    assert entry.metadata["species"] == "Mus musculus"
    assert entry.metadata["structures"] == len(json.loads(backend.raw(entry.structures or "")))
    assert backend.raw(entry.archive) == archive.read_bytes()
    stored = json.loads(backend.raw("index.json") or b"")
    assert stored["atlases"]["allen_mouse_100um"]["versions"]["1.2"]["sha256"] == entry.sha256
    for conf in ("last_versions.conf", "latest_versions.conf"):
        parser = configparser.ConfigParser()
        parser.read_string((backend.raw(conf) or b"").decode())
        assert dict(parser["atlases"]) == {"allen_mouse_100um": "1.2"}
    assert b"allen_mouse_100um" in (backend.raw("index.html") or b"")
    assert backend.repo.read_index().entry("allen_mouse_100um") == entry
    with backend.repo.open_file(entry.archive) as stream:
        assert stream.read() == archive.read_bytes()


def test_published_version_is_immutable(backend: Backend, packages: PackageFactory) -> None:
    backend.repo.publish(packages())
    before = snapshot(backend)
    with pytest.raises(AtlasExistsError, match="already published"):
        backend.repo.publish(packages())
    assert snapshot(backend) == before


def test_newer_version_becomes_latest_and_yank_restores(
    backend: Backend, packages: PackageFactory
) -> None:
    backend.repo.publish(packages(version="1.2"))
    backend.repo.publish(packages(version="1.10"))
    assert b"allen_mouse_100um = 1.10" in (backend.raw("last_versions.conf") or b"")
    yanked = backend.repo.yank("allen_mouse_100um", "1.10", reason="bad annotation")
    assert yanked.yanked
    index = backend.repo.read_index()
    assert index.entry("allen_mouse_100um").version == "1.2"
    assert index.entry("allen_mouse_100um", "1.10").yank_reason == "bad annotation"
    assert b"allen_mouse_100um = 1.2" in (backend.raw("latest_versions.conf") or b"")
    assert backend.raw("allen_mouse_100um_v1.10.tar.gz") is not None  # still downloadable
    with pytest.raises(AtlasNotFoundError):
        backend.repo.yank("allen_mouse_100um", "7.0")


def test_unyank_offers_a_version_again_and_yanking_again_keeps_the_reason(
    backend: Backend, packages: PackageFactory
) -> None:
    name = "allen_mouse_100um"
    backend.repo.publish(packages(version="1.2"))
    backend.repo.publish(packages(version="1.10"))
    backend.repo.yank(name, "1.10", reason="bad annotation")
    assert backend.repo.yank(name, "1.10").yank_reason == "bad annotation"  # no reason: kept
    assert backend.repo.read_index().entry(name, "1.10").yank_reason == "bad annotation"
    page = (backend.raw(f"atlases/{name}.html") or b"").decode()
    assert "yanked: bad annotation" in page
    entry = backend.repo.unyank(name, "1.10")
    assert (entry.yanked, entry.yank_reason) == (False, None)
    index = backend.repo.read_index()
    assert index.entry(name).version == "1.10"
    assert b"allen_mouse_100um = 1.10" in (backend.raw("last_versions.conf") or b"")
    assert b"allen_mouse_100um = 3.10" in (backend.raw("atlas/atlases/last_versions.conf") or b"")
    assert "yanked" not in (backend.raw(f"atlases/{name}.html") or b"").decode()
    assert backend.raw(".atlasmith-journal.json") is None
    before = snapshot(backend)
    assert backend.repo.unyank(name, "1.10") == entry  # not yanked: nothing changes
    assert snapshot(backend) == before
    with pytest.raises(AtlasNotFoundError, match="7.0"):
        backend.repo.unyank(name, "7.0")
    assert snapshot(backend) == before


def test_yank_in_a_missing_repository_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "atlsaes"
    for change in (
        lambda: LocalRepository(typo).yank("allen_mouse_100um", "1.2", "x"),
        lambda: LocalRepository(typo).unyank("allen_mouse_100um", "1.2"),
    ):
        with pytest.raises(AtlasNotFoundError, match="No atlas 'allen_mouse_100um'"):
            change()
    assert not typo.exists()


def _tampered(valid_folder: Path, work: Path) -> Path:
    folder = work / "tampered_mouse_100um_v1.0"
    shutil.copytree(valid_folder, folder)
    _rename(folder, "tampered_mouse", "1.0")
    write_manifest(folder, {})
    with (folder / "structures.csv").open("a") as stream:
        stream.write("\n")
    return make_archive(folder, work)


def _incomplete(valid_folder: Path, work: Path) -> Path:
    folder = work / "incomplete_mouse_100um_v1.0"
    shutil.copytree(valid_folder, folder)
    _rename(folder, "incomplete_mouse", "1.0")
    (folder / "annotation.tiff").unlink()
    write_manifest(folder, {})
    return make_archive(folder, work)


def _not_a_package(valid_folder: Path, work: Path) -> Path:
    (work / "notes.txt").write_text("hello")
    path = work / "notes_mouse_100um_v1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(work / "notes.txt", arcname="notes.txt")
    return path


def _misnamed(valid_folder: Path, work: Path) -> Path:
    return shutil.copyfile(_incomplete(valid_folder, work), work / "Allen Mouse.tar.gz")


def _rename(folder: Path, name: str, version: str) -> None:
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.update(name=name, version=version)
    (folder / "metadata.json").write_text(json.dumps(metadata))


def test_a_lost_index_is_an_error_never_an_empty_repository(
    backend: Backend, packages: PackageFactory
) -> None:
    backend.repo.publish(packages(version="1.1"))
    backend.repo.publish(packages(version="1.2"))
    backend.drop("index.json")
    before = snapshot(backend)
    # publishing (a new version, or a published one again), or yanking, changes nothing
    for attempt in (
        lambda: backend.repo.publish(packages(version="1.3")),
        lambda: backend.repo.publish(packages(version="1.2")),
        lambda: backend.repo.yank("allen_mouse_100um", "1.2", reason="x"),
    ):
        with pytest.raises(RepositoryError, match="index was lost or damaged"):
            attempt()
        assert snapshot(backend) == before
    assert backend.raw("allen_mouse_100um_v1.3.tar.gz") is None


@pytest.mark.parametrize(
    ("make_bad", "error", "reason"),
    [
        (_tampered, IntegrityError, "does not match its manifest"),
        (_incomplete, ValidationError, "annotation"),
        (_not_a_package, ArchiveError, "top-level folder"),
        (_misnamed, ArchiveError, "not an atlas archive name"),
    ],
)
def test_bad_archive_is_refused_and_nothing_changes(
    backend: Backend,
    packages: PackageFactory,
    tmp_path: Path,
    make_bad: Callable[[Path, Path], Path],
    error: type[AtlasmithError],
    reason: str,
) -> None:
    backend.repo.publish(packages())
    before = snapshot(backend)
    bad = make_bad(packages.valid_folder, tmp_path)
    with pytest.raises(error, match=reason):
        backend.repo.publish(bad)
    assert snapshot(backend) == before
    assert backend.raw(bad.name) is None


def test_concurrent_publishes_of_different_atlases_lose_nothing(
    backend: Backend, packages: PackageFactory
) -> None:
    names = [f"concurrent{i}_mouse" for i in range(8)]
    archives = [packages(name=name) for name in names]
    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = list(pool.map(backend.repo.publish, archives))
    assert {e.atlas_name for e in entries} == {f"{n}_100um" for n in names}
    index = backend.repo.read_index()
    assert index.names() == sorted(f"{n}_100um" for n in names)
    parser = configparser.ConfigParser()
    parser.read_string((backend.raw("last_versions.conf") or b"").decode())
    assert set(parser["atlases"]) == set(index.names())


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", ".atlasmith-index.lock", ""])
def test_names_outside_the_layout_are_refused(backend: Backend, name: str) -> None:
    with pytest.raises(RepositoryError):
        backend.repo.open_file(name)


def test_open_repository_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_repository(tmp_path), LocalRepository)
    assert isinstance(open_repository(f"file://{tmp_path}"), LocalRepository)
    with open_repository("https://atlases.example.org/") as http:
        assert isinstance(http, HttpRepository)
    assert isinstance(open_repository("s3://bucket/atlases"), S3Repository)
    with pytest.raises(RepositoryError, match="unsupported"):
        open_repository("ftp://example.org/atlases")


def test_publish_and_yank_commands(packages: PackageFactory, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atlasmith.cli import main

    runner = CliRunner()
    root = str(tmp_path / "repo")
    archive = str(packages())
    published = runner.invoke(main, ["publish", archive, "--to", root, "--new-repository"])
    assert published.exit_code == 0, published.output
    assert sha256_file(archive) in published.output
    again = runner.invoke(main, ["publish", archive, "--to", root])
    assert again.exit_code == 1
    assert "already published" in again.output
    yank = ["yank", "allen_mouse_100um", "1.2", "--to", root]
    yanked = runner.invoke(main, [*yank, "--reason", "wrong orientation"])
    assert yanked.exit_code == 0, yanked.output
    assert "yanked allen_mouse_100um 1.2 (wrong orientation)" in yanked.output
    assert LocalRepository(root).read_index().entry("allen_mouse_100um", "1.2").yanked
    again = runner.invoke(main, yank)  # no --reason: the reason stays
    assert "(wrong orientation)" in again.output
    for bad, problem in (("two\nlines", "one line"), ("x" * 1001, "1000 at most")):
        refused = runner.invoke(main, [*yank, "--reason", bad])
        assert refused.exit_code == 2
        assert problem in refused.output
    entry = LocalRepository(root).read_index().entry("allen_mouse_100um", "1.2")
    assert entry.yank_reason == "wrong orientation"
    missing = runner.invoke(main, ["yank", "allen_mouse_100um", "9.9", "--to", root])
    assert missing.exit_code == 1
    assert "available: 1.2" in missing.output
    undone = runner.invoke(main, ["unyank", "allen_mouse_100um", "1.2", "--to", root])
    assert undone.exit_code == 0, undone.output
    assert "allen_mouse_100um 1.2 is offered again; the latest version is 1.2" in undone.output
    assert not LocalRepository(root).read_index().entry("allen_mouse_100um", "1.2").yanked


def test_publish_release_yank_and_unyank_need_a_destination(
    packages: PackageFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a valid token set and the download repository pointing at a real server that
    would accept it, nothing is sent there without --to or ATLASMITH_PUBLISH_TO."""
    from click.testing import CliRunner

    from atlasmith.cli import main

    served, token_file = tmp_path / "downloads", tmp_path / "config" / "tokens.json"
    LocalRepository(served).publish(packages(version="1.1"))
    monkeypatch.setenv("ATLASMITH_TOKEN", TokenStore(token_file).add("maintainer"))
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    archive = str(packages(version="1.2"))
    runner = CliRunner()
    with serve_in_thread(served, token_file=token_file) as url:
        monkeypatch.setenv("ATLASMITH_REPOSITORY", url)
        before = {p: p.read_bytes() for p in served.rglob("*") if p.is_file()}
        for args in (
            ["publish", archive],
            ["publish", archive, "--new-repository"],
            ["release", str(scripts)],
            ["yank", "allen_mouse_100um", "1.1"],
            ["unyank", "allen_mouse_100um", "1.1"],
        ):
            refused = runner.invoke(main, args)
            assert refused.exit_code == 1, args
            (line,) = refused.output.splitlines()
            assert "No repository to publish to: pass --to REPO" in line
            assert "ATLASMITH_PUBLISH_TO" in line
        assert {p: p.read_bytes() for p in served.rglob("*") if p.is_file()} == before
    configured = tmp_path / "configured"
    LocalRepository(configured).publish(packages(version="1.1"))
    monkeypatch.setenv("ATLASMITH_PUBLISH_TO", str(configured))
    done = runner.invoke(main, ["publish", archive])
    assert done.exit_code == 0, done.output
    assert LocalRepository(configured).read_index().entry("allen_mouse_100um").version == "1.2"
    assert runner.invoke(main, ["--help"]).exit_code == 0
    shown = runner.invoke(main, ["publish", "--help"]).output
    assert "ATLASMITH_PUBLISH_TO" in shown
    assert "--new-repository" in shown


def test_a_mistyped_destination_is_refused_unless_new_repository(
    packages: PackageFactory, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from atlasmith.cli import main

    runner = CliRunner()
    archive = str(packages(version="1.2"))
    typo = tmp_path / "srv" / "atlsaes"
    for args in (
        ["publish", archive, "--to", str(typo)],
        ["release", str(tmp_path), "--to", str(typo)],
        ["yank", "allen_mouse_100um", "1.2", "--to", str(typo)],
        ["unyank", "allen_mouse_100um", "1.2", "--to", str(typo)],
    ):
        refused = runner.invoke(main, args)
        assert refused.exit_code == 1, args
        (line,) = refused.output.splitlines()
        assert f"{typo} is not an atlas repository: it has no index.json" in line
        assert "--new-repository" in line
    assert not (tmp_path / "srv").exists()
    created = runner.invoke(main, ["publish", archive, "--to", str(typo), "--new-repository"])
    assert created.exit_code == 0, created.output
    more = runner.invoke(main, ["publish", str(packages(version="1.1")), "--to", str(typo)])
    assert more.exit_code == 0, more.output  # a repository now: no flag needed
    # through atlasmith serve: a served folder without index.json gets no upload either
    token_file = tmp_path / "config" / "tokens.json"
    token = TokenStore(token_file).add("maintainer")
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve_in_thread(empty, token_file=token_file) as url:
        publish = ["publish", archive, "--to", url, "--token", "-"]
        refused = runner.invoke(main, publish, input=token)
        assert refused.exit_code == 1
        assert f"{url} is not an atlas repository" in refused.output
        assert list(empty.iterdir()) == []
        done = runner.invoke(main, [*publish, "--new-repository"], input=token)
        assert done.exit_code == 0, done.output
    assert LocalRepository(empty).read_index().entry("allen_mouse_100um").version == "1.2"


def test_local_publish_waits_for_the_lock_then_gives_up(
    packages: PackageFactory, tmp_path: Path
) -> None:
    from filelock import FileLock

    from atlasmith.repository._local import LOCK_NAME

    root = tmp_path / "repo"
    root.mkdir()
    repo = LocalRepository(root, lock_timeout=0.2)
    with FileLock(root / LOCK_NAME), pytest.raises(RepositoryError, match="holds the lock"):
        repo.publish(packages())
    assert repo.read_index().names() == []
    assert not list(root.glob("*.tar.gz"))


def test_s3_lock_object_blocks_and_a_stale_one_is_broken(
    moto_url: str, packages: PackageFactory
) -> None:
    backend = _s3_backend(moto_url, f"bucket-{uuid.uuid4().hex[:12]}")
    repo = backend.repo
    assert isinstance(repo, S3Repository)
    repo.fs.pipe_file(f"{repo.root}/.atlasmith-index.lock", b"{}")  # another publisher
    repo.lock_timeout = 0.3
    with pytest.raises(RepositoryError, match="Another publish holds"):
        repo.publish(packages())
    assert backend.raw("index.json") is None
    repo.lock_ttl = 0  # the other publisher is gone: its lock is abandoned
    repo.lock_timeout = 30
    assert repo.publish(packages()).atlas_name == "allen_mouse_100um"
    assert backend.raw(".atlasmith-index.lock") is None


def test_http_repository_reads_from_a_plain_static_server(
    packages: PackageFactory, tmp_path: Path
) -> None:
    """Any static web server can serve a repository: here Python's own http.server."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "repo"
    entry = LocalRepository(root).publish(packages())
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            with HttpRepository(url) as repo:
                assert repo.read_index().entry("allen_mouse_100um") == entry
                with repo.open_file(entry.archive) as stream:
                    assert hashlib.sha256(stream.read()).hexdigest() == entry.sha256
                assert repo.read_bytes("nothing.json") is None
                with pytest.raises(AuthenticationError, match="needs a member's token"):
                    repo.publish(packages())
        finally:
            server.shutdown()
            thread.join()


def test_preview_is_stored_beside_the_archive(
    backend: Backend, packages: PackageFactory, tmp_path: Path
) -> None:
    import matplotlib.pyplot as plt
    import tifffile

    reference = tifffile.imread(packages.valid_folder / "reference.tiff")
    png = tmp_path / "preview.png"
    plt.imsave(png, reference[66], cmap="gray")
    if isinstance(backend.repo, HttpRepository):  # the server takes it from the package
        with pytest.raises(RepositoryError, match="preview.png"):
            backend.repo.publish(packages(), preview=png)
        return
    entry = backend.repo.publish(packages(), preview=png)
    assert entry.preview == "previews/allen_mouse_100um_v1.2.png"
    assert backend.raw(entry.preview) == png.read_bytes()
    with pytest.raises(ArchiveError, match="not a PNG"):
        backend.repo.publish(packages(version="1.3"), preview=packages.valid_folder / "README.txt")


def test_s3_missing_bucket_is_a_clear_error(moto_url: str, packages: PackageFactory) -> None:
    repo = S3Repository(
        f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/atlases",
        key="testing",
        secret="testing",
        endpoint_url=moto_url,
    )
    assert repo.read_index().names() == []
    with pytest.raises(RepositoryError, match="bucket exists"):
        repo.publish(packages())


def test_an_archive_of_too_many_members_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    import io
    import tarfile

    from atlasmith.limits import MAX_ARCHIVE_MEMBERS

    archive = tmp_path / "allen_mouse_100um_v1.2.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for i in range(MAX_ARCHIVE_MEMBERS + 10):
            info = tarfile.TarInfo(f"allen_mouse_100um_v1.2/f{i}")
            tar.addfile(info, io.BytesIO(b""))
    root = tmp_path / "repo"
    repo = LocalRepository(root)
    with pytest.raises(ArchiveError, match=f"past the limit of {MAX_ARCHIVE_MEMBERS} members"):
        repo.publish(archive)
    written = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert written == []  # refused while reading the headers: no file was extracted
