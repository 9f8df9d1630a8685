"""The client cache against a real repository served on loopback: install, use, update,
offline, hostile and corrupt archives, recovery, BrainGlobeAtlas and fetch."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from atlasmith.atlas import Atlas
from atlasmith.brainglobe import BrainGlobeAtlas, fetch
from atlasmith.cache import AtlasCache, InstalledAtlas, plan
from atlasmith.cli._client import status_rows
from atlasmith.config import load_settings
from atlasmith.errors import (
    ArchiveError,
    AtlasExistsError,
    AtlasNotFoundError,
    IntegrityError,
    OfflineError,
    YankedVersionWarning,
)
from atlasmith.package import verify_folder
from atlasmith.repository import CONF_NAMES, RepositoryIndex
from test_archive import HOSTILE_CAP, HOSTILE_REASONS, hostile_archives, tree_snapshot
from test_download import Fault, RepoServer, make_package, write_repository

NAME = "allen_mouse_100um"


def make_cache(server: RepoServer | str, cache_dir: Path, **extra: object) -> AtlasCache:
    url = server if isinstance(server, str) else server.url
    return AtlasCache(load_settings(repository=url, cache_dir=cache_dir), **extra)  # type: ignore[arg-type]


def assert_clean_state(cache_dir: Path) -> None:
    """No partial download, staging or trash left behind."""
    state = cache_dir / ".atlasmith"
    for sub in ("downloads", "staging", "trash"):
        leftovers = [p for p in (state / sub).rglob("*") if p.is_file() or not any(p.iterdir())]
        assert [p for p in leftovers if p.is_file()] == [], sub


# --- pure decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "wanted", "latest", "upgrade", "expected"),
    [
        (None, None, "1.2", False, ("install", "1.2")),
        (None, "1.1", "1.2", False, ("install", "1.1")),
        ("1.1", None, "1.2", False, ("use", "1.1")),
        ("1.1", None, "1.2", True, ("update", "1.2")),
        ("1.2", None, "1.2", True, ("use", "1.2")),
        ("1.2", "1.1", "1.2", False, ("update", "1.1")),
        ("1.1", None, None, True, ("use", "1.1")),
        ("1.3", None, "1.2", True, ("use", "1.3")),  # never downgraded (1.3 yanked since)
        ("1.3", "1.2", "1.2", False, ("update", "1.2")),  # unless asked for exactly
    ],
)
def test_plan(
    installed: str | None,
    wanted: str | None,
    latest: str | None,
    upgrade: bool,
    expected: tuple[str, str],
) -> None:
    decided = plan(installed, wanted, latest, upgrade)
    assert (decided.action, decided.version) == expected
    if installed is not None:
        assert plan(installed, installed, latest, False, force=True).action == "update"


def test_brainglobe_versions_file_compares_numerically(tmp_path: Path) -> None:
    conf = "[atlases]\nallen_mouse_25um = 1.10\n"
    index = RepositoryIndex.from_conf(conf, "test")
    assert not index.verified  # BrainGlobe's file has no hashes
    assert index.latest("allen_mouse_25um").version == "1.10"  # type: ignore[union-attr]
    with pytest.raises(AtlasNotFoundError, match="not a valid atlas name"):
        index.entry("nope_10um", None)
    rows = status_rows([InstalledAtlas("x_mouse_10um", "1.0", tmp_path)], index)
    assert [(r.atlas_name, r.downloaded, r.latest_version) for r in rows] == [
        ("allen_mouse_25um", False, "1.10"),
        ("x_mouse_10um", True, None),
    ]


# --- installing and using ------------------------------------------------------------------


def test_fetch_installs_once_then_uses_the_cache(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    cache = make_cache(repo, cache_dir)
    seen: list[tuple[int, int]] = []
    installed = cache.fetch(NAME, progress=lambda done, total: seen.append((done, total)))
    assert installed.path == cache_dir / f"{NAME}_v1.1"
    assert installed.has_manifest
    assert verify_folder(installed.path) == []
    assert seen[-1] == (packages["1.1"].stat().st_size,) * 2
    assert (cache_dir / "last_versions.conf").read_text() == f"[atlases]\n{NAME} = 1.1\n"
    assert_clean_state(cache_dir)
    assert len(repo.gets(f"{NAME}_v1.1.tar.gz")) == 1
    repo.stop()  # the second call must not need the network
    again = make_cache("http://127.0.0.1:9/", cache_dir).fetch(NAME)
    assert again == installed


def test_installed_atlas_is_readable_by_brainglobe_itself(
    repo: RepoServer, cache_dir: Path
) -> None:
    from brainglobe_atlasapi.core import Atlas as BrainGlobeCoreAtlas
    from brainglobe_atlasapi.list_atlases import get_downloaded_atlases

    installed = make_cache(repo, cache_dir).fetch(NAME)
    theirs = BrainGlobeCoreAtlas(installed.path)
    ours = Atlas(installed.path)
    assert theirs.metadata == ours.metadata
    assert np.array_equal(theirs.annotation, ours.annotation)
    import brainglobe_atlasapi.list_atlases as bg_list

    original = bg_list.config.get_brainglobe_dir
    bg_list.config.get_brainglobe_dir = lambda: cache_dir  # type: ignore[assignment]
    try:
        assert get_downloaded_atlases() == [NAME]
    finally:
        bg_list.config.get_brainglobe_dir = original  # type: ignore[assignment]


def test_unknown_atlas_and_version(repo: RepoServer, cache_dir: Path) -> None:
    cache = make_cache(repo, cache_dir)
    with pytest.raises(AtlasNotFoundError, match="not a valid atlas name") as caught:
        cache.fetch("nope_mouse_10um")
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, ValueError)  # as BrainGlobe raises ValueError
    assert NAME in str(caught.value)
    with pytest.raises(AtlasNotFoundError, match="no version '9.9'"):
        cache.fetch(NAME, "9.9")
    assert cache.installed() == []


@pytest.mark.parametrize("name", ["../../escape_10um", "/tmp/x_10um", ".hidden_10um", "a/b", ""])
def test_names_that_are_paths_are_refused_before_touching_the_disk(
    name: str, repo: RepoServer, cache_dir: Path, tmp_path: Path
) -> None:
    cache_dir.mkdir(parents=True)
    (tmp_path / "jail" / "precious.txt").write_text("keep me")
    cache = make_cache(repo, cache_dir)
    for action in (cache.fetch, cache.update, cache.remove, cache.verify):
        with pytest.raises(ValueError, match="not a valid atlas name"):
            action(name)
    assert tree_snapshot(tmp_path / "jail") == {"cache", "precious.txt"}
    assert repo.log == []


def test_explicit_version_replaces_the_installed_one(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path
) -> None:
    server = RepoServer(write_repository(tmp_path / "r", list(packages.values()))).start()
    try:
        cache = make_cache(server, cache_dir)
        assert cache.fetch(NAME).version == "1.2"
        assert cache.fetch(NAME, "1.1").version == "1.1"
        assert [a.version for a in cache.installed()] == ["1.1"]
    finally:
        server.stop()


def test_yanked_versions_are_skipped_unless_named(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path
) -> None:
    root = write_repository(tmp_path / "r", list(packages.values()), yanked=(f"{NAME}_v1.2",))
    server = RepoServer(root).start()
    try:
        cache = make_cache(server, cache_dir)
        assert cache.index().latest(NAME).version == "1.1"  # type: ignore[union-attr]
        assert cache.fetch(NAME).version == "1.1"
        assert make_cache(server, cache_dir).update(NAME)[0] == "use"
        with pytest.warns(YankedVersionWarning, match="asked for exactly"):
            assert make_cache(server, cache_dir).fetch(NAME, "1.2").version == "1.2"
    finally:
        server.stop()


def yank_in(root: Path, version: str, reason: str | None) -> None:
    """Yank a version of a repository folder as a repository's yank writes it: index.json
    from the index model, the .conf files rendered from it."""
    index = RepositoryIndex.from_json((root / "index.json").read_bytes())
    index = index.with_yanked(NAME, version, reason)
    (root / "index.json").write_bytes(index.to_json())
    for name in CONF_NAMES:
        (root / name).write_text(index.render_conf())


def _unpinned_requests(server: RepoServer, cache_dir: Path) -> tuple[Callable[[], object], ...]:
    """Every way to ask for an atlas without a version: cache fetch and update, fetch,
    BrainGlobeAtlas."""
    return (
        lambda: make_cache(server, cache_dir).fetch(NAME),
        lambda: make_cache(server, cache_dir).update(NAME),
        lambda: fetch(NAME),
        lambda: BrainGlobeAtlas(NAME, check_latest=False),
    )


def _serve_all_yanked(
    tmp_path: Path,
    packages: dict[str, Path],
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    reason_1_1: str | None,
) -> RepoServer:
    """A served repository of NAME 1.1 and 1.2, both yanked (1.2 for "wrong orientation"),
    set as the user's repository with ``cache_dir`` as the cache."""
    root = write_repository(tmp_path / "r", list(packages.values()))
    yank_in(root, "1.1", reason_1_1)
    yank_in(root, "1.2", "wrong orientation")
    server = RepoServer(root).start()
    monkeypatch.setenv("ATLASMITH_REPOSITORY", server.url)
    monkeypatch.setenv("ATLASMITH_CACHE_DIR", str(cache_dir))
    return server


def test_every_version_yanked_is_installed_only_when_named_exactly(
    tmp_path: Path,
    packages: dict[str, Path],
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = _serve_all_yanked(tmp_path, packages, cache_dir, monkeypatch, None)
    try:
        for unpinned in _unpinned_requests(server, cache_dir):
            with pytest.raises(AtlasNotFoundError) as raised:
                unpinned()
            message = str(raised.value)
            assert "1.2 (wrong orientation), 1.1 (no reason given)" in message
            assert f"`atlasmith install {NAME} --version 1.2`" in message
            assert "version None" not in message
        assert make_cache(server, cache_dir).installed() == []
        with pytest.warns(YankedVersionWarning) as warned:
            atlas = fetch(NAME, "1.2")
        (warning,) = warned
        assert str(warning.message) == (
            f"{NAME} 1.2 is yanked: wrong orientation. It is installed because it was asked for "
            f"exactly. Every version of {NAME} is yanked."
        )
        assert warning.filename == __file__  # points at the caller's line
        assert atlas.metadata["version"] == "1.2"
        # an update keeps it, saying why, and BrainGlobeAtlas opens it without a download
        with pytest.warns(YankedVersionWarning, match=r"1.2 \(installed\) is yanked: wrong"):
            action, kept = make_cache(server, cache_dir).update(NAME)
        assert (action, kept.version) == ("use", "1.2")
        downloads = server.gets(f"{NAME}_v1.2.tar.gz")
        assert BrainGlobeAtlas(NAME, check_latest=False).metadata["version"] == "1.2"
        assert server.gets(f"{NAME}_v1.2.tar.gz") == downloads
    finally:
        server.stop()


def test_an_unpinned_install_of_an_all_yanked_atlas_leaves_nothing_but_the_index(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before the lock is taken, as a misspelt name is: no lock file, no staging."""
    server = _serve_all_yanked(tmp_path, packages, cache_dir, monkeypatch, "superseded")
    try:
        for unpinned in _unpinned_requests(server, cache_dir):
            with pytest.raises(AtlasNotFoundError, match="Every version of"):
                unpinned()
            left = {str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*")}
            # the repository's index as read (its copy for BrainGlobe, the verified mark)
            index = {".atlasmith/index.json", ".atlasmith/verified.json", "last_versions.conf"}
            assert left == {".atlasmith", *index}, left  # no locks/, no staging/
        assert server.gets(f"{NAME}_v1.2.tar.gz") == server.gets(f"{NAME}_v1.1.tar.gz") == []
    finally:
        server.stop()


def test_check_latest_version_compares_by_order_with_the_non_yanked_latest(
    tmp_path: Path,
    example_atlas_dir: Path,
    packages: dict[str, Path],
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An installed version that was yanked, with only an older version kept, is the latest
    there is (``update`` never downgrades): True, with the yank's reason; once a newer version
    is published, False. BrainGlobe's ``==`` said False, then "update", which did nothing."""
    newest = make_package(example_atlas_dir, tmp_path / "pkg", NAME, "1.10")
    root = write_repository(tmp_path / "r", list(packages.values()))
    server = RepoServer(root).start()
    monkeypatch.setenv("ATLASMITH_REPOSITORY", server.url)
    try:
        atlas = BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir)  # installs 1.2
        assert atlas.check_latest_version() is True
        yank_in(root, "1.2", "wrong orientation")
        capsys.readouterr()
        atlas = BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir, check_latest=False)
        assert (atlas.local_version, atlas.remote_version) == ((1, 2), (1, 1))
        assert atlas.check_latest_version() is True  # 1.2 > 1.1: nothing to update to
        err = capsys.readouterr().err
        assert "is not the latest" not in err
        assert f"{NAME} 1.2 (installed) is yanked: wrong orientation. No newer version" in err
        assert f"`atlasmith install {NAME} --version 1.1`" in err
        assert atlas.check_latest_version(print_warning=False) is True
        assert capsys.readouterr().err == ""
        # 1.10 published: newer than 1.2 by number (a string compare says "1.10" < "1.2")
        write_repository(root, [*packages.values(), newest], yanked=(f"{NAME}_v1.2",))
        atlas = BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir, check_latest=False)
        assert atlas.remote_version == (1, 10)
        assert atlas.check_latest_version() is False
        err = capsys.readouterr().err
        assert f"{NAME} version 1.2 is not the latest available (1.10)" in err
        assert f"{NAME} 1.2 (installed) is yanked: no reason given." in err
    finally:
        server.stop()


def test_update_never_downgrades_a_yanked_install(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path
) -> None:
    server = RepoServer(write_repository(tmp_path / "r", list(packages.values()))).start()
    try:
        assert make_cache(server, cache_dir).fetch(NAME).version == "1.2"
        yank_in(server.root, "1.2", "bad annotation")
        cache = make_cache(server, cache_dir)
        (row,) = status_rows(cache.installed(), cache.index())
        assert (row.local_version, row.latest_version, row.yanked, row.yank_reason) == (
            "1.2",
            "1.1",
            True,
            "bad annotation",
        )
        with pytest.warns(YankedVersionWarning) as warned:
            action, atlas = cache.update(NAME)
        assert (action, atlas.version) == ("use", "1.2")
        assert [a.version for a in cache.installed()] == ["1.2"]
        assert str(warned[0].message) == (
            f"{NAME} 1.2 (installed) is yanked: bad annotation. No newer version is published, "
            f"so it stays installed. To use version 1.1: `atlasmith install {NAME} --version 1.1`."
        )
        # a yanked install moves on when a newer version is offered: 1.1 yanked, 1.2 not
        write_repository(server.root, list(packages.values()))
        assert make_cache(server, cache_dir).fetch(NAME, "1.1").version == "1.1"
        yank_in(server.root, "1.1", "superseded")
        action, atlas = make_cache(server, cache_dir).update(NAME)  # no warning: errors here
        assert (action, atlas.version) == ("update", "1.2")
        assert [a.version for a in cache.installed()] == ["1.2"]
        assert_clean_state(cache_dir)
    finally:
        server.stop()


def test_update_replaces_the_old_version_after_verifying_the_new(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    cache = make_cache(repo, cache_dir)
    cache.fetch(NAME)
    assert make_cache(repo, cache_dir).update(NAME)[0] == "use"
    write_repository(repo.root, [packages["1.1"], packages["1.2"]])
    action, atlas = make_cache(repo, cache_dir).update(NAME)
    assert (action, atlas.version) == ("update", "1.2")
    assert [a.path.name for a in cache.installed()] == [f"{NAME}_v1.2"]
    assert Atlas(atlas.path).metadata["version"] == "1.2"
    assert_clean_state(cache_dir)


@pytest.mark.parametrize("failure", ["server_error", "bit_flip", "html_page", "hostile"])
def test_failed_update_leaves_the_old_version_working(
    failure: str, repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    old = make_cache(repo, cache_dir).fetch(NAME)
    write_repository(repo.root, [packages["1.1"], packages["1.2"]])
    new_archive = repo.root / f"{NAME}_v1.2.tar.gz"
    if failure == "server_error":
        repo.faults["/" + new_archive.name] = Fault(status=500)
    elif failure == "bit_flip":
        data = bytearray(new_archive.read_bytes())
        data[len(data) // 3] ^= 0x04
        new_archive.write_bytes(bytes(data))
    elif failure == "html_page":
        repo.faults["/" + new_archive.name] = Fault(body=b"<html>502 Bad Gateway</html>")
    else:  # a hostile archive published with its own (matching) hash
        new_archive.write_bytes(hostile_archives()["symlink_out"]())
        write_repository(repo.root, [packages["1.1"], new_archive])
    cache = make_cache(repo, cache_dir)
    cache.settings = replace(cache.settings, retries=2)
    with pytest.raises((ConnectionError, IntegrityError, ArchiveError)):
        cache.update(NAME)
    assert cache.installed() == [old]
    assert verify_folder(old.path) == []
    assert Atlas(old.path).structure_from_coords((66, 40, 57)) > 0
    assert_clean_state(cache_dir)


@pytest.mark.parametrize("case", sorted(hostile_archives()))
def test_hostile_archive_from_the_repository_installs_nothing(
    case: str, tmp_path: Path, cache_dir: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    archive = root / f"{NAME}_v1.0.tar.gz"
    archive.write_bytes(hostile_archives()[case]())
    server = RepoServer(write_repository(root, [archive])).start()
    try:
        cache = make_cache(server, cache_dir, max_bytes=HOSTILE_CAP)
        with pytest.raises(ArchiveError, match=HOSTILE_REASONS[case]):
            cache.fetch(NAME)
    finally:
        server.stop()
    assert cache.installed() == []
    assert_clean_state(cache_dir)
    outside = tree_snapshot(tmp_path / "jail")
    assert all(p == "cache" or p.startswith("cache/") for p in outside)
    assert not (tmp_path / "escaped.txt").exists()


def test_archive_with_wrong_top_folder_is_refused(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copyfile(packages["1.1"], root / "other_mouse_100um_v1.1.tar.gz")
    server = RepoServer(write_repository(root, [root / "other_mouse_100um_v1.1.tar.gz"])).start()
    try:
        with pytest.raises(ArchiveError, match="holds the folder"):
            make_cache(server, cache_dir).fetch("other_mouse_100um")
    finally:
        server.stop()
    assert make_cache(server, cache_dir).installed() == []


@pytest.mark.parametrize("server_resumes", [True, False])
def test_a_partial_download_is_resumed_or_restarted(
    server_resumes: bool, repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    data = packages["1.1"].read_bytes()
    downloads = cache_dir / ".atlasmith" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / f"{NAME}_v1.1.tar.gz.part").write_bytes(data[: len(data) // 2])
    if not server_resumes:
        repo.faults[f"/{NAME}_v1.1.tar.gz"] = Fault(ignore_range=True)
    installed = make_cache(repo, cache_dir).fetch(NAME)
    assert verify_folder(installed.path) == []
    # a server that ignores Range sends the whole file, which is used: one request either way
    assert repo.gets(f"{NAME}_v1.1.tar.gz") == [f"bytes={len(data) // 2}-"]
    assert_clean_state(cache_dir)


def test_bit_flipped_download_fails_the_hash_and_installs_nothing(
    repo: RepoServer, cache_dir: Path
) -> None:
    archive = repo.root / f"{NAME}_v1.1.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-100] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 expected"):
        make_cache(repo, cache_dir).fetch(NAME)
    assert make_cache(repo, cache_dir).installed() == []
    assert_clean_state(cache_dir)


# --- offline ----------------------------------------------------------------------------------


def test_offline_uses_installed_atlases_and_names_what_needs_a_download(
    repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = make_cache(repo, cache_dir)
    online.fetch(NAME)
    requests = len(repo.log)
    monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    offline = make_cache(repo, cache_dir)
    assert offline.settings.offline
    assert offline.fetch(NAME).version == "1.1"
    offline.remove(NAME)
    with pytest.raises(OfflineError, match=f"Atlas {NAME} is not installed") as caught:
        offline.fetch(NAME)
    assert "MB" in str(caught.value)  # the size, from the cached index
    assert isinstance(caught.value, ConnectionError)
    assert offline.latest_version(NAME) == "1.1"  # from the cached index
    assert len(repo.log) == requests  # offline touched nothing


def test_a_damaged_cached_index_is_ignored(repo: RepoServer, cache_dir: Path) -> None:
    make_cache(repo, cache_dir).index()
    (cache_dir / ".atlasmith" / "index.json").write_text("<html>oops</html>")
    assert make_cache(repo, cache_dir).cached_index() is None
    assert make_cache(repo, cache_dir).fetch(NAME).version == "1.1"  # and rewritten online
    assert make_cache(repo, cache_dir).cached_index() is not None


def test_offline_without_any_cached_index(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    with pytest.raises(OfflineError, match="offline mode is on"):
        cache.fetch(NAME)
    with pytest.raises(OfflineError, match="no repository index is cached"):
        cache.index()


def test_a_repository_folder_works_offline(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    folder = write_repository(tmp_path / "usb", [packages["1.1"], packages["1.2"]])
    cache = make_cache(str(folder), cache_dir)
    assert cache.fetch(NAME).version == "1.2"
    assert verify_folder(cache.require(NAME).path) == []


# --- local archives and bundles ---------------------------------------------------------------


def test_install_archive_path(packages: dict[str, Path], cache_dir: Path) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    installed = cache.install_archive(packages["1.2"])
    assert installed.version == "1.2"
    assert verify_folder(installed.path) == []
    assert cache.install_archive(packages["1.1"]).version == "1.1"  # replaces, one version
    assert [a.version for a in cache.installed()] == ["1.1"]


@pytest.mark.parametrize("case", sorted(hostile_archives()))
def test_install_hostile_archive_path_installs_nothing(
    case: str, tmp_path: Path, cache_dir: Path
) -> None:
    archive = tmp_path / f"{NAME}_v1.0.tar.gz"
    archive.write_bytes(hostile_archives()[case]())
    cache = make_cache("http://127.0.0.1:9/", cache_dir, max_bytes=HOSTILE_CAP)
    with pytest.raises(ArchiveError):
        cache.install_archive(archive)
    assert cache.installed() == []
    assert all(p == "cache" or p.startswith("cache/") for p in tree_snapshot(tmp_path / "jail"))


def test_install_archive_checks_the_hash_of_a_known_version(
    repo: RepoServer, example_atlas_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    make_cache(repo, cache_dir).index()  # caches the index (1.1 with its sha256)
    altered = tmp_path / "altered" / example_atlas_dir.name
    shutil.copytree(example_atlas_dir, altered)
    (altered / "README.txt").write_text("not the published package\n")
    (tmp_path / "forged").mkdir()
    forged = make_package(altered, tmp_path / "forged", NAME, "1.1")  # same name and version
    with pytest.raises(IntegrityError, match="not the published"):
        make_cache(repo, cache_dir).install_archive(forged)
    assert make_cache(repo, cache_dir).installed() == []


def test_install_archive_checks_its_manifest(
    example_atlas_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    from atlasmith.package import make_archive, write_manifest

    folder = tmp_path / f"{NAME}_v1.5"
    shutil.copytree(example_atlas_dir, folder)
    write_manifest(folder, {})
    (folder / "README.txt").write_text("edited after the manifest was written\n")
    archive = make_archive(folder, tmp_path / "out")
    with pytest.raises(IntegrityError, match="does not match its own manifest"):
        make_cache("http://127.0.0.1:9/", cache_dir).install_archive(archive)


def test_install_bundle_folder(packages: dict[str, Path], tmp_path: Path, cache_dir: Path) -> None:
    bundle = write_repository(tmp_path / "bundle", [packages["1.1"], packages["1.2"]])
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    (installed,) = cache.install_bundle(bundle)
    assert installed.version == "1.2"
    with pytest.raises(Exception, match="not an offline bundle"):
        cache.install_bundle(tmp_path)


# --- layout problems and recovery ---------------------------------------------------------------


def test_two_installed_versions_is_a_file_exists_error(
    packages: dict[str, Path], cache_dir: Path
) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    first = cache.install_archive(packages["1.1"])
    shutil.copytree(first.path, cache_dir / f"{NAME}_v1.2")
    with pytest.raises(FileExistsError, match="Multiple versions"):
        cache.find(NAME)
    with pytest.raises(AtlasExistsError):
        cache.fetch(NAME)


def test_an_update_killed_between_the_two_renames_is_completed(
    repo: RepoServer, cache_dir: Path
) -> None:
    old = make_cache(repo, cache_dir).fetch(NAME, "1.1")
    new = cache_dir / f"{NAME}_v1.2"  # the new version, moved in before the old one goes
    shutil.copytree(old.path, new)
    journal = cache_dir / ".atlasmith" / "swaps" / f"{NAME}.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(json.dumps({"new": new.name, "old": old.path.name}))
    (cache_dir / ".atlasmith" / "staging" / NAME / ".extract-x" / "half").mkdir(parents=True)
    repo.stop()  # finishing the update needs no download
    cache = make_cache(repo, cache_dir)
    assert cache.fetch(NAME).path == new
    assert cache.installed() == [InstalledAtlas(NAME, "1.2", new)]
    assert not journal.exists()
    assert list((cache_dir / ".atlasmith" / "staging" / NAME).iterdir()) == []
    assert list((cache_dir / ".atlasmith" / "trash" / NAME).iterdir()) == []


def test_a_killed_remove_stays_removed(repo: RepoServer, cache_dir: Path) -> None:
    installed = make_cache(repo, cache_dir).fetch(NAME)
    trash = cache_dir / ".atlasmith" / "trash" / NAME
    half = trash / f"{installed.path.name}-0badcafe"
    installed.path.rename(half)  # `remove` killed while deleting: half the files are gone
    for mesh in list((half / "meshes").iterdir())[::2]:
        mesh.unlink()
    repo.stop()
    cache = make_cache(repo, cache_dir)
    cache.settings = replace(cache.settings, retries=1)
    assert cache.installed() == []
    with pytest.raises(ConnectionError):
        cache.fetch(NAME)  # not installed: it asks the (stopped) repository...
    assert cache.installed() == []  # ...and never brings the half-deleted folder back
    assert list(trash.iterdir()) == []


def test_remove_and_verify(repo: RepoServer, cache_dir: Path) -> None:
    cache = make_cache(repo, cache_dir)
    installed = cache.fetch(NAME)
    assert cache.verify(NAME) == []
    (installed.path / "structures.json").write_text("[]")
    assert any("structures.json" in p for p in cache.verify(NAME))
    assert cache.remove(NAME) == installed.path
    assert not installed.path.exists()
    with pytest.raises(AtlasNotFoundError, match="not installed"):
        cache.verify(NAME)


# --- BrainGlobe's API and fetch ----------------------------------------------------------------


def test_brainglobe_atlas_constructor_and_members(
    repo: RepoServer,
    cache_dir: Path,
    packages: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    updates: list[tuple[int, int]] = []
    atlas = BrainGlobeAtlas(
        NAME, brainglobe_dir=cache_dir, fn_update=lambda c, t: updates.append((c, t))
    )
    assert isinstance(atlas, Atlas)
    assert updates[-1][0] == updates[-1][1] == packages["1.1"].stat().st_size
    assert repr(atlas) == "allen mouse atlas (res. 100um)"
    assert atlas.atlas_name == NAME
    assert atlas.local_full_name == f"{NAME}_v1.1"
    assert atlas.local_version == (1, 1)
    assert atlas.remote_version == (1, 1)
    assert atlas.remote_url == f"{repo.url}{NAME}_v1.1.tar.gz"
    assert atlas.check_latest_version() is True
    assert "allen_mouse_100um" in str(atlas)
    assert atlas.structure_from_coords((66, 40, 57), as_acronym=True) != "Outside atlas"

    write_repository(repo.root, [packages["1.1"], packages["1.2"]])
    capsys.readouterr()
    newer = BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir)  # check_latest=True
    assert "is not the latest available (1.2)" in capsys.readouterr().err
    assert newer.check_latest_version(print_warning=False) is False
    assert newer.local_version == (1, 1)


def test_version_check_with_the_repository_down_is_quick_and_uses_the_cache(
    repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_cache(repo, cache_dir).fetch(NAME)  # caches the index
    repo.stop()
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    atlas = BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir, check_latest=False)
    assert atlas.remote_version == (1, 1)  # one failed attempt, then the cached index
    assert atlas.check_latest_version() is True


def test_brainglobe_atlas_downloads_into_interm_download_dir(
    repo: RepoServer, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    interm = tmp_path / "interm"
    BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir, interm_download_dir=interm, check_latest=False)
    assert interm.is_dir()
    assert list(interm.iterdir()) == []  # the archive went there and was removed after install
    assert not (cache_dir / ".atlasmith" / "downloads").exists()


def test_brainglobe_atlas_unknown_name_is_a_value_error(
    repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    with pytest.raises(ValueError, match="nonexistent_10um is not a valid atlas name"):
        BrainGlobeAtlas("nonexistent_10um", brainglobe_dir=cache_dir)


def test_brainglobe_atlas_reads_brainglobe_config_file(
    repo: RepoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    conf = tmp_path / "bg_config.conf"
    target = tmp_path / "from_bg_conf"
    conf.write_text(f"[default_dirs]\nbrainglobe_dir = {target}\ninterm_download_dir = {target}\n")
    atlas = BrainGlobeAtlas(NAME, config_dir=conf, check_latest=False)
    assert atlas.root_dir == target / f"{NAME}_v1.1"


def test_brainglobe_atlas_repairs_a_damaged_folder(
    repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    installed = make_cache(repo, cache_dir).fetch(NAME)
    (installed.path / "metadata.json").write_text("{broken")
    with pytest.warns(UserWarning, match="damaged"):
        atlas = BrainGlobeAtlas(NAME, brainglobe_dir=cache_dir, check_latest=False)
    assert atlas.metadata["name"] == "allen_mouse"
    assert verify_folder(installed.path) == []


def test_fetch_returns_an_atlas(
    repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_REPOSITORY", repo.url)
    monkeypatch.setenv("ATLASMITH_CACHE_DIR", str(cache_dir))
    atlas = fetch(NAME)
    assert isinstance(atlas, Atlas)
    assert atlas.root_dir == cache_dir / f"{NAME}_v1.1"
    assert json.loads((atlas.root_dir / "metadata.json").read_text())["version"] == "1.1"


def test_progress_callbacks_chain(tmp_path: Path) -> None:
    from atlasmith.progress import download_bar

    seen: list[tuple[int, int]] = []
    for enabled in (False, True):
        with download_bar("x", lambda c, t: seen.append((c, t)), enabled=enabled) as update:
            update(5, 10)
    assert seen == [(5, 10), (5, 10)]
    with download_bar("x", enabled=False) as update:
        update(1, 2)  # no callback: nothing to call, no error


def test_an_index_of_100k_atlases_installs_in_linear_time(
    packages: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    """The client's work grows linearly with the number of atlases in the index (it was
    quadratic: 20k atlases took 26 s and 100k never finished). The bound below is a guard
    against a hang, not a timing check; the time is printed."""
    import threading
    import time

    root = write_repository(tmp_path / "repo", [packages["1.1"]])
    index = json.loads((root / "index.json").read_text())
    entry = index["atlases"][NAME]["versions"]["1.1"]
    for i in range(100_000):
        other = f"atlas{i}_mouse_100um"
        index["atlases"][other] = {
            "versions": {"1.0": {**entry, "archive": f"{other}_v1.0.tar.gz"}}
        }
    (root / "index.json").write_text(json.dumps(index))
    server = RepoServer(root).start()
    done: list[InstalledAtlas] = []
    try:
        start = time.monotonic()
        worker = threading.Thread(
            target=lambda: done.append(make_cache(server, cache_dir).fetch(NAME))
        )
        worker.start()
        worker.join(300)
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    assert done, "the install did not finish in 300 s"
    assert done[0].version == "1.1"
    conf = (cache_dir / "last_versions.conf").read_text()
    assert conf.count("\n") == 100_002  # [atlases] and every atlas
    print(f"\ninstall from an index of 100,001 atlases: {elapsed:.1f} s")


def test_readers_keep_their_version_through_five_updates(
    packages: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    """An Atlas opened before updates keeps answering from the version it opened (every
    mesh, stack and table read while five updates run: no error); once it is closed, the next
    operation deletes that version."""
    import random
    import threading
    import time

    root = write_repository(tmp_path / "repo", [packages["1.1"], packages["1.2"]])
    server = RepoServer(root).start()
    errors: list[BaseException] = []
    reads = 0
    try:
        cache = make_cache(server, cache_dir, formats=("v1",))
        cache.fetch(NAME, "1.1")
        atlas = Atlas(cache_dir / f"{NAME}_v1.1")
        ids = [s["id"] for s in atlas.structures_list if atlas.files.mesh_path(s["id"]).exists()]
        expected = {sid: atlas.files.read_mesh(sid)[0].sum() for sid in ids[:20]}
        stop = threading.Event()

        def read() -> None:
            nonlocal reads
            rng = random.Random(0)
            while not stop.is_set():
                try:
                    sid = rng.choice(ids)
                    atlas.structures[sid]  # the table
                    atlas.files.load_mesh(sid)  # a mesh read lazily, as brainrender does
                    if sid in expected:
                        assert atlas.files.read_mesh(sid)[0].sum() == expected[sid]
                    json.loads((atlas.files.source / "metadata.json").read_text())
                    assert atlas.annotation[10, 10, 10] >= 0
                    reads += 1
                except BaseException as err:  # noqa: BLE001 - collected for the assertion
                    errors.append(err)
                time.sleep(0.001)  # leave the updates some of the GIL

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for version in ("1.2", "1.1", "1.2", "1.1", "1.2"):  # five updates, each a swap
                make_cache(server, cache_dir, formats=("v1",)).fetch(NAME, version)
        finally:
            stop.set()
            reader.join(60)
        assert errors == []
        assert reads > 0
        metadata = json.loads((atlas.files.source / "metadata.json").read_text())
        assert metadata["version"] == "1.1"  # the version it opened, moved aside but readable
        trash = cache_dir / ".atlasmith" / "trash" / NAME
        assert any(trash.iterdir())  # kept while read
        atlas.close()
        make_cache(server, cache_dir, formats=("v1",)).fetch(
            NAME, "1.1"
        )  # the next locked operation...
        assert list(trash.iterdir()) == []  # ...deletes what nobody reads any more
    finally:
        server.stop()
    print(f"\n{reads} reads during five updates, 0 errors")
