"""atlasmith.Atlas on the real bundled Allen 100 um atlas: laziness, memory maps, every query
member, the vectorised calls, statistics and errors (BrainGlobe parity is in
test_brainglobe_compat.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import meshio
import numpy as np
import pytest
import tifffile
from brainglobe_space import AnatomicalSpace
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from atlasmith import Atlas
from atlasmith.errors import (
    AtlasFormatError,
    CoordinateError,
    HierarchyError,
    HierarchyLevelError,
    InvalidCoordinatesError,
    MeshError,
    MetadataError,
    MissingFileError,
    StructureNotFoundError,
)


@pytest.fixture(scope="module")
def atlas(example_atlas_dir: Path) -> Atlas:
    return Atlas(example_atlas_dir)


@pytest.fixture(scope="module")
def annotation(example_atlas_dir: Path) -> np.ndarray:
    data: np.ndarray = tifffile.imread(example_atlas_dir / "annotation.tiff")
    return data


def test_opening_reads_no_voxel_data(example_atlas_copy: Path) -> None:
    for name in ("annotation.tiff", "reference.tiff"):
        (example_atlas_copy / name).unlink()
    atlas = Atlas(example_atlas_copy)  # needs only the two JSON files
    assert atlas.get_structure_ancestors("VISp")[:3] == ["root", "grey", "CH"]
    with pytest.raises(MissingFileError, match="annotation.tiff does not exist") as info:
        atlas.annotation  # noqa: B018
    assert isinstance(info.value, FileNotFoundError)


def test_stacks_are_read_only_memory_maps(atlas: Atlas, annotation: np.ndarray) -> None:
    assert isinstance(atlas.annotation, np.memmap)
    assert isinstance(atlas.reference, np.memmap)
    assert atlas.annotation is atlas.annotation  # cached
    np.testing.assert_array_equal(atlas.annotation, annotation)
    with pytest.raises(ValueError, match="read-only"):
        atlas.annotation[0, 0, 0] = 1
    assert atlas.hemispheres.strides[:2] == (0, 0)  # synthesised without allocating a volume
    assert atlas.hemispheres.shape == atlas.shape


def test_compressed_tiff_falls_back_to_a_full_read(example_atlas_copy: Path) -> None:
    data = tifffile.imread(example_atlas_copy / "annotation.tiff")
    tifffile.imwrite(example_atlas_copy / "annotation.tiff", data, compression="zlib")
    atlas = Atlas(example_atlas_copy)
    assert not isinstance(atlas.annotation, np.memmap)
    np.testing.assert_array_equal(atlas.annotation, data)
    assert atlas.structure_from_coords((66, 40, 57)) == data[66, 40, 57]


def test_description(atlas: Atlas, example_atlas_dir: Path) -> None:
    assert atlas.metadata == json.loads((example_atlas_dir / "metadata.json").read_text())
    assert atlas.atlas_metadata.folder_name == "allen_mouse_100um_v1.2"
    assert atlas.shape == (132, 80, 114)
    assert atlas.resolution == (100.0, 100.0, 100.0)
    assert atlas.shape_um == (13200.0, 8000.0, 11400.0)
    assert atlas.orientation == "asr"
    assert atlas.root_dir == example_atlas_dir
    assert (atlas.left_hemisphere_value, atlas.right_hemisphere_value) == (1, 2)
    assert isinstance(atlas.space, AnatomicalSpace)
    assert atlas.space.shape == atlas.shape
    assert list(atlas.lookup_df.columns) == ["acronym", "id", "name"]
    assert len(atlas.lookup_df) == 840
    assert atlas.hierarchy.show(stdout=False).startswith("root (997)\n")
    assert atlas.tree.root.id == 997


def test_repr_and_str_show_the_credits(atlas: Atlas) -> None:
    text = str(atlas)
    assert "allen_mouse_100um (version 1.2), Mus musculus" in text
    assert "https://doi.org/10.1016/j.cell.2020.04.007" in text
    assert "http://www.brain-map.org" in text
    assert "packager: not recorded" in text
    assert repr(atlas).startswith("Atlas('allen_mouse_100um_v1.2'")


def test_structures(atlas: Atlas) -> None:
    visp = atlas.structures["VISp"]
    assert visp is atlas.structures[385]
    assert visp["structure_id_path"][-1] == 385
    assert visp["mesh_filename"] == atlas.root_dir / "meshes" / "385.obj"
    assert isinstance(visp["mesh"], meshio.Mesh)
    assert 385 in atlas.structures
    assert "VISp" in atlas.structures
    assert len(atlas.structures.data) == 840
    with pytest.raises(StructureNotFoundError, match="no structure with acronym 'nope'"):
        atlas.structures["nope"]
    with pytest.raises(TypeError):
        atlas.structures[None]


def test_structure_from_coords_single_point(atlas: Atlas, annotation: np.ndarray) -> None:
    point = (66, 40, 57)
    assert atlas.structure_from_coords(point) == annotation[point]
    assert isinstance(atlas.structure_from_coords(point), np.uint32)
    assert atlas.structure_from_coords(point, as_acronym=True) == "IMD"
    assert atlas.structure_from_coords([6650.0, 4099.9, 5700.0], microns=True) == annotation[point]
    assert atlas.structure_from_coords(point, hierarchy_lev=2, as_acronym=True) == "BS"
    assert atlas.structure_from_coords((0, 0, 0)) == 0
    assert atlas.structure_from_coords((0, 0, 0), as_acronym=True) == "Outside atlas"
    with pytest.raises(StructureNotFoundError):
        atlas.structure_from_coords((0, 0, 0), hierarchy_lev=1)
    with pytest.raises(HierarchyLevelError, match="no ancestor at hierarchy level 12") as info:
        atlas.structure_from_coords(point, hierarchy_lev=12)
    assert isinstance(info.value, IndexError)


def test_structure_from_coords_many_points(atlas: Atlas, annotation: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    voxels = rng.integers(0, atlas.shape, size=(5000, 3))
    ids = atlas.structure_from_coords(voxels)
    np.testing.assert_array_equal(ids, annotation[tuple(voxels.T)])
    assert atlas.annotation._atlasmith_mapped  # a large batch maps the pages first
    acronyms = atlas.structure_from_coords(voxels, as_acronym=True, key_error_string="-")
    expected = [atlas.structures[i]["acronym"] if i else "-" for i in ids.tolist()]
    assert acronyms.tolist() == expected
    level3 = atlas.structure_from_coords(voxels, hierarchy_lev=3)
    for sid, top in zip(ids.tolist(), level3.tolist(), strict=True):
        path = atlas.structures[sid]["structure_id_path"] if sid else [0]
        assert top == path[min(3, len(path) - 1)]  # outside stays 0, shallower stays itself
    assert atlas.structure_from_coords(np.empty((0, 3))).shape == (0,)


@pytest.mark.parametrize("level", [-1, "2", True, 1.5])
def test_vectorised_hierarchy_level_must_be_a_non_negative_int(atlas: Atlas, level: Any) -> None:
    with pytest.raises(HierarchyLevelError, match="hierarchy_level must be"):
        atlas.structure_from_coords(np.zeros((2, 3), dtype=int), hierarchy_lev=level)


def test_hemisphere_from_coords(atlas: Atlas) -> None:
    assert atlas.hemisphere_from_coords((10, 10, 56)) == 2
    assert atlas.hemisphere_from_coords((10, 10, 57)) == 1  # round(114 / 2) = 57: left from here
    assert atlas.hemisphere_from_coords((10, 10, 57), as_string=True) == "left"
    points = np.array([[0, 0, 0], [0, 0, 113], [5, 5, 57]])
    np.testing.assert_array_equal(atlas.hemisphere_from_coords(points), [2, 1, 1])
    assert atlas.hemisphere_from_coords(points, as_string=True).tolist() == [
        "right",
        "left",
        "left",
    ]
    assert atlas.hemisphere_from_coords(points * 100.0 + 99.0, microns=True).tolist() == [2, 1, 1]


@pytest.mark.parametrize(
    "coords",
    [(132, 0, 0), (0, 0, 114), (-1, 0, 0), (0, -0.5, 0), np.array([[1, 1, 1], [1, 80, 1]])],
)
def test_outside_the_volume_is_a_coordinate_error(atlas: Atlas, coords: Any) -> None:
    with pytest.raises(CoordinateError, match=r"outside the atlas volume.*shape \(132, 80, 114\)"):
        atlas.structure_from_coords(coords)
    with pytest.raises(IndexError):
        atlas.hemisphere_from_coords(coords)


@pytest.mark.parametrize(
    ("coords", "match"),
    [((1, 2), "shape"), ([[1, 2, 3, 4]], "shape"), ((np.nan, 1, 1), "finite"),
     ((np.inf, 1, 1), "finite"), (("a", "b", "c"), "numbers"), (np.zeros((2, 2, 3)), "shape")],
)  # fmt: skip
def test_malformed_coordinates(atlas: Atlas, coords: Any, match: str) -> None:
    with pytest.raises(InvalidCoordinatesError, match=match) as info:
        atlas.structure_from_coords(coords)
    assert isinstance(info.value, ValueError)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hnp.arrays(
        np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=st.floats(0, 7999.99)
    )
)
def test_vectorised_equals_point_by_point(atlas: Atlas, points: np.ndarray) -> None:
    ids = atlas.structure_from_coords(points, microns=True)
    hemis = atlas.hemisphere_from_coords(points, microns=True, as_string=True)
    for i, p in enumerate(points):
        assert ids[i] == atlas.structure_from_coords(tuple(p), microns=True)
        assert hemis[i] == atlas.hemisphere_from_coords(list(p), microns=True, as_string=True)


def test_ancestors_descendants_levels(atlas: Atlas) -> None:
    assert atlas.get_structure_ancestors("VISp") == ["root", "grey", "CH", "CTX", "CTXpl",
                                                      "Isocortex", "VIS"]  # fmt: skip
    assert atlas.get_structure_ancestors(997) == []
    descendants = atlas.get_structure_descendants("VISp")
    assert descendants == ["VISp1", "VISp2/3", "VISp4", "VISp5", "VISp6a", "VISp6b"]
    assert atlas.get_structure_descendants("VISp1") == []
    assert atlas.get_structures_at_hierarchy_level("VISp", 7) == [385]
    assert atlas.get_structures_at_hierarchy_level("VISp", 8, as_acronym=True) == descendants
    assert atlas.get_structures_at_hierarchy_level("VISp")[:8] == [997, 8, 567, 688, 695, 315,
                                                                   669, 385]  # fmt: skip
    with pytest.raises(HierarchyLevelError, match="no descendants at hierarchy level 9"):
        atlas.get_structures_at_hierarchy_level("VISp", 9)
    with pytest.raises(StructureNotFoundError, match="Structure 'nope' not found"):
        atlas.get_structures_at_hierarchy_level("nope", 1)


@pytest.mark.parametrize("structure", ["CH", "root", "VISp", 382])
def test_structure_mask(atlas: Atlas, annotation: np.ndarray, structure: Any) -> None:
    sid = atlas.structures[structure]["id"]
    members = [sid, *(atlas.structures[a]["id"] for a in atlas.get_structure_descendants(sid))]
    mask = atlas.get_structure_mask(structure)
    assert mask.dtype == annotation.dtype
    np.testing.assert_array_equal(mask, np.where(np.isin(annotation, members), sid, 0))
    assert mask.any()


def test_meshes(atlas: Atlas) -> None:
    ca1 = atlas.mesh_from_structure("CA1")
    assert isinstance(ca1, meshio.Mesh)
    assert ca1.points.shape[1] == 3
    assert atlas.meshfile_from_structure(["CA1", 385]) == [
        atlas.root_dir / "meshes" / "382.obj",
        atlas.root_dir / "meshes" / "385.obj",
    ]
    assert atlas.root_meshfile() == atlas.root_dir / "meshes" / "997.obj"
    with pytest.raises(MeshError, match="No valid mesh for region: root") as info:
        atlas.root_mesh()
    assert isinstance(info.value, meshio.ReadError)


def test_missing_mesh_file(example_atlas_copy: Path) -> None:
    (example_atlas_copy / "meshes" / "385.obj").unlink()
    with pytest.raises(MeshError, match="VISp .*385.obj is missing or unreadable"):
        Atlas(example_atlas_copy).mesh_from_structure(385)


def test_structure_statistics(atlas: Atlas, annotation: np.ndarray) -> None:
    stats = atlas.structure_statistics()
    assert list(stats.index) == atlas.tree.ids.tolist()
    assert stats.loc[997, "voxels"] == int((annotation > 0).sum())
    for structure in ("CH", "VISp", "CA1", "HY"):
        sid = atlas.structures[structure]["id"]
        voxels = np.argwhere(atlas.get_structure_mask(sid) > 0)
        row = stats.loc[sid]
        assert row["voxels"] == len(voxels)
        assert row["own_voxels"] == int((annotation == sid).sum())
        assert row["volume_mm3"] == pytest.approx(len(voxels) * 1e-3)
        for axis in range(3):
            assert row[f"bbox_min_{axis}"] == voxels[:, axis].min()
            assert row[f"bbox_max_{axis}"] == voxels[:, axis].max()
            assert row[f"centroid_um_{axis}"] == pytest.approx(voxels[:, axis].mean() * 100.0)
    empty = stats[stats["voxels"] == 0]
    assert len(empty) > 0  # the 100 um annotation misses some small structures
    assert empty["bbox_min_0"].isna().all()
    assert empty["centroid_um_0"].isna().all()


def test_metadata_problems(example_atlas_copy: Path) -> None:
    meta_path = example_atlas_copy / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [132, 80]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MetadataError, match="'shape'"):
        Atlas(example_atlas_copy)
    meta_path.write_text("{")
    with pytest.raises(AtlasFormatError, match="not valid JSON"):
        Atlas(example_atlas_copy)
    meta_path.write_text(json.dumps({**meta, "shape": [132, 80, 114]}))
    (example_atlas_copy / "structures.json").write_text('{"root": 997}')
    with pytest.raises(AtlasFormatError, match="must hold a JSON list"):
        Atlas(example_atlas_copy)
    meta_path.unlink()
    with pytest.raises(MissingFileError, match="metadata.json does not exist"):
        Atlas(example_atlas_copy)


def test_asymmetric_atlas_reads_its_hemispheres(example_atlas_copy: Path) -> None:
    hemispheres = np.ones((132, 80, 114), dtype=np.uint8)
    hemispheres[:, :, :10] = 2
    tifffile.imwrite(example_atlas_copy / "hemispheres.tiff", hemispheres)
    meta = json.loads((example_atlas_copy / "metadata.json").read_text())
    meta["symmetric"] = False
    (example_atlas_copy / "metadata.json").write_text(json.dumps(meta))
    atlas = Atlas(example_atlas_copy)
    assert isinstance(atlas.hemispheres, np.memmap)
    assert atlas.hemisphere_from_coords((0, 0, 9)) == 2
    assert atlas.hemisphere_from_coords(np.array([[0, 0, 9], [0, 0, 10]])).tolist() == [2, 1]


def test_tree_is_built_and_checked_on_first_use(example_atlas_copy: Path) -> None:
    atlas = Atlas(example_atlas_copy)
    assert atlas.structure_from_coords((66, 40, 57)) > 0  # a label lookup needs no tree
    assert "tree" not in vars(atlas)
    assert atlas.get_structure_ancestors("CH") == ["root", "grey"]
    assert "tree" in vars(atlas)
    structures = json.loads((example_atlas_copy / "structures.json").read_text())
    structures[5]["acronym"] = "CH"
    (example_atlas_copy / "structures.json").write_text(json.dumps(structures))
    broken = Atlas(example_atlas_copy)
    with pytest.raises(HierarchyError, match="acronym 'CH' is used twice"):
        broken.structures["CH"]


def _mapped_kb(stack: np.ndarray) -> int:
    """Resident kB of the mapping behind a memory-mapped stack (Linux's /proc/self/smaps)."""
    start = np.frombuffer(stack._mmap, dtype=np.uint8, count=1).ctypes.data
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        header = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)  # a mapping: its addresses first
        if header:
            inside = int(header[1], 16) <= start < int(header[2], 16)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="reads /proc/self/smaps")
@pytest.mark.parametrize("advice", ["linux", "unsupported"])
def test_full_passes_hold_one_block_of_the_annotation(
    example_atlas_dir: Path, annotation: np.ndarray, monkeypatch: pytest.MonkeyPatch, advice: str
) -> None:
    """Masks, statistics and large batches of lookups read a memory-mapped annotation a block
    of rows at a time and let each block's pages go: the process never holds it whole (4.8 GB
    at 10 um), whether the kernel maps a block in one call or page by page."""
    from atlasmith import _pages

    if advice == "unsupported":  # an advice the kernel rejects: pages are faulted in
        monkeypatch.setattr(_pages, "_MADV_POPULATE_READ_LINUX", 123456)
    atlas = Atlas(example_atlas_dir)
    mask = atlas.get_structure_mask("HY")
    members = [1097, *(atlas.structures[a]["id"] for a in atlas.get_structure_descendants("HY"))]
    np.testing.assert_array_equal(mask, np.where(np.isin(annotation, members), 1097, 0))
    assert _mapped_kb(atlas.annotation) == 0
    assert atlas.structure_statistics().loc[1097, "voxels"] == np.count_nonzero(mask)
    assert _mapped_kb(atlas.annotation) == 0
    voxels = np.random.default_rng(2).integers(0, atlas.shape, size=(50_000, 3))
    ids = atlas.structure_from_coords(voxels)
    np.testing.assert_array_equal(ids, annotation[tuple(voxels.T)])
    assert _mapped_kb(atlas.annotation) == 0
    atlas.annotation[66, 40, 57]  # noqa: B018 - mapped again once read
    assert _mapped_kb(atlas.annotation) > 0
