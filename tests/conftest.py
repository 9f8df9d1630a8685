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
    for var in (
        "ATLASMITH_REPOSITORY",
        "ATLASMITH_OFFLINE",
        "ATLASMITH_TOKEN",
        "ATLASMITH_PUBLISH_TO",
    ):
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


# --- BrainGlobe 3 (the v3 format's own client, in its own virtual environment) ----------------

BG3_VENV = REPO / ".venv-bg3"
BG3_CONSTRAINTS = REPO / "tests" / "bg3" / "constraints.txt"
BG3_REQUIREMENT = "brainglobe-atlasapi[atlasgen]==3.0.2"


@pytest.fixture(scope="session")
def bg3_python() -> Path:
    """Python of a virtual environment with BrainGlobe 3.0.2 and its packager (pinned by
    tests/bg3/constraints.txt), made on first use from PyPI and kept in .venv-bg3/ (a real
    install, never mocked; a failed install fails the tests that need it)."""
    import hashlib
    import subprocess
    import sys

    python = BG3_VENV / "bin" / "python"
    stamp = BG3_VENV / ".atlasmith-stamp"
    wanted = hashlib.sha256(BG3_CONSTRAINTS.read_bytes() + BG3_REQUIREMENT.encode()).hexdigest()
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(BG3_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(BG3_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-c", str(BG3_CONSTRAINTS), BG3_REQUIREMENT], check=True, timeout=1500)
    stamp.write_text(wanted)
    return python


@pytest.fixture(scope="session")
def allen_all_build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The bundled Allen script built at 100 um in both formats (read-only use): the v1.2
    folder and archive, and OUT/brainglobe-atlasapi/ (OUT is a brainglobe_dir)."""
    from atlasmith.build import build_atlas

    script = REPO / "atlas_scripts" / "allen_mouse.py"
    return build_atlas(script, tmp_path_factory.mktemp("allen-all"), workers=2)


# --- the browser tests' tools ---------------------------------------------------------------


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Install Chromium and axe-core when browser tests are collected and they are missing
    (tests/browser_setup.py): the README's test command alone passes on a fresh machine, and
    the browser tests are never skipped (a tool that cannot be installed stops the run)."""
    if not any(item.path.name == "test_web_browser.py" for item in items):
        return
    from browser_setup import ensure_browser_tools

    try:
        installed = ensure_browser_tools()
    except RuntimeError as err:
        raise pytest.UsageError(f"cannot run the browser tests: {err}") from err
    if installed:
        print(f"\ninstalled for the browser tests: {', '.join(installed)}")
