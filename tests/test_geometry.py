"""The shared triangle geometry (``meshes._geometry``) on the real Allen meshes."""

from __future__ import annotations

import json
from pathlib import Path

import nrrd
import numpy as np
import pytest

from atlasmith.hierarchy import StructureTree
from atlasmith.meshes import generate_meshes
from atlasmith.meshes._geometry import cross, face_cross
from atlasmith.meshes._surface import _block_index, _cell_points
from atlasmith.meshes.obj import read_obj

DATA = Path(__file__).resolve().parents[1] / "data" / "allen_mouse_100um"


@pytest.fixture(scope="module")
def allen_meshes(tmp_path_factory):
    annotation, _ = nrrd.read(str(DATA / "annotation_100um.nrrd"))
    tree = StructureTree.from_list(json.loads((DATA / "structures.json").read_text()))
    out = tmp_path_factory.mktemp("geometry") / "meshes"
    generated = generate_meshes(np.ascontiguousarray(annotation), tree, 100.0, out, workers=2)
    return {sid: read_obj(path) for sid, path in generated.items()}


def test_cross_is_numpys_bit_for_bit(allen_meshes):
    """The engine's normals, areas and volumes feed its clustering and the budget's checks:
    the faster cross product must give numpy's very bits, in float32, float64 and integers
    (the OBJ writer's rounded coordinates)."""
    assert len(allen_meshes) == 837
    for points, faces in allen_meshes.values():
        for dtype in (np.float32, np.float64, np.int64):
            corners = np.rint(points).astype(dtype) if dtype == np.int64 else points.astype(dtype)
            a, b, c = (corners[faces[:, k]] for k in range(3))
            expected = np.cross(b - a, c - a)
            first, product = face_cross(corners, faces)
            assert product.dtype == expected.dtype
            assert np.array_equal(product, expected)
            assert np.array_equal(first, a)
            assert np.array_equal(cross(b, c), np.cross(b, c))
        assert not np.shares_memory(face_cross(points, faces)[0], points)


def test_block_index_from_the_cells_centres_is_from_their_flat_indices():
    """Each cell's block from its centre (the slab's points) is the block its flat index in
    the padded volume gives, for blocks that do and do not divide the volume."""
    shape = (131, 79, 113)  # the Allen 100 um annotation's, less a voxel on each axis
    grid = tuple(n + 2 for n in shape)
    rng = np.random.default_rng(0)
    cells = np.unique(rng.integers(0, int(np.prod(grid)), 200_000))
    points = _cell_points(cells, grid, 0)
    i, j, k = np.unravel_index(cells, grid)
    for block in (2, 3, 4, 7):
        blocks = [n // block + 1 for n in grid]
        expected = ((i // block) * blocks[1] + j // block) * blocks[2] + k // block
        assert np.array_equal(_block_index(points, shape, block), expected.astype(np.uint64))
