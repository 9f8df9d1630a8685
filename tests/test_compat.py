"""atlasmith.compat: a BrainGlobe-style atlas script runs by changing its imports, and produces
what BrainGlobe 2.3.1's own wrapup_atlas_from_data produces from the same inputs (minus its
bugs: validation gates, compress=False works, no network, meshes on the voxel grid)."""

from __future__ import annotations

import csv
import gc
import json
import warnings
from pathlib import Path
from typing import Any

import meshio
import nibabel as nib
import numpy as np
import pytest
import tifffile

from atlasmith.compat import construct_meshes_from_annotation, wrapup_atlas_from_data
from atlasmith.errors import AtlasExistsError, HierarchyError, ValidationError
from atlasmith.validation import validate_folder

DSURQE = Path(__file__).resolve().parents[1] / "data" / "mouse_dsurqe_ccf_200um"

# --- an atlas script in BrainGlobe's style (its template_script.py layout) ------------------

__version__ = 0
ATLAS_NAME = "dsurqe_bgstyle_mouse"
CITATION = "Dorr et al. 2008, https://doi.org/10.1016/j.neuroimage.2008.03.037"
SPECIES = "Mus musculus"
ATLAS_LINK = "https://www.mouseimaging.ca/research/mouse_atlas.html"
ORIENTATION = "ipl"
ROOT_ID = 999
RESOLUTION = 200
ATLAS_PACKAGER = "tester"


def retrieve_reference_and_annotation() -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(nib.load(DSURQE / "DSURQE_CCFv3_average_200um.mnc").dataobj)
    labels = np.asarray(nib.load(DSURQE / "DSURQE_CCFv3_labels_200um.mnc").dataobj)
    return reference, np.rint(labels).astype(np.uint32)


def _rows() -> list[dict[str, str]]:
    with open(DSURQE / "DSURQE_40micron_R_mapping_long.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["Label"] != "0"]


def retrieve_hemisphere_map() -> np.ndarray:
    """1 for voxels of "left ..." labels, 2 for "right ...", midline labels by position."""
    _, annotation = retrieve_reference_and_annotation()
    side = np.zeros(annotation.max() + 1, np.uint8)
    for row in _rows():
        side[int(row["Label"])] = {"left": 1, "right": 2}.get(row["Hemisphere"], 0)
    by_position = np.where(np.arange(annotation.shape[2]) < annotation.shape[2] / 2, 1, 2)
    hemispheres = side[annotation]
    return np.where(hemispheres == 0, by_position[None, None, :], hemispheres).astype(np.uint8)


def retrieve_structure_information() -> list[dict[str, Any]]:
    rows = _rows()
    root = {"acronym": "root", "id": ROOT_ID, "name": "root", "structure_id_path": [ROOT_ID],
            "rgb_triplet": [255, 255, 255]}  # fmt: skip
    return [root] + [
        {"acronym": f"L{r['Label']}", "id": int(r["Label"]), "name": r["Structure"].strip(),
         "structure_id_path": [ROOT_ID, int(r["Label"])], "rgb_triplet": [200, 100, 50]}
        for r in rows
    ]  # fmt: skip


def retrieve_or_construct_meshes(
    working_dir: Path, annotation: np.ndarray, structures: list[dict[str, Any]]
) -> dict[int, Path]:
    meshes_dir = working_dir / "mesh_temp_download"
    meshes_dir.mkdir(exist_ok=True)
    # decimate_fraction=1.0 (keep all): atlasmith's engine, when decimating, currently loses
    # labels of 2 to 5 voxels (reported to the mesh engine's owner); no closing, so that the
    # surfaces wrap exactly the labelled voxels (checked below)
    return construct_meshes_from_annotation(
        meshes_dir, annotation, structures, closing_n_iters=0, decimate_fraction=1.0, smooth=False
    )


def create_atlas(working_dir: Path, **options: Any) -> Path:
    reference, annotation = retrieve_reference_and_annotation()
    structures = retrieve_structure_information()
    meshes = retrieve_or_construct_meshes(working_dir, annotation, structures)
    return wrapup_atlas_from_data(
        atlas_name=ATLAS_NAME,
        atlas_minor_version=__version__,
        citation=CITATION,
        atlas_link=ATLAS_LINK,
        species=SPECIES,
        resolution=(RESOLUTION,) * 3,
        orientation=ORIENTATION,
        root_id=ROOT_ID,
        reference_stack=reference,
        annotation_stack=annotation,
        structures_list=structures,
        meshes_dict=meshes,
        working_dir=working_dir,
        atlas_packager=ATLAS_PACKAGER,
        hemispheres_stack=retrieve_hemisphere_map(),
        cleanup_files=False,
        scale_meshes=True,
        **options,
    )


def built_meshes(built: Path) -> dict[int, Path]:
    """The meshes create_atlas made (in save_path/meshes/, as BrainGlobe 2.3.1 places them)."""
    return {int(p.stem): p for p in (built.parent / "mesh_temp_download" / "meshes").glob("*.obj")}


# --- tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_atlas(tmp_path_factory.mktemp("compat"))


def test_brainglobe_style_script_builds(built: Path) -> None:
    assert built.name == "dsurqe_bgstyle_mouse_200um_v1.0.tar.gz"
    folder = built.parent / "dsurqe_bgstyle_mouse_200um_v1.0"
    assert validate_folder(folder).ok
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["shape"] == [67, 41, 58]
    assert (meta["orientation"], meta["symmetric"]) == ("asr", False)


def test_meshes_lie_on_the_voxel_grid(built: Path) -> None:
    folder = built.parent / "dsurqe_bgstyle_mouse_200um_v1.0"
    annotation = tifffile.imread(folder / "annotation.tiff")
    for sid in (51, 119, 174):  # a sided, a midline and a large region
        voxels = np.argwhere(annotation == sid) * 200.0
        points = meshio.read(folder / "meshes" / f"{sid}.obj").points
        # surfaces wrap the voxel centres: within a voxel of their bounding box
        assert np.all(np.abs(points.min(axis=0) - voxels.min(axis=0)) <= 200.0)
        assert np.all(np.abs(points.max(axis=0) - voxels.max(axis=0)) <= 200.0)


# treelib's save2file (inside BrainGlobe's create_readme) leaves its file handle open
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_same_output_as_brainglobe_wrapup(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests
    from brainglobe_atlasapi.atlas_generation import wrapup as bg_wrapup

    monkeypatch.setattr(requests, "get", lambda *a, **k: None)  # the machines are offline
    reference, annotation = retrieve_reference_and_annotation()
    structures = retrieve_structure_information()
    meshes = built_meshes(built)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        bg_wrapup.wrapup_atlas_from_data(
            ATLAS_NAME, __version__, CITATION, ATLAS_LINK, SPECIES, (RESOLUTION,) * 3,
            ORIENTATION, ROOT_ID, reference, annotation, structures, meshes, tmp_path,
            atlas_packager=ATLAS_PACKAGER, scale_meshes=True,
            hemispheres_stack=retrieve_hemisphere_map(),
        )  # fmt: skip
        # its README's file handle, left open, is closed here: collected later, its warning
        # could land in another phase or test (it failed one run, in 1,157 tests)
        gc.collect()
    ours = built.parent / "dsurqe_bgstyle_mouse_200um_v1.0"
    theirs = tmp_path / ours.name
    # our checks run on BrainGlobe's own packages too, and catch its one-voxel mesh shift
    report = validate_folder(theirs)
    assert [r.name for r in report.failures] == ["mesh_bounds"], report.render()
    assert "meshes outside the volume" in report.failures[0].message
    assert [r.message for r in report.results if r.name == "manifest"] == [
        "no manifest.json (not built by atlasmith): nothing to verify"
    ]
    for name in ("structures.json", "metadata.json", "structures.csv"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    for name in ("annotation.tiff", "hemispheres.tiff"):
        np.testing.assert_array_equal(tifffile.imread(ours / name), tifffile.imread(theirs / name))
    # BrainGlobe casts the float MRI average with astype (values above 65535 wrap, fractions
    # are cut); atlasmith rescales it onto 0..65535
    reference_theirs = tifffile.imread(theirs / "reference.tiff").astype(np.float64)
    reference_ours = tifffile.imread(ours / "reference.tiff").astype(np.float64)
    assert np.corrcoef(reference_ours.ravel(), reference_theirs.ravel())[0, 1] > 0.999
    assert reference_ours.max() == 65535
    readme_ours = (ours / "README.txt").read_text().splitlines()
    readme_theirs = (theirs / "README.txt").read_text().splitlines()
    assert readme_ours == [readme_theirs[0], *readme_theirs[2:]]  # no date (reproducible)
    # BrainGlobe flips points with the extent shape * resolution, one voxel past the last
    # voxel centre; atlasmith keeps voxel i at i * resolution on every axis (asr: axes 1 and 2
    # are flipped from "ipl")
    for sid in (51, 999):
        a = meshio.read(ours / "meshes" / f"{sid}.obj").points
        b = meshio.read(theirs / "meshes" / f"{sid}.obj").points
        np.testing.assert_allclose(a, b - 200.0, atol=0.01)


def test_compress_false_returns_the_folder_and_overwrite(built: Path, tmp_path: Path) -> None:
    meshes = built_meshes(built)
    reference, annotation = retrieve_reference_and_annotation()
    structures = retrieve_structure_information()
    args = (ATLAS_NAME, 0, CITATION, ATLAS_LINK, SPECIES, (200, 200, 200), ORIENTATION,
            ROOT_ID, reference, annotation, structures, meshes, tmp_path)  # fmt: skip
    hemispheres = retrieve_hemisphere_map()
    folder = wrapup_atlas_from_data(
        *args, compress=False, hemispheres_stack=hemispheres, scale_meshes=True
    )
    assert folder == tmp_path / "dsurqe_bgstyle_mouse_200um_v1.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]
    with pytest.raises(FileExistsError, match="already exists"):
        wrapup_atlas_from_data(*args, compress=False, hemispheres_stack=hemispheres)
    archive = wrapup_atlas_from_data(
        *args, overwrite=True, cleanup_files=True, hemispheres_stack=hemispheres, scale_meshes=True
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_validation_is_a_gate(built: Path, tmp_path: Path) -> None:
    meshes = built_meshes(built)
    reference, annotation = retrieve_reference_and_annotation()
    args = (ATLAS_NAME, 0, CITATION, ATLAS_LINK, SPECIES, (200, 200, 200), ORIENTATION,
            ROOT_ID, reference, annotation, retrieve_structure_information())  # fmt: skip
    # meshes in voxels taken as um: only the written package shows it (its root mesh)
    with pytest.raises(ValidationError, match="mesh_extents") as info:
        wrapup_atlas_from_data(*args, meshes, tmp_path, hemispheres_stack=retrieve_hemisphere_map())
    assert "root mesh spans" in str(info.value)
    assert not info.value.report.ok
    assert list(tmp_path.iterdir()) == []
    del meshes[51]  # known from the inputs: refused before anything is written
    with pytest.raises(ValidationError, match=r"lack 1 structure\(s\) with voxels, e.g. \[51\]"):
        wrapup_atlas_from_data(
            *args, meshes, tmp_path, hemispheres_stack=retrieve_hemisphere_map(),
            scale_meshes=True,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_construct_meshes_arguments(tmp_path: Path) -> None:
    _, annotation = retrieve_reference_and_annotation()
    with pytest.raises(ValueError, match="num_threads"):
        construct_meshes_from_annotation(
            tmp_path, annotation, retrieve_structure_information(), num_threads=0
        )
    with pytest.raises(AtlasExistsError, match="not an existing folder"):
        construct_meshes_from_annotation(
            tmp_path / "missing", annotation, retrieve_structure_information()
        )


# --- BrainGlobe 2.3.1's choices, side by side ------------------------------------------------


def _structure(sid: int, acronym: str, path: list[int]) -> dict[str, Any]:
    return {"id": sid, "acronym": acronym, "name": f"region {acronym}",
            "rgb_triplet": [255, 0, 0], "structure_id_path": path}  # fmt: skip


def test_construct_meshes_follows_brainglobes_tree_and_places(tmp_path: Path) -> None:
    from brainglobe_atlasapi.structure_tree_util import get_structures_tree

    _, annotation = retrieve_reference_and_annotation()
    volume = np.where(np.isin(annotation, [51, 119, 174]), annotation, 0).astype(np.uint32)
    structures = [  # BrainGlobe's own test layout: root listed last, a group at [999, 999, 101]
        _structure(101, "o", [999, 999, 101]),
        _structure(51, "a", [999, 101, 51]),
        _structure(119, "b", [999, 101, 119]),
        _structure(174, "c", [999, 12345, 174]),  # its parent is not listed: not in the tree
        _structure(7, "empty", [999, 7]),  # no voxels: no mesh
        _structure(999, "root", [999]),
    ]
    tree = get_structures_tree(structures)  # 2.3.1's own tree accepts this list
    labels = set(np.unique(volume).tolist())
    expected = [s["id"] for s in structures
                if s["id"] in tree.nodes and labels & set(tree.subtree(s["id"]).nodes)]  # fmt: skip
    assert expected == [101, 51, 119, 999]
    made = construct_meshes_from_annotation(
        tmp_path, volume, structures, closing_n_iters=0, decimate_fraction=1.0
    )
    assert made == {sid: tmp_path / "meshes" / f"{sid}.obj" for sid in expected}
    assert list(made) == expected  # BrainGlobe's order: that of structures_list
    assert [p.name for p in tmp_path.iterdir()] == ["meshes"]  # no working files left
    assert sorted(p.name for p in (tmp_path / "meshes").iterdir()) == sorted(
        f"{sid}.obj" for sid in expected
    )
    voxels = np.argwhere(np.isin(volume, [51, 119]))  # the group wraps its two children
    points = meshio.read(made[101]).points
    assert np.all(np.abs(points.min(axis=0) - voxels.min(axis=0)) <= 1.0)
    assert np.all(np.abs(points.max(axis=0) - voxels.max(axis=0)) <= 1.0)


def test_construct_meshes_refuses_an_id_reached_twice_as_brainglobe_does(tmp_path: Path) -> None:
    from brainglobe_atlasapi.structure_tree_util import get_structures_tree
    from treelib.exceptions import DuplicatedNodeIdError

    structures = [_structure(999, "root", [999]), _structure(5, "a", [999, 5]),
                  _structure(5, "a2", [999, 5])]  # fmt: skip
    with pytest.raises(DuplicatedNodeIdError):
        get_structures_tree(structures)
    with pytest.raises(HierarchyError, match="structure id 5 .* is reached twice"):
        construct_meshes_from_annotation(tmp_path, np.zeros((4, 4, 4), np.uint32), structures)


@pytest.mark.parametrize("compress", [True, False])
def test_existing_output_is_refused_before_the_inputs_as_in_brainglobe(
    tmp_path: Path, compress: bool
) -> None:
    from brainglobe_atlasapi.atlas_generation import wrapup as bg_wrapup

    folder = tmp_path / "dsurqe_bgstyle_mouse_200um_v1.0"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    stack = np.zeros((2, 2, 2), np.uint32)
    # inputs that cannot make a package: the existing output is what both report
    args = (ATLAS_NAME, 0, "no doi here", ATLAS_LINK, SPECIES, (200, 200, 200), ORIENTATION,
            ROOT_ID, stack, stack, [], {}, tmp_path)  # fmt: skip
    expected = "^Atlas output already exists at "
    with pytest.raises(FileExistsError, match=expected):
        bg_wrapup.wrapup_atlas_from_data(*args, compress=compress)
    with pytest.raises(FileExistsError, match=expected) as info:
        wrapup_atlas_from_data(*args, compress=compress)
    assert isinstance(info.value, AtlasExistsError)
    assert str(folder) in str(info.value)
    assert "overwrite=True" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    assert (folder / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError) as checked:  # elsewhere, the inputs are what fails
        wrapup_atlas_from_data(*args[:-1], tmp_path / "elsewhere", compress=compress)
    assert not isinstance(checked.value, FileExistsError)
