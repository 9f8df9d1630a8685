"""The public namespace: complete, sorted, typed for users' type checkers."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import atlasmith


def test_all_is_sorted_and_complete() -> None:
    assert atlasmith.__all__ == sorted(atlasmith.__all__)
    for name in atlasmith.__all__:
        if name != "__version__":
            assert getattr(atlasmith, name) is not None


def test_errors_subclass_builtins() -> None:
    errors = importlib.import_module("atlasmith.errors")
    assert issubclass(errors.StructureNotFoundError, KeyError)
    assert issubclass(errors.CoordinateError, IndexError)
    assert issubclass(errors.AtlasExistsError, FileExistsError)
    import meshio

    assert issubclass(errors.MeshError, meshio.ReadError)


_LAZY_MESHIO = """
import sys
from pathlib import Path

import atlasmith.build, atlasmith.cli, atlasmith.meshes._engine, atlasmith.previews
from atlasmith import errors
from atlasmith.inputs import _supplied_meshes

assert _supplied_meshes(None, Path("atlas.py")) is None
print("meshio" in sys.modules)
import meshio

assert issubclass(errors.MeshError, meshio.ReadError)
"""


def test_building_imports_no_meshio() -> None:
    """MeshError subclasses meshio's ReadError and is made on first use: the engine, the
    build, the previews and a script without meshes of its own never import meshio (65 ms
    at every start)."""
    run = subprocess.run(
        [sys.executable, "-c", _LAZY_MESHIO], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


_USER_CODE = """
from pathlib import Path

from atlasmith import Atlas, BrainGlobeAtlas, fetch


def region_at(folder: Path) -> str:
    atlas = Atlas(folder)
    ids = atlas.structure_from_coords([[66, 40, 57]])
    return str(ids[0])


def first_use() -> Atlas:
    atlas: Atlas = BrainGlobeAtlas("allen_mouse_25um", check_latest=False)
    return fetch("allen_mouse_100um") if atlas.shape else atlas


reveal_type(fetch)
"""


def _mypy(tmp_path: Path, name: str, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / name).write_text(code)
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".c"), name]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_a_users_type_checker_sees_the_real_public_names(tmp_path: Path) -> None:
    """A user's code type-checks with mypy --strict against atlasmith's public names, which
    are real types (not Any), and a misspelt name is an error."""
    checked = _mypy(tmp_path, "user.py", _USER_CODE)
    assert checked.returncode == 0, checked.stdout
    assert 'Revealed type is "def (name: str' in checked.stdout  # not Any
    assert "-> atlasmith.atlas.Atlas" in checked.stdout
    typo = _mypy(tmp_path, "typo.py", "from atlasmith import fecth\n")
    assert typo.returncode == 1, typo.stdout
    assert 'Module "atlasmith" has no attribute "fecth"' in typo.stdout
