"""Verification that cannot be downgraded: a repository that once served hashes is never read
without them again; one that never did needs the user's explicit permission; every install
checks the manifest and installs the version the index named, or nothing."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlasmith.cache import AtlasCache
from atlasmith.cli import main
from atlasmith.config import load_settings
from atlasmith.errors import IntegrityError, RepositoryError
from atlasmith.package import make_archive, sha256_file
from test_download import RepoServer, write_repository

NAME = "allen_mouse_100um"


def _cache(server: RepoServer, cache_dir: Path, **settings: object) -> AtlasCache:
    base = load_settings(repository=server.url, cache_dir=cache_dir)
    return AtlasCache(type(base)(**{**base.__dict__, **settings}))


def _tampered(package: Path, work: Path) -> Path:
    """``package`` with one annotation byte changed (its manifest left as it was)."""
    work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(package) as tar:
        tar.extractall(work, filter="data")
    folder = next(p for p in work.iterdir() if p.is_dir())
    annotation = folder / "annotation.tiff"
    data = bytearray(annotation.read_bytes())
    data[-1] ^= 0x01
    annotation.write_bytes(bytes(data))
    archive = make_archive(folder, work / "out")
    shutil.rmtree(folder)
    return archive


def _hide_index(root: Path, how: str) -> None:
    (root / "index.json").unlink()
    if how == "folder":
        (root / "index.json").mkdir()


def _serve_tampered_update(root: Path, packages: dict[str, Path], tmp_path: Path) -> None:
    """What an attacker who can make index.json answer 404 serves: a tampered 1.2 announced
    by last_versions.conf only."""
    tampered = _tampered(packages["1.2"], tmp_path / "tamper")
    shutil.copyfile(tampered, root / tampered.name)
    for conf in ("last_versions.conf", "latest_versions.conf"):
        (root / conf).write_text(f"[atlases]\n{NAME} = 1.2\n")


@pytest.mark.parametrize("how", ["404", "folder"])
def test_a_verified_repository_is_never_read_without_hashes_again(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path], tmp_path: Path, how: str
) -> None:
    installed = _cache(repo, cache_dir).fetch(NAME)
    assert installed.version == "1.1"
    _hide_index(repo.root, how)
    _serve_tampered_update(repo.root, packages, tmp_path)
    for allowed in (False, True):  # not even when the user allows unverified repositories
        with pytest.raises(IntegrityError, match="served a verified index"):
            _cache(repo, cache_dir, allow_unverified=allowed).update(NAME)
    assert _cache(repo, cache_dir).find(NAME) == installed  # 1.1, untouched
    assert not any(f"{NAME}_v1.2" in p for p, _ in repo.log)  # the archive was never fetched
    result = CliRunner().invoke(
        main,
        ["update", NAME, "--repository", repo.url, "--cache-dir", str(cache_dir),
         "--allow-unverified"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "served a verified index" in result.output
    assert isinstance(result.exception, SystemExit)  # a reported error, not a crash


def test_a_repository_without_hashes_needs_permission(
    repo: RepoServer, cache_dir: Path, tmp_path: Path
) -> None:
    (repo.root / "index.json").unlink()  # like GIN: last_versions.conf only, no hashes
    with pytest.raises(RepositoryError, match="--allow-unverified"):
        _cache(repo, cache_dir).fetch(NAME)
    assert not cache_dir.joinpath(f"{NAME}_v1.1").exists()
    with pytest.warns(UserWarning, match="no sha256"):
        assert _cache(repo, cache_dir, allow_unverified=True).fetch(NAME).version == "1.1"
    # per repository in the config file, and per command on the command line
    config = tmp_path / "config.toml"
    config.write_text(f'allow_unverified = ["{repo.url}/"]\n')
    settings = load_settings(repository=repo.url, cache_dir=cache_dir, config_file=config)
    assert settings.allows_unverified()
    other = load_settings(repository="https://elsewhere.example/", config_file=config)
    assert not other.allows_unverified()
    fresh = tmp_path / "fresh"
    args = ["install", NAME, "--repository", repo.url, "--cache-dir", str(fresh)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert "--allow-unverified" in refused.output
    assert isinstance(refused.exception, SystemExit)  # a reported error, not a crash
    with pytest.warns(UserWarning, match="no sha256"):
        allowed = CliRunner().invoke(main, [*args, "--allow-unverified"])
    assert allowed.exit_code == 0, allowed.output
    assert (fresh / f"{NAME}_v1.1").is_dir()
    (repo.root / "last_versions.conf").write_text("<html>504 Gateway Time-out</html>")
    with pytest.raises(Exception, match="not a versions file"):
        _cache(repo, tmp_path / "third", allow_unverified=True).index()


def test_the_installed_version_is_the_one_the_index_named(
    packages: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    # a mislabelled archive: published as 1.2 (its hash in the index) but holding 1.1
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copyfile(packages["1.1"], root / f"{NAME}_v1.2.tar.gz")
    write_repository(root, [root / f"{NAME}_v1.2.tar.gz"])
    server = RepoServer(root).start()
    try:
        with pytest.raises(IntegrityError, match="holds version 1.1 of .* but version 1.2"):
            _cache(server, cache_dir).fetch(NAME)
    finally:
        server.stop()
    assert not any(p.name.startswith(NAME) for p in cache_dir.iterdir())


def test_the_manifest_is_checked_on_every_install(
    packages: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    # the publisher's own bytes (index and archive agree) but the files not its manifest's
    tampered = _tampered(packages["1.1"], tmp_path / "tamper")
    root = write_repository(tmp_path / "repo", [tampered])
    assert json.loads((root / "index.json").read_text())["atlases"][NAME]["versions"]["1.1"][
        "sha256"
    ] == sha256_file(tampered)
    server = RepoServer(root).start()
    try:
        with pytest.raises(IntegrityError, match="does not match its own manifest"):
            _cache(server, cache_dir).fetch(NAME)
    finally:
        server.stop()
    assert not (cache_dir / f"{NAME}_v1.1").exists()
    with pytest.raises(IntegrityError, match="does not match its own manifest"):
        _cache(server, tmp_path / "local").install_archive(tampered)  # a local file too
