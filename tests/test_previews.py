"""Section and mesh sheets (atlasmith.previews), rendered from the real bundled Allen atlas."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tifffile

from atlasmith.errors import AtlasFormatError, MeshError
from atlasmith.meshes.obj import read_obj
from atlasmith.previews import (
    OVERLAY_ALPHA,
    load_atlas_files,
    read_panels,
    render_mesh_sheet,
    render_section_sheet,
    section_layout,
    viewer_side,
    write_package_preview,
)

# anatomical facts, independent of the code: the axis normal to each plane, and word pairs
NORMAL = {
    "frontal": {"anterior", "posterior"},
    "sagittal": {"left", "right"},
    "horizontal": {"dorsal", "ventral"},
}
OPPOSITE = {"anterior": "posterior", "dorsal": "ventral", "left": "right"}
OPPOSITE.update({v: k for k, v in OPPOSITE.items()})
LETTERS = {
    "a": "anterior",
    "p": "posterior",
    "s": "dorsal",
    "i": "ventral",
    "r": "right",
    "l": "left",
}


def _all_orientations() -> list[str]:
    out = []
    for perm in itertools.permutations(["ap", "si", "rl"]):
        for picks in itertools.product(*perm):
            out.append("".join(picks))
    return out


# --- meshes for the tests: real surfaces of the real annotation, made with zmesh -------------


def write_top_meshes(folder: Path) -> dict[int, Path]:
    """Write closed meshes of the root and of the root's children (um, voxel i at i*res)."""
    import zmesh

    annotation = tifffile.imread(folder / "annotation.tiff")
    structures = json.loads((folder / "structures.json").read_text())
    res = json.loads((folder / "metadata.json").read_text())["resolution"]
    ids = np.array([s["id"] for s in structures])
    top = np.array(
        [s["structure_id_path"][1] if len(s["structure_id_path"]) > 1 else 0 for s in structures]
    )
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], annotation), 0, len(ids) - 1)
    top_labels = np.where(annotation > 0, top[order][pos], 0).astype(np.uint32)
    root = next(s["id"] for s in structures if s["acronym"] == "root")
    written = {}
    for volume in (top_labels, (annotation > 0).astype(np.uint32) * root):
        mesher = zmesh.Mesher(tuple(res))
        mesher.mesh(np.pad(volume, 1))  # padded so that surfaces at the border are closed
        for label in mesher.ids():
            mesh = mesher.get(label, normals=False, reduction_factor=10, max_error=40)
            mesh.vertices -= np.asarray(res, dtype=mesh.vertices.dtype)
            path = folder / "meshes" / f"{int(label)}.obj"
            path.write_bytes(mesh.to_obj())
            written[int(label)] = path
    return written


def shared_meshed_atlas(example: Path, factory: pytest.TempPathFactory) -> Path:
    """The real atlas plus root and top-level meshes, made once per test session (read-only)."""
    target = factory.getbasetemp() / "meshed-shared" / example.name
    if not (target / "meshes" / "997.obj").is_file():
        work = factory.mktemp("meshing") / example.name
        shutil.copytree(example, work)
        write_top_meshes(work)
        target.parent.mkdir(exist_ok=True)
        os.replace(work, target)
    return target


@pytest.fixture(scope="module")
def meshed_atlas(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_meshed_atlas(example_atlas_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def sheet(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sheet") / "sections.png"
    render_section_sheet(example_atlas_dir, path)
    return path


def _pixels(path: Path) -> npt.NDArray[np.int64]:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def _blended_with(pixels: npt.NDArray[np.int64], rgb: Any, tol: float = 3.0) -> int:
    """Pixels that are ``rgb`` blended over some grey at OVERLAY_ALPHA."""
    grey = (pixels - OVERLAY_ALPHA * np.asarray(rgb)) / (1 - OVERLAY_ALPHA)
    flat = np.ptp(grey, axis=-1) <= tol
    inside = (grey.min(axis=-1) >= -tol) & (grey.max(axis=-1) <= 255 + tol)
    return int(np.count_nonzero(flat & inside))


# --- layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", _all_orientations())
def test_layout_labels_follow_the_orientation(orientation: str) -> None:
    layouts = section_layout(orientation)
    for plane, layout in layouts.items():
        axes = {layout.slice_axis, layout.row_axis, layout.col_axis}
        assert axes == {0, 1, 2}
        assert {layout.first, layout.last} == NORMAL[plane]
        assert layout.first == LETTERS[orientation[layout.slice_axis]]
        assert layout.top == LETTERS[orientation[layout.row_axis]]
        assert layout.left == LETTERS[orientation[layout.col_axis]]
        assert layout.bottom == OPPOSITE[layout.top]
        assert layout.right == OPPOSITE[layout.left]
        if plane != "horizontal":  # upright: the dorsal-ventral axis runs down the panel
            assert {layout.top, layout.bottom} == {"dorsal", "ventral"}
        assert viewer_side(layout) in NORMAL[plane]


def test_asr_panels_and_viewers() -> None:
    frontal, sagittal, horizontal = (
        section_layout("asr")[p] for p in ("frontal", "sagittal", "horizontal")
    )
    assert (frontal.top, frontal.left, frontal.first) == ("dorsal", "right", "anterior")
    assert (sagittal.top, sagittal.left, sagittal.first) == ("dorsal", "anterior", "right")
    assert (horizontal.top, horizontal.left) == ("anterior", "right")
    # right on the left of a frontal view: seen from the front; anterior on the left of a
    # sagittal view: seen from the left; right on the left of a horizontal view: from below
    assert [viewer_side(x) for x in (frontal, sagittal, horizontal)] == [
        "anterior",
        "left",
        "ventral",
    ]


# --- section sheets --------------------------------------------------------------------------


def test_section_sheet_of_the_real_atlas(sheet: Path, example_atlas_dir: Path) -> None:
    from PIL import Image

    with Image.open(sheet) as image:
        width, height = image.size
    assert width > 1000
    assert height > 600
    panels = read_panels(sheet)
    assert [p["plane"] for p in panels] == ["frontal"] * 5 + ["sagittal"] * 5 + ["horizontal"] * 5
    shape = json.loads((example_atlas_dir / "metadata.json").read_text())["shape"]
    layouts = section_layout("asr")
    for panel in panels:
        expected = layouts[panel["plane"]].to_dict()
        assert {k: panel[k] for k in expected} == expected
        assert 0 <= panel["index"] < shape[panel["slice_axis"]] == panel["size"]
    indices = [p["index"] for p in panels if p["plane"] == "frontal"]
    assert indices == sorted(set(indices))


def test_annotation_colours_appear_in_the_sheet(sheet: Path, example_atlas_dir: Path) -> None:
    atlas = load_atlas_files(example_atlas_dir)
    panel = next(p for p in read_panels(sheet) if p["plane"] == "frontal" and p["index"] > 60)
    labels, counts = np.unique(np.asarray(atlas.annotation[panel["index"]]), return_counts=True)
    by_id = {s["id"]: s for s in atlas.structures_list}
    biggest = [int(label) for label in labels[np.argsort(-counts)] if label != 0][:5]
    pixels = _pixels(sheet)
    for label in biggest:
        assert _blended_with(pixels, by_id[label]["rgb_triplet"]) > 50, by_id[label]["acronym"]


def test_a_changed_colour_changes_the_pixels(
    sheet: Path, example_atlas_copy: Path, tmp_path: Path
) -> None:
    atlas = load_atlas_files(example_atlas_copy)
    labels, counts = np.unique(np.asarray(atlas.annotation), return_counts=True)
    biggest = int(labels[1:][np.argmax(counts[1:])])
    new_rgb = [250, 10, 200]
    structures = json.loads((example_atlas_copy / "structures.json").read_text())
    for s in structures:
        if s["id"] == biggest:
            s["rgb_triplet"] = new_rgb
    (example_atlas_copy / "structures.json").write_text(json.dumps(structures))
    changed = tmp_path / "changed.png"
    render_section_sheet(example_atlas_copy, changed)
    assert _blended_with(_pixels(sheet), new_rgb) < 20
    assert _blended_with(_pixels(changed), new_rgb) > 200


def test_a_misoriented_copy_gets_other_labels(
    sheet: Path, example_atlas_copy: Path, tmp_path: Path
) -> None:
    meta = json.loads((example_atlas_copy / "metadata.json").read_text())
    meta["orientation"] = "lsa"  # wrong: the stacks are "asr"
    (example_atlas_copy / "metadata.json").write_text(json.dumps(meta))
    wrong = tmp_path / "wrong.png"
    render_section_sheet(example_atlas_copy, wrong)
    right_panels, wrong_panels = read_panels(sheet), read_panels(wrong)
    # the panels that slice axis 0 (true frontal sections) are now called sagittal, with
    # left/right at the slice ends, and the labels differ
    first_axis = [p for p in wrong_panels if p["slice_axis"] == 0]
    assert {p["plane"] for p in first_axis} == {"sagittal"}
    assert {(p["first"], p["last"]) for p in first_axis} == {("left", "right")}
    assert [p["plane"] for p in right_panels if p["slice_axis"] == 0][0] == "frontal"
    labels = ("plane", "top", "bottom", "left", "right", "first", "last")
    assert [tuple(p[k] for k in labels) for p in right_panels] != [
        tuple(p[k] for k in labels) for p in wrong_panels
    ]


def test_package_preview(example_atlas_copy: Path) -> None:
    from PIL import Image

    path = write_package_preview(example_atlas_copy)
    assert path == example_atlas_copy / "preview.png"
    first = path.read_bytes()
    assert 10_000 < len(first) < 400_000
    assert path.stat().st_mode & 0o777 == 0o644
    with Image.open(path) as image:
        assert image.size[0] < 1000
    assert [p["plane"] for p in read_panels(path)] == ["frontal", "sagittal", "horizontal"]
    assert write_package_preview(example_atlas_copy).read_bytes() == first  # reproducible
    assert not [p for p in example_atlas_copy.iterdir() if p.name.endswith(".tmp")]


def test_missing_stack_is_a_clear_error(example_atlas_copy: Path, tmp_path: Path) -> None:
    (example_atlas_copy / "annotation.tiff").unlink()
    with pytest.raises(AtlasFormatError, match=r"annotation.tiff does not exist"):
        render_section_sheet(example_atlas_copy, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(AtlasFormatError, match="metadata.json does not exist"):
        write_package_preview(tmp_path)


# --- mesh sheets ----------------------------------------------------------------------------


def test_mesh_sheet_draws_root_and_top_level_regions(meshed_atlas: Path, tmp_path: Path) -> None:
    structures = json.loads((meshed_atlas / "structures.json").read_text())
    children = [s for s in structures if len(s["structure_id_path"]) == 2]
    path = tmp_path / "meshes.png"
    panels = render_mesh_sheet(meshed_atlas, path)
    assert read_panels(path) == panels
    assert [p["row"] for p in panels] == ["root"] * 3 + ["top-level regions"] * 3
    assert [p["structures"] for p in panels[:3]] == [[997]] * 3
    for panel in panels[3:]:
        assert sorted(panel["structures"]) == sorted(s["id"] for s in children)
    pixels = _pixels(path)
    grey = next(s for s in children if s["acronym"] == "grey")["rgb_triplet"]
    ratio = pixels / np.asarray(grey, dtype=np.float64)
    shaded = (np.ptp(ratio, axis=-1) < 0.03) & (ratio.max(axis=-1) < 0.95)
    assert np.count_nonzero(shaded) > 2000  # grey matter drawn in its colour, shaded


def test_mesh_sheet_lists_missing_meshes(example_atlas_dir: Path, tmp_path: Path) -> None:
    panels = render_mesh_sheet(example_atlas_dir, tmp_path / "m.png")
    assert all(p["structures"] == [] for p in panels)  # the bundled atlas has no root mesh


def test_read_obj_handles_quads_and_negative_indices(tmp_path: Path) -> None:
    path = tmp_path / "q.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1/1 2/2 3/3 4/4\nf -4 -3 -2\n")
    vertices, faces = read_obj(path)
    assert vertices.shape == (4, 3)
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2]]
    path.write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(MeshError, match="vertices it does not have"):
        read_obj(path)
    path.write_text("v 0 zero 0\n")
    with pytest.raises(MeshError, match="not a valid OBJ"):
        read_obj(path)
