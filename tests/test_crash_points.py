"""SIGKILL at every rename of publish, yank, unyank, upload and remove, then one more
operation: the repository (or the cache) is consistent and holds no hidden leftover (issue 19).

The killed runs are forked by a forkserver (one clean process with atlasmith imported), so
each costs the operation up to its crash point rather than an interpreter start; the upload
runs kill a real ``atlasmith serve`` process (``tests/crash_points.py`` as its launcher).
"""

from __future__ import annotations

import multiprocessing
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import crash_points
from atlasmith.cache import AtlasCache
from atlasmith.config import load_settings
from atlasmith.errors import AtlasExistsError
from atlasmith.formats import V3Atlas
from atlasmith.package import sha256_file
from atlasmith.repository import HttpRepository, LocalRepository
from atlasmith.repository._base import CONF_NAMES, V3_CONF
from atlasmith.repository._local import LOCK_NAME
from atlasmith.tokens import TokenStore
from atlasmith.web import render_site
from repo_helpers import PackageFactory, package_factory
from test_cache import assert_clean_state
from test_download import RepoServer, write_repository

NAME = "allen_mouse_100um"
TESTS = Path(__file__).parent
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["crash_points", "atlasmith.repository", "atlasmith.formats"])


@pytest.fixture(scope="module")
def packages(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PackageFactory:
    return package_factory(example_atlas_dir, tmp_path_factory.mktemp("packages"))


def _run(target: Callable[..., None], *args: Any) -> int | None:
    """Run ``target(*args)`` in a forked process; its exit code (-9: killed as armed)."""
    process = _FORKS.Process(target=target, args=args)
    process.start()
    process.join(timeout=300)
    return process.exitcode


def _crash_points(target: Callable[..., None], log: Path, *args: Any) -> int:
    """How many renames ``target`` makes when nothing kills it."""
    log.unlink(missing_ok=True)
    assert _run(target, 0, str(log), *args) == 0
    return crash_points.count(str(log))


def assert_consistent_repository(root: Path, published: dict[str, str]) -> set[str]:
    """The repository folder is what its index says, and nothing else: every indexed version
    whole (archive, structures, BrainGlobe 3 tree) with the bytes first published
    (``published``: sha256 by version), the pages and ``.conf`` files rendered from this index,
    no file of an unindexed version, no hidden entry but the lock. Returns the versions."""
    hidden = sorted(p.relative_to(root).as_posix() for p in root.rglob(".*") if p.name != LOCK_NAME)
    assert hidden == [], f"hidden leftovers: {hidden[:5]}"
    repository = LocalRepository(root)
    index = repository.read_index()
    wanted = {"index.json", *CONF_NAMES, V3_CONF}
    for name, page in render_site(index, repository.read_bytes).items():
        assert (root / name).read_bytes() == page, f"{name} was not rendered from this index"
        wanted.add(name)
    for name in CONF_NAMES:
        assert (root / name).read_text() == index.render_conf()
    assert (root / V3_CONF).read_text() == index.render_v3_conf()
    versions = set()
    optional = set()
    for atlas in index.names():
        for entry in index.versions(atlas):
            versions.add(entry.version)
            assert sha256_file(root / entry.archive) == entry.sha256 == published[entry.version]
            stem = entry.archive.removesuffix(".tar.gz")
            wanted |= {entry.archive, f"structures/{stem}.json"}
            optional.add(f"previews/{stem}.png")
            manifest = root / entry.v3["manifest"]
            assert sha256_file(manifest) == entry.v3["sha256"]
            v3 = V3Atlas(manifest)
            assert v3.problems() == []
            wanted.add(str(entry.v3["manifest"]))
            wanted |= {f"atlas/{relative}" for relative in v3.files or {}}
    stored = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != LOCK_NAME
    }
    assert sorted(stored - wanted - optional) == [], "files no index entry refers to"
    assert sorted(wanted - stored) == [], "indexed files missing"
    return versions


def _published(packages: PackageFactory, *versions: str) -> dict[str, str]:
    return {v: sha256_file(packages(version=v)) for v in versions}


def test_publish_killed_at_every_rename_then_one_more_operation(
    packages: PackageFactory, tmp_path: Path
) -> None:
    """Publishing 1.2 next to 1.1, killed before each of its renames (extraction, checks,
    the BrainGlobe 3 tree, the archive, the pages, the index, the ``.conf`` files), then
    one more operation: recovery alone (as ``atlasmith serve`` runs it at start), a yank, or
    the same publish again. Every time the repository is whole, with 1.2 published entirely
    or not at all, and nothing hidden left."""
    base = tmp_path / "base"
    LocalRepository(base).publish(packages(version="1.1"))
    archive = str(packages(version="1.2"))
    published = _published(packages, "1.1", "1.2")
    counted = tmp_path / "counted"
    shutil.copytree(base, counted)
    total = _crash_points(crash_points.publish_at, tmp_path / "renames.log", str(counted), archive)
    assert assert_consistent_repository(counted, published) == {"1.1", "1.2"}
    assert total > 30  # the check's extraction and tree, the stored files, index and confs
    seen: Counter[str] = Counter()
    for k in range(1, total + 1):
        root = tmp_path / f"killed-{k}"
        shutil.copytree(base, root)
        assert _run(crash_points.publish_at, k, None, str(root), archive) == -signal.SIGKILL
        repository = LocalRepository(root)
        if k % 3 == 0:
            repository.recover()
        elif k % 3 == 1:
            repository.yank(NAME, "1.1", "the next operation")
        else:
            try:
                repository.publish(archive)
            except AtlasExistsError:
                seen["published again refused: it was complete"] += 1
        versions = assert_consistent_repository(root, published)
        seen["with 1.2" if "1.2" in versions else "without 1.2"] += 1
        shutil.rmtree(root)
    assert seen["with 1.2"], seen
    assert seen["without 1.2"], seen


def test_yank_killed_at_every_rename_then_one_more_operation(
    packages: PackageFactory, tmp_path: Path
) -> None:
    """Yanking 1.2 (the latest), killed before each rename; then recovery or a publish: the
    ``.conf`` files and pages always agree with the index (a yanked version is never offered
    as latest once a next operation has run)."""
    base = tmp_path / "base"
    for version in ("1.1", "1.2"):
        LocalRepository(base).publish(packages(version=version))
    published = _published(packages, "1.1", "1.2", "1.3")
    yanked = k = 0
    for k, root in _killed_at_every_rename(base, tmp_path, crash_points.yank_at, "1.2"):
        if k % 2:
            LocalRepository(root).recover()
        else:
            LocalRepository(root).publish(packages(version="1.3"))
        assert assert_consistent_repository(root, published) >= {"1.1", "1.2"}
        index = LocalRepository(root).read_index()
        yanked += index.entry(NAME, "1.2").yanked
        latest = index.latest(NAME)
        assert latest is not None
        assert not latest.yanked
    assert 0 < yanked < k  # (k: every rename) killed both before and after the commit point


def _killed_at_every_rename(
    base: Path, tmp_path: Path, point: Callable[..., Any], version: str
) -> Iterator[tuple[int, Path]]:
    """``point`` (yanking or unyanking ``version``) on a copy of the repository ``base``,
    killed before each of its renames in turn: yields (k, the killed copy) for k = 1, 2, ...
    up to the number of renames, the copy removed once the caller is done with it."""
    counted = tmp_path / "counted"
    shutil.copytree(base, counted)
    total = _crash_points(point, tmp_path / "renames.log", str(counted), NAME, version)
    assert total >= 5  # the pages, index.json, then the three .conf files
    for k in range(1, total + 1):
        root = tmp_path / f"killed-{k}"
        shutil.copytree(base, root)
        assert _run(point, k, None, str(root), NAME, version) == -signal.SIGKILL
        yield k, root
        shutil.rmtree(root)


def test_unyank_killed_at_every_rename_then_one_more_operation(
    packages: PackageFactory, tmp_path: Path
) -> None:
    """Unyanking 1.2 (yanked, so 1.1 is offered), killed before each rename; then recovery or
    a yank of 1.1: the ``.conf`` files and pages agree with the index, 1.2 is offered again
    or still yanked with its reason, never half of each."""
    base = tmp_path / "base"
    for version in ("1.1", "1.2"):
        LocalRepository(base).publish(packages(version=version))
    LocalRepository(base).yank(NAME, "1.2", "before the crash test")
    published = _published(packages, "1.1", "1.2")
    offered = k = 0
    for k, root in _killed_at_every_rename(base, tmp_path, crash_points.unyank_at, "1.2"):
        if k % 2:
            LocalRepository(root).recover()
        else:
            LocalRepository(root).yank(NAME, "1.1", "the next operation")
        assert assert_consistent_repository(root, published) == {"1.1", "1.2"}
        entry = LocalRepository(root).read_index().entry(NAME, "1.2")
        offered += not entry.yanked
        expected_reason = None if not entry.yanked else "before the crash test"
        assert entry.yank_reason == expected_reason
    assert 0 < offered < k  # killed both before and after the commit point


# --- upload: the server process killed ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server(
    root: Path, token_file: Path, log: Path, kill_at: int | None = None, renames: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    serve = ["serve", str(root), "--port", str(port), "--token-file", str(token_file)]
    if kill_at is None:
        command = [sys.executable, "-m", "atlasmith", *serve]
    else:
        launcher = [str(TESTS / "crash_points.py"), str(kill_at), str(renames), "--"]
        command = [sys.executable, *launcher, *serve]
    out = log.open("ab")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_upload_killed_in_the_server_then_the_server_restarted(
    packages: PackageFactory, tmp_path: Path
) -> None:
    """``atlasmith serve`` SIGKILLed before a rename while it publishes an upload (a spread of
    its crash points: the upload's own folder, the check, the stored files, and every rename
    from the pages to the last ``.conf``), then started again: at start it finishes or rolls
    back the change and removes what the killed upload left; the repository is consistent,
    and the same upload through it then succeeds or is refused as already published."""
    token_file = tmp_path / "config" / "tokens.json"
    token = TokenStore(token_file).add("maintainer")
    base = tmp_path / "base"
    LocalRepository(base).publish(packages(version="1.1"))
    archive = packages(version="1.2")
    published = _published(packages, "1.1", "1.2")
    log = tmp_path / "server.log"
    renames = tmp_path / "renames.log"
    counted = tmp_path / "counted"
    shutil.copytree(base, counted)
    server, url = _start_server(counted, token_file, log, kill_at=0, renames=renames)
    try:
        with HttpRepository(url, token=token) as remote:
            remote.publish(archive)
    finally:
        _stop(server)
    total = crash_points.count(str(renames))
    assert total > 30
    _kill_mid_body(base, token_file, token, archive, log, tmp_path)
    points = sorted({*range(1, total - 6, 12), *range(total - 6, total + 1)})
    seen: Counter[str] = Counter()
    for k in points:
        root = tmp_path / f"killed-{k}"
        shutil.copytree(base, root)
        server, url = _start_server(root, token_file, log, kill_at=k, renames=tmp_path / "x.log")
        with HttpRepository(url, token=token) as remote, pytest.raises(Exception):  # noqa: B017, PT011 (the connection drops: any transport error)
            remote.publish(archive)
        assert server.wait(timeout=60) == -signal.SIGKILL
        server, url = _start_server(root, token_file, log)  # recovers at start
        try:
            versions = assert_consistent_repository(root, published)
            seen["with 1.2" if "1.2" in versions else "without 1.2"] += 1
            with HttpRepository(url, token=token) as remote:
                try:
                    remote.publish(archive)
                except AtlasExistsError:
                    assert "1.2" in versions
        finally:
            _stop(server)
        assert assert_consistent_repository(root, published) == {"1.1", "1.2"}
        shutil.rmtree(root)
    assert seen["with 1.2"], seen
    assert seen["without 1.2"], seen
    assert "an interrupted publish of allen_mouse_100um 1.2" in log.read_text()


def _kill_mid_body(
    base: Path, token_file: Path, token: str, archive: Path, log: Path, tmp_path: Path
) -> None:
    """Three servers SIGKILLed while an upload body is half received, each started again:
    what the uploads wrote is gone and the repository is unchanged."""
    root = tmp_path / "mid-body"
    shutil.copytree(base, root)
    data = archive.read_bytes()
    for _ in range(3):
        server, url = _start_server(root, token_file, log)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as upload:
            head = (
                f"PUT /atlases/{archive.name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            upload.sendall(head.encode() + data[: len(data) // 2])
            deadline = time.monotonic() + 30
            while not any(root.glob(".atlasmith-upload-*/*")):  # the body is being stored
                assert time.monotonic() < deadline
                time.sleep(0.02)
            server.kill()
            server.wait(timeout=30)
    assert any(root.glob(".atlasmith-upload-*"))  # three killed uploads' folders
    server, url = _start_server(root, token_file, log)
    _stop(server)
    assert assert_consistent_repository(root, _published_for(base)) == {"1.1"}


def _published_for(root: Path) -> dict[str, str]:
    index = LocalRepository(root).read_index()
    return {e.version: str(e.sha256) for name in index.names() for e in index.versions(name)}


# --- remove: the client's cache ----------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, packages: PackageFactory) -> Iterator[RepoServer]:
    archive = packages(name="allen_mouse", version="1.1")
    server = RepoServer(write_repository(tmp_path / "repo", [archive])).start()
    yield server
    server.stop()


def test_remove_killed_at_every_rename_then_install(served: RepoServer, tmp_path: Path) -> None:
    """``remove`` killed before each of its renames, then ``install``: the atlas is either
    still installed whole or installed again whole (never a half-deleted folder taken for an
    installed one), and the cache's working folders are empty."""
    cache_dir = tmp_path / "cache"

    def cache() -> AtlasCache:
        return AtlasCache(load_settings(repository=served.url, cache_dir=cache_dir))

    cache().fetch(NAME)
    total = _crash_points(crash_points.remove_at, tmp_path / "renames.log", str(cache_dir), NAME)
    assert total >= 1
    downloads = 0
    for k in range(1, total + 1):
        cache().fetch(NAME)
        before = len(served.log)
        assert _run(crash_points.remove_at, k, None, str(cache_dir), NAME) == -signal.SIGKILL
        installed = cache().install(NAME)[0]
        downloads += len(served.log) > before
        assert cache().verify(NAME) == []  # the v1.2 folder and its BrainGlobe 3 copy
        assert installed.version == "1.1"
        assert len(cache().installed_v3(NAME)) == 1
        assert_clean_state(cache_dir)
        assert not list((cache_dir / ".atlasmith" / "swaps").glob("*.json"))
        assert [p.name for p in cache_dir.iterdir() if p.name.startswith(".")] == [".atlasmith"]
    assert downloads >= 1  # some kills came after the atlas was gone
