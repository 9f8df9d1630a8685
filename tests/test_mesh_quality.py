"""Mesh quality measures, on real Allen regions and meshes."""

from __future__ import annotations

import json
from pathlib import Path

import meshio
import nrrd
import numpy as np
import pytest

from atlasmith.errors import MeshError
from atlasmith.hierarchy import StructureTree
from atlasmith.meshes import MeshParameters, generate_meshes
from atlasmith.meshes.quality import (
    _topology,
    enclosed_volume,
    quality_report,
    read_obj,
    region_masks,
    sample_triangles,
    surface_distance,
    voxel_boundary,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "allen_mouse_100um"
RES = 100.0
# Allen's own meshes bundled with the example data (BrainGlobe names them by id)
ALLEN_MESHES = {382: "CA1", 385: "VISp", 1097: "HY"}


@pytest.fixture(scope="module")
def allen() -> tuple[np.ndarray, StructureTree]:
    annotation, _ = nrrd.read(str(DATA / "annotation_100um.nrrd"))
    tree = StructureTree.from_list(json.loads((DATA / "structures.json").read_text()))
    return np.ascontiguousarray(annotation), tree


@pytest.fixture(scope="module")
def ours(allen, tmp_path_factory) -> Path:
    """Our meshes of the whole atlas, written once."""
    annotation, tree = allen
    out = tmp_path_factory.mktemp("quality") / "meshes"
    generate_meshes(annotation, tree, RES, out, workers=1)
    return out


@pytest.fixture(scope="module")
def unclosed(allen, tmp_path_factory) -> Path:
    """The same without closing: each mesh follows its own voxels."""
    annotation, tree = allen
    out = tmp_path_factory.mktemp("quality") / "unclosed"
    generate_meshes(annotation, tree, RES, out, params=MeshParameters(closing=0), workers=2)
    return out


def test_read_obj_matches_meshio():
    path = DATA / "meshes" / "382.obj"
    points, faces = read_obj(path)
    reference = meshio.read(path)
    np.testing.assert_allclose(points, reference.points)
    np.testing.assert_array_equal(faces, reference.cells_dict["triangle"])


def test_read_obj_refuses_a_file_without_faces(tmp_path):
    (tmp_path / "empty.obj").write_text("v 0 0 0\n")
    with pytest.raises(MeshError):
        read_obj(tmp_path / "empty.obj")
    with pytest.raises(MeshError):
        read_obj(tmp_path / "missing.obj")


def test_voxel_boundary_encloses_the_voxels(allen):
    annotation, tree = allen
    resolution = (100.0, 50.0, 25.0)  # anisotropic on purpose
    ((sid, mask, offset),) = region_masks(annotation, tree, [382])
    points, faces = voxel_boundary(mask, resolution, offset)
    assert enclosed_volume(points, faces) == pytest.approx(mask.sum() * np.prod(resolution))
    index = np.argwhere(mask) + offset
    np.testing.assert_allclose(points.min(axis=0), (index.min(axis=0) - 0.5) * resolution)
    np.testing.assert_allclose(points.max(axis=0), (index.max(axis=0) + 0.5) * resolution)


def test_samples_are_uniform_by_area():
    # two triangles of areas 1 and 3 making one flat quadrilateral
    points = np.array([[0, 0, 0], [1, 0, 0], [1, 2, 0], [0, 2, 0], [4, 0, 0]], dtype=float)
    faces = np.array([[0, 1, 3], [1, 4, 2]])
    samples = sample_triangles(points, faces, n=20_000, seed=3)
    assert np.mean(samples[:, 0] > 1) == pytest.approx(0.75, abs=0.02)  # the second: x >= 1
    assert np.allclose(samples[:, 2], 0)


def test_surface_distance_of_a_shifted_mesh():
    points, faces = read_obj(DATA / "meshes" / "1097.obj")
    same, _ = surface_distance((points, faces), (points, faces))
    shifted, largest = surface_distance((points, faces), (points + [500.0, 0, 0], faces))
    assert same < shifted / 5  # only the sampling spacing
    assert largest > 450.0  # the far ends lie about the whole shift apart


def test_topology_detects_holes():
    points, faces = read_obj(DATA / "meshes" / "385.obj")
    closed, _, components = _topology(faces, len(points))
    holed, _, _ = _topology(faces[1:], len(points))
    assert closed
    assert components >= 1
    assert not holed


@pytest.mark.parametrize("closed", [True, False])
def test_quality_of_our_meshes(allen, ours, unclosed, closed):
    """Closed meshes may leave their voxels where closing fills a slit (HY's third
    ventricle): within a voxel on average then, within half a voxel without closing."""
    annotation, tree = allen
    folder = ours if closed else unclosed
    report = quality_report(annotation, tree, (RES,) * 3, folder, ids=list(ALLEN_MESHES))
    assert [q.structure_id for q in report] == list(ALLEN_MESHES)
    for q in report:
        assert q.closed
        assert q.outward
        assert q.triangles > 0
        assert 0.8 < q.volume_ratio < 1.2
        assert q.mean_distance < (RES if closed else RES / 2)
        record = q.to_dict()
        assert record["volume_ratio"] == q.volume_ratio
        json.dumps(record)


def test_closing_brings_hy_closer_to_allens_own_mesh(ours, unclosed):
    """Allen's hypothalamus has no third-ventricle slit; closing fills it in ours."""
    allen_hy = read_obj(DATA / "meshes" / "1097.obj")
    closed, _ = surface_distance(allen_hy, read_obj(ours / "1097.obj"))
    plain, _ = surface_distance(allen_hy, read_obj(unclosed / "1097.obj"))
    assert closed < 0.8 * plain


def test_ours_are_close_to_allens_own_meshes(ours):
    for sid in ALLEN_MESHES:
        mean, _ = surface_distance(
            read_obj(DATA / "meshes" / f"{sid}.obj"), read_obj(ours / f"{sid}.obj")
        )
        assert mean < RES  # within a voxel of Allen's (smoothed, 10 um) surface
