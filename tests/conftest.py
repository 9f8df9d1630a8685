"""Shared fixtures: every test gets its own cache and config folders, and the real bundled
Allen 100 um atlas is available as a BrainGlobe-format folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "allen_mouse_100um"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point every user-level folder (cache, config, BrainGlobe's config) at a temporary place."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("ATLASMITH_CACHE_DIR", str(home / ".brainglobe"))
    monkeypatch.setenv("BRAINGLOBE_CONFIG_DIR", str(home / ".config" / "brainglobe"))
    for var in ("ATLASMITH_REPOSITORY", "ATLASMITH_OFFLINE", "ATLASMITH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture(scope="session")
def bundled_data() -> Path:
    """The project's own real data: data/allen_mouse_100um."""
    return DATA


@pytest.fixture(scope="session")
def example_atlas_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundled real Allen 100 um atlas as a BrainGlobe v1.2 folder (read-only use)."""
    from atlasmith.demo import write_example_atlas

    parent = tmp_path_factory.mktemp("example")
    yield write_example_atlas(parent)
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def example_atlas_copy(example_atlas_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the example atlas folder that a test may modify."""
    target = tmp_path / example_atlas_dir.name
    shutil.copytree(example_atlas_dir, target)
    return target


# --- the client's repository on loopback (tests of the cache and of its CLI) --------------


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, example_atlas_dir: Path) -> dict[str, Path]:
    """Real packages of the bundled Allen atlas, versions 1.1 and 1.2."""
    from test_download import make_package

    work = tmp_path_factory.mktemp("packages")
    name = "allen_mouse_100um"
    return {v: make_package(example_atlas_dir, work / v, name, v) for v in ("1.1", "1.2")}


@pytest.fixture
def repo(tmp_path: Path, packages: dict[str, Path]) -> Iterator[Any]:
    """A repository with version 1.1 only, served on loopback."""
    from test_download import RepoServer, write_repository

    server = RepoServer(write_repository(tmp_path / "repo", [packages["1.1"]])).start()
    yield server
    server.stop()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "jail" / "cache"
