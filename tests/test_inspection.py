"""`atlasmith inspect` (atlasmith.inspection) on the real bundled Allen atlas: figures, mesh
checks and the self-contained HTML report, from a folder, an archive or an
installed name."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from atlasmith.cli import main
from atlasmith.errors import AtlasFormatError, AtlasNotFoundError
from atlasmith.inspection import (
    OUTPUT_FILES,
    atlas_folder,
    check_meshes,
    inspect_atlas,
    open_edges,
)
from atlasmith.meshes.obj import read_obj
from atlasmith.package import make_archive
from atlasmith.previews import load_atlas_files
from test_previews import shared_meshed_atlas


@pytest.fixture(scope="module")
def meshed(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real atlas plus closed root and top-level meshes (made from its annotation)."""
    return shared_meshed_atlas(example_atlas_dir, tmp_path_factory)


@pytest.fixture
def meshed_copy(meshed: Path, tmp_path: Path) -> Path:
    target = tmp_path / meshed.name
    shutil.copytree(meshed, target)
    return target


def _status(checks: list, acronym: str) -> str:  # type: ignore[type-arg]
    return next(c.status for c in checks if c.acronym == acronym)


def test_mesh_checks_find_each_kind_of_problem(meshed_copy: Path) -> None:
    atlas = load_atlas_files(meshed_copy)
    meshes = meshed_copy / "meshes"
    assert {_status(check_meshes(atlas), a) for a in ("root", "grey", "VS")} == {"ok"}
    vertices, faces = read_obj(meshes / "8.obj")
    shifted = vertices + np.array([10, 0, 0]) * atlas.resolution[0]
    _write_obj(meshes / "8.obj", shifted, faces)  # grey moved by 10 voxels
    _write_obj(meshes / "1009.obj", *read_obj(meshes / "1009.obj")[:1], faces[:0])  # empty
    v73, f73 = read_obj(meshes / "73.obj")
    _write_obj(meshes / "73.obj", v73, f73[5:])  # a hole
    (meshes / "382.obj").unlink()  # CA1 has voxels
    (meshes / "385.obj").write_text("v 1 2\n")  # VISp unreadable
    (meshes / "4242.obj").write_text("v 0 0 0\n")  # no such structure
    checks = check_meshes(atlas)
    assert _status(checks, "grey") == "misplaced"
    assert _status(checks, "fiber tracts") == "empty"
    assert _status(checks, "VS") == "open"
    assert _status(checks, "CA1") == "missing"
    assert _status(checks, "VISp") == "unreadable"
    assert _status(checks, "4242.obj") == "extra"
    assert _status(checks, "root") == "ok"
    assert _status(checks, "HY") == "open"  # BrainGlobe's own HY mesh has 89 boundary edges


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:  # type: ignore[type-arg]
    lines = [f"v {x} {y} {z}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def test_open_edges_merges_repeated_vertices() -> None:
    # a tetrahedron written with its own three vertices per face is still closed
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    tris = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    vertices = corners[tris.ravel()]
    faces = np.arange(12).reshape(4, 3)
    assert open_edges(vertices, faces) == 0
    assert open_edges(vertices, faces[:3]) == 3


def test_inspect_folder_writes_a_self_contained_report(meshed: Path, tmp_path: Path) -> None:
    out = tmp_path / "inspection"
    result = inspect_atlas(meshed, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert result.report == out / "report.html"
    for png in (result.sections, result.meshes):
        assert png.read_bytes().startswith(b"\x89PNG")
        assert png.stat().st_size > 20_000
    html = result.report.read_text()
    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert all(s.startswith(("data:", "http://", "https://")) for s in sources), sources
    assert html.count('src="data:image/png;base64,') == 2
    assert '<a href="https://doi.org/10.1016/j.cell.2020.04.007"' in html
    assert "trasform_to_bg" in html  # every metadata key is shown
    structures = json.loads((meshed / "structures.json").read_text())
    assert f"{len(structures)} structures" in html
    assert "Largest regions" in html
    assert "mesh_files" in html  # the validation results (a check of atlasmith.validation)
    assert result.validation_ok is False  # most structures have no mesh in this copy
    assert "missing" in html
    assert result.mesh_problems
    assert not list(tmp_path.glob(".inspection.*"))


def test_inspect_archive(meshed: Path, tmp_path: Path) -> None:
    archive = make_archive(meshed, tmp_path)
    result = inspect_atlas(archive, tmp_path / "from-archive")
    assert result.report.is_file()
    assert f"Inspection of {meshed.name}" in result.report.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name, "from-archive"]


def test_installed_names_resolve_to_the_newest_cached_version(
    meshed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    for version in ("1.2", "1.10"):
        shutil.copytree(meshed, cache / f"allen_mouse_100um_v{version}", dirs_exist_ok=True)
    monkeypatch.setenv("ATLASMITH_CACHE_DIR", str(cache))
    with atlas_folder("allen_mouse_100um") as folder:
        assert folder == cache / "allen_mouse_100um_v1.10"
    with atlas_folder("allen_mouse_100um_v1.2") as folder:
        assert folder == cache / "allen_mouse_100um_v1.2"
    with (
        pytest.raises(AtlasNotFoundError, match="atlasmith install allen_mouse_25um"),
        atlas_folder("allen_mouse_25um"),
    ):
        pass
    with (
        pytest.raises(AtlasNotFoundError, match="check the path"),
        atlas_folder(str(tmp_path / "missing" / "x.tar.gz")),
    ):
        pass


def test_failed_inspection_leaves_nothing(example_atlas_copy: Path, tmp_path: Path) -> None:
    stack = tifffile.imread(example_atlas_copy / "annotation.tiff")
    tifffile.imwrite(example_atlas_copy / "annotation.tiff", stack[:-1])
    with pytest.raises(AtlasFormatError, match="same shape"):
        inspect_atlas(example_atlas_copy, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [example_atlas_copy]


def test_cli_inspect_and_rerun(meshed: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    runner = CliRunner()
    result = runner.invoke(main, ["inspect", str(meshed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report:   {out / 'report.html'}" in result.output
    assert "validation: FAILED" in result.output
    first = (out / "sections.png").stat().st_ino
    inspect_atlas(meshed, out)  # over a previous inspection: replaced
    assert (out / "sections.png").stat().st_ino != first
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    refused = runner.invoke(main, ["inspect", str(meshed), "--out", str(other)])
    assert refused.exit_code == 1
    assert "not a previous inspection output" in refused.output
    assert [p.name for p in other.iterdir()] == ["mine.txt"]
    bad = runner.invoke(main, ["inspect", str(tmp_path / "nothing_10um")])
    assert bad.exit_code == 1
    assert "is not a folder, not a .tar.gz archive" in bad.output


def test_inspect_the_bundled_dsurqe_atlas_built_from_its_script(tmp_path: Path) -> None:
    """A second real atlas, with its own orientation ("ipl" sources), built by `build`."""
    from atlasmith.build import build_atlas
    from atlasmith.previews import read_panels

    repo = Path(__file__).resolve().parents[1]
    built = build_atlas(
        repo / "atlas_scripts" / "dsurqe_mouse.py", tmp_path, source_dir=repo / "data", workers=1
    )
    preview = built.folder / "preview.png"  # build wrote the package preview
    assert [p["plane"] for p in read_panels(preview)] == ["frontal", "sagittal", "horizontal"]
    result = inspect_atlas(built.archive, tmp_path / "inspection")
    assert result.validation_ok is True
    assert result.mesh_problems == ()
    assert len(result.mesh_checks) == len(list((built.folder / "meshes").glob("*.obj")))
    frontal = [p for p in read_panels(result.sections) if p["plane"] == "frontal"]
    assert {(p["top"], p["left"], p["first"]) for p in frontal} == {("dorsal", "right", "anterior")}
    html = result.report.read_text()
    assert "dsurqe_mouse" in html
    assert "All checks passed." in html


def test_unsafe_archive_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    import io
    import tarfile

    from atlasmith.errors import ArchiveError

    archive = tmp_path / "evil_mouse_100um_v1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"not an atlas"
        member = tarfile.TarInfo("../outside.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    result = CliRunner().invoke(main, ["inspect", str(archive), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    with pytest.raises(ArchiveError):
        inspect_atlas(archive, tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
