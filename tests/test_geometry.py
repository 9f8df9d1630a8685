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


def test_z_order_codes_and_their_stable_order_are_the_bitwise_ones(allen_meshes):
    """The OBJ's face order (``locality_order``): codes by table are the codes interleaved
    bit by bit (cells of up to 20 bits per axis; higher bits ignored, as before), and their
    order by one sort of code and position is the stable argsort, also where a code leaves
    no room for the positions (then the stable argsort itself)."""
    from atlasmith.meshes.obj import _morton, _stable_order

    def interleaved(cells: np.ndarray) -> np.ndarray:
        code = np.zeros(len(cells), dtype=np.int64)
        for bit in range(min(20, int(cells.max()).bit_length())):
            for axis in range(3):
                code |= ((cells[:, axis] >> bit) & 1) << (3 * bit + axis)
        return code

    points, faces = allen_meshes[max(allen_meshes, key=lambda sid: len(allen_meshes[sid][1]))]
    centres = points[faces].sum(axis=1)
    rng = np.random.default_rng(1)
    for cell in (100.0, 25.0, 1.0, 0.001):  # codes of 7 to 20+ bits per axis
        cells = np.floor((centres - centres.min(axis=0)) / (3.0 * cell)).astype(np.int64)
        code = _morton(cells)
        assert np.array_equal(code, interleaved(cells)), cell
        assert np.array_equal(_stable_order(code), np.argsort(code, kind="stable")), cell
        shuffled = rng.permutation(code)  # ties everywhere
        assert np.array_equal(_stable_order(shuffled), np.argsort(shuffled, kind="stable"))
    huge = np.array([1 << 60, 3, 1 << 60, 0, 3], dtype=np.int64)
    assert _stable_order(huge).tolist() == [3, 1, 4, 0, 2]
