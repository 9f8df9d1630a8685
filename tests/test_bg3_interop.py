"""Interop with BrainGlobe 3.0.2 itself, both ways, in its own virtual environment (the
``bg3_python`` fixture makes it from PyPI; nothing is mocked and BrainGlobe is not patched,
except its packager's network check of ``atlas_link``).

1. BrainGlobe 3.0.2's client opens atlasmith's v3 build of the bundled Allen 100 um atlas from
   a local ``brainglobe_dir`` and agrees with ``atlasmith.Atlas``.
2. atlasmith reads a v3 atlas written by BrainGlobe 3.0.2's own ``wrapup_atlas_from_data`` and
   answers as 3.0.2 does; converted to v1.2, BrainGlobe 2.3.1 reads it the same way too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atlasmith import Atlas
from atlasmith.build import build_atlas
from atlasmith.convert import convert_atlas

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MASKS = ["CH", "CA1", "MOp"]  # CH and MOp are parents (of CTX/CNU..., of its layers)
MESHES = ["CH", "CA1", "MOp"]


def _ask_bg3(python: Path, request: dict[str, Any], work: Path) -> dict[str, Any]:
    """BrainGlobe 3.0.2's answers (tests/bg3/answers.py run in its venv)."""
    request_file, out = work / "request.json", work / "answers.npz"
    request_file.write_text(json.dumps(request))
    run = subprocess.run(
        [str(python), str(HERE / "bg3" / "answers.py"), str(request_file), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(out) as answers:
        return {key: answers[key] for key in answers.files}


def _points(shape: tuple[int, ...], work: Path, n: int = 10_000) -> tuple[np.ndarray, Path]:
    points = np.random.default_rng(7).integers(0, shape, size=(n, 3))
    path = work / "points.npy"
    np.save(path, points)
    return points, path


def _same_answers(ours: Atlas, theirs: dict[str, Any], points: np.ndarray) -> None:
    assert np.array_equal(theirs["ids"], ours.structure_from_coords(points))
    acronyms = ours.structure_from_coords(points, as_acronym=True)
    assert theirs["acronyms"].tolist() == acronyms.tolist()
    assert np.array_equal(theirs["annotation"], np.asarray(ours.annotation))
    assert np.array_equal(theirs["reference"], np.asarray(ours.reference))
    assert np.array_equal(theirs["hemispheres"], np.asarray(ours.hemispheres))
    ours_list = [
        {k: s[k] for k in ("acronym", "id", "name", "structure_id_path", "rgb_triplet")}
        for s in ours.files.structures_list
    ]
    assert sorted(json.loads(str(theirs["structures"])), key=lambda s: s["id"]) == sorted(
        ours_list, key=lambda s: s["id"]
    )


# --- 1. BrainGlobe 3.0.2 reads atlasmith's build ------------------------------------------------


def test_brainglobe3_opens_our_allen_build_unpatched(
    allen_all_build: Any, bg3_python: Path, tmp_path: Path
) -> None:
    brainglobe_dir = tmp_path / "brainglobe"
    shutil.copytree(allen_all_build.v3_manifest.parents[3], brainglobe_dir / "brainglobe-atlasapi")
    v3 = Atlas(brainglobe_dir / "brainglobe-atlasapi/atlases/allen_mouse_100um/3_2")
    v1 = Atlas(allen_all_build.folder)
    points, points_file = _points(v3.shape, tmp_path)
    request = {
        "brainglobe_dir": str(brainglobe_dir),
        "atlas": "allen_mouse_100um",
        "points": str(points_file),
        "masks": MASKS,
        "meshes": MESHES,
    }
    theirs = _ask_bg3(bg3_python, request, tmp_path)
    _same_answers(v3, theirs, points)
    _same_answers(v1, theirs, points)  # the v1.2 package of the same build agrees too
    assert json.loads(str(theirs["metadata"]))["resolution"] == [100.0, 100.0, 100.0]
    for name in MASKS:
        mask = theirs[f"mask_{name}"]
        assert mask.dtype == np.uint8
        assert mask.sum() > 0
        assert np.array_equal(mask, v3.get_structure_mask(name))
        assert np.array_equal(mask.astype(bool), v1.get_structure_mask(name) > 0)
    for name in MESHES:
        points_bg, cells_bg = theirs[f"mesh_points_{name}"], theirs[f"mesh_cells_{name}"]
        ours = v3.mesh_from_structure(name)
        assert np.abs(points_bg - ours.points).max() < 2e-3  # BrainGlobe decodes to float32
        assert np.array_equal(cells_bg, ours.cells[0].data)
        obj = v1.mesh_from_structure(name)  # the OBJ the Draco fragment was made from
        assert np.array_equal(cells_bg, obj.cells[0].data)
        assert np.abs(points_bg - obj.points).max() <= 0.1


# --- 2. atlasmith reads BrainGlobe 3.0.2's own package -----------------------------------------


@pytest.fixture(scope="module")
def bg3_package(tmp_path_factory: pytest.TempPathFactory, bg3_python: Path) -> Path:
    """The dsurqe 200 um atlas (real data, asymmetric) packaged by BrainGlobe 3.0.2's own
    ``wrapup_atlas_from_data``; returns its manifest."""
    work = tmp_path_factory.mktemp("bg3-package")
    built = build_atlas(REPO / "atlas_scripts" / "dsurqe_mouse.py", work / "v1", formats="v1")
    run = subprocess.run(
        [str(bg3_python), str(HERE / "bg3" / "package.py"), str(built.folder), str(work / "bg")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = work / "bg/brainglobe-atlasapi/atlases/dsurqe_mouse_200um/3_0/manifest.json"
    assert manifest.is_file(), run.stdout[-2000:]
    return manifest


def test_atlasmith_reads_brainglobe3s_own_package(
    bg3_package: Path, bg3_python: Path, tmp_path: Path
) -> None:
    ours = Atlas(bg3_package)
    assert ours.format == "brainglobe-v3"
    assert ours.files.files is None  # BrainGlobe lists no checksums
    points, points_file = _points(ours.shape, tmp_path)
    request = {"manifest": str(bg3_package), "points": str(points_file)}
    # a parent (CSF), a leaf ("third ventricle") and the root; BrainGlobe takes acronyms
    request |= {
        "masks": ["root", "CSF", "third ventricle"],
        "meshes": ["CSF", "GM", "third ventricle"],
    }
    theirs = _ask_bg3(bg3_python, request, tmp_path)
    _same_answers(ours, theirs, points)
    assert ours.metadata["symmetric"] is False
    for name in request["masks"]:
        assert np.array_equal(theirs[f"mask_{name}"], ours.get_structure_mask(name))
    for name in request["meshes"]:
        mesh = ours.mesh_from_structure(name)
        # BrainGlobe decodes to float32 (1 ulp at 10 mm is 0.001 um)
        assert np.abs(theirs[f"mesh_points_{name}"] - mesh.points).max() < 2e-3
        assert np.array_equal(theirs[f"mesh_cells_{name}"], mesh.cells[0].data)


def test_brainglobe3s_package_converts_for_brainglobe_2_3_1(
    bg3_package: Path, tmp_path: Path
) -> None:
    from brainglobe_atlasapi.core import Atlas as BG2Atlas  # 2.3.1, in this venv

    folder = convert_atlas(bg3_package, "v1", tmp_path / "v1")
    assert folder.name == "dsurqe_mouse_200um_v1.0"
    theirs, ours = BG2Atlas(folder), Atlas(bg3_package)
    points = np.random.default_rng(3).integers(0, ours.shape, size=(500, 3))
    assert [theirs.structure_from_coords(tuple(p)) for p in points] == list(
        ours.structure_from_coords(points)
    )
    assert np.array_equal(theirs.annotation, np.asarray(ours.annotation))
    assert np.array_equal(theirs.hemispheres, np.asarray(ours.hemispheres))
    for sid in (1000, 146):
        mesh = theirs.mesh_from_structure(sid)
        assert np.abs(mesh.points - ours.mesh_from_structure(sid).points).max() < 1e-3
    # and re-packaged as atlasmith's v3: the same atlas, now with every file's checksum
    manifest = convert_atlas(bg3_package, "v3", tmp_path / "v3")
    again = Atlas(manifest)
    assert again.files.files is not None
    assert np.array_equal(again.structure_from_coords(points), ours.structure_from_coords(points))


def test_brainglobe3_opens_what_the_cache_installs(
    packages: dict[str, Path], bg3_python: Path, tmp_path: Path
) -> None:
    from atlasmith.cache import AtlasCache
    from atlasmith.config import load_settings

    brainglobe_dir = tmp_path / "brainglobe"
    cache = AtlasCache(load_settings(repository="http://127.0.0.1:9/", cache_dir=brainglobe_dir))
    installed = cache.install_archive(packages["1.2"])  # a local archive, offline
    points, points_file = _points((132, 80, 114), tmp_path, n=2000)
    request = {
        "brainglobe_dir": str(brainglobe_dir),
        "atlas": "allen_mouse_100um",
        "points": str(points_file),
        "masks": ["CH"],
    }
    theirs = _ask_bg3(bg3_python, request, tmp_path)
    v1 = Atlas(installed.path)
    _same_answers(v1, theirs, points)
    assert np.array_equal(theirs["mask_CH"].astype(bool), v1.get_structure_mask("CH") > 0)
