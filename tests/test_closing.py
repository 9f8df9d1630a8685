"""Closing each structure on its own (bit-packed), against scipy, on the real Allen annotation."""

from __future__ import annotations

import json
from pathlib import Path

import nrrd
import numpy as np
import pytest
from scipy import ndimage

from atlasmith.hierarchy import StructureTree
from atlasmith.meshes._closing import (
    _structure_mask,
    close_mask,
    close_structures,
    closing_additions,
    label_counts_after,
    relabel,
    structure_boxes,
)
from atlasmith.meshes._engine import membership
from atlasmith.meshes._runner import LocalRunner
from atlasmith.meshes._surface import compact_labels

DATA = Path(__file__).resolve().parents[1] / "data" / "allen_mouse_100um"


_serial = LocalRunner(1)


def _scipy_closing(mask: np.ndarray, n: int) -> np.ndarray:
    """The mask with its closings along each axis (a line of three voxels, n times)."""
    padded = np.pad(mask, n)
    closed = padded.copy()
    for axis in range(3):
        line = np.zeros((3, 3, 3), dtype=bool)
        line[tuple(slice(None) if k == axis else 1 for k in range(3))] = True
        closed |= ndimage.binary_closing(padded, structure=line, iterations=n)
    return closed[n:-n, n:-n, n:-n]


@pytest.fixture(scope="module")
def allen():
    annotation, _ = nrrd.read(str(DATA / "annotation_100um.nrrd"))
    tree = StructureTree.from_list(json.loads((DATA / "structures.json").read_text()))
    labels = compact_labels(np.ascontiguousarray(annotation), tree)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(tree) + 1))
    kept, members = membership(tree, present[present > 0])
    return tree, labels, kept, members


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_packed_closing_is_scipy_closing(iterations):
    """Random masks of every shape (thin, odd, wider than a 64-bit word) and density."""
    rng = np.random.default_rng(iterations)
    for _ in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 90, 3))
        mask = rng.random(shape) < rng.random() * 0.6
        expected = _scipy_closing(mask, iterations)
        assert np.array_equal(close_mask(mask, iterations), expected), shape


def test_boxes_are_the_structures_voxel_bounds(allen):
    tree, labels, kept, members = allen
    boxes = structure_boxes(labels, members)
    for row in range(0, len(kept), 5):
        index = np.argwhere(members[row][labels])
        bounds = [*index.min(axis=0), *(index.max(axis=0) + 1)]
        assert boxes[row].tolist() == bounds, tree.structures[kept[row] - 1].acronym


@pytest.mark.parametrize("iterations", [1, 2])
def test_every_structure_is_closed_as_scipy_closes_it(allen, iterations):
    """After relabelling, each structure's voxels (through the membership table) are exactly
    scipy's closing of its own mask, for all 837 structures of the Allen annotation."""
    tree, labels, kept, members = allen
    closed = close_structures(labels.copy(), members, iterations, _serial, 4)
    assert closed.members.shape[1] > members.shape[1]  # closings added voxels
    boxes = structure_boxes(labels, members)
    for row in range(len(kept)):
        low, high = boxes[row, :3], boxes[row, 3:]
        box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        expected = _scipy_closing(members[row][labels[box]], iterations)
        got = closed.members[row][closed.labels[box]]
        assert np.array_equal(got, expected), tree.structures[kept[row] - 1].acronym
        outside = closed.members[row][closed.labels].sum() - got.sum()
        assert outside == 0  # nothing leaves the bounding box


def test_closing_fills_the_third_ventricle_slit_in_the_hypothalamus(allen):
    tree, labels, kept, members = allen
    closed = close_structures(labels.copy(), members, 1, _serial, 2)
    hy = int(np.flatnonzero(tree.ids[kept - 1] == tree["HY"].id)[0])
    v3 = tree.compact(np.array([tree["V3"].id]))[0]
    filled = closed.members[hy][closed.labels] & (labels == v3)
    assert filled.sum() > 20  # ventricle voxels now inside the hypothalamus' volume
    # ...and they are still the ventricle's own
    v3_row = int(np.flatnonzero(tree.ids[kept - 1] == tree["V3"].id)[0])
    assert np.all(closed.members[v3_row][closed.labels][filled])


def test_parents_hold_their_closed_children(allen):
    """Closing is monotone: a child's closed voxels are all in its parent's."""
    tree, labels, kept, members = allen
    closed = close_structures(labels.copy(), members, 1, _serial, 2)
    row_of = {int(k): r for r, k in enumerate(kept)}
    for row, k in enumerate(kept):
        parent = tree.ancestor_table[tree.depths[k] - 1, k] if tree.depths[k] else None
        if parent is None or int(parent) not in row_of:
            continue
        child, above = closed.members[row], closed.members[row_of[int(parent)]]
        assert not np.any(child & ~above), tree.structures[k - 1].acronym


def test_sets_are_relabelled_exactly():
    """Voxels added to the same structures get one label; different sets, different labels."""
    labels = np.array([[[1, 1, 2, 2, 0]]], dtype=np.uint16)
    members = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=bool)  # rows: a, b, parent
    voxels = np.array([2, 3, 3, 4, 4], dtype=np.int64)
    owners = np.array([0, 0, 2, 0, 2], dtype=np.int64)
    out = relabel(labels.copy(), members, voxels, owners)
    assert out.labels.ravel().tolist() == [1, 1, 4, 5, 3]  # sets in sorted order
    assert out.members[:, 3].tolist() == [True, False, True]  # outside + a + parent
    assert out.members[:, 4].tolist() == [True, True, True]  # label 2 + a
    assert out.members[:, 5].tolist() == [True, True, True]  # label 2 + a + parent


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_closing_additions_are_what_closing_adds(iterations):
    """Only the words that gain voxels are unpacked: the same voxels, in the same order."""
    rng = np.random.default_rng(10 + iterations)
    for _ in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 90, 3))
        mask = rng.random(shape) < rng.random() * 0.6
        expected = np.nonzero(close_mask(mask, iterations) & ~mask)
        got = closing_additions(mask, iterations)
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True)), shape


@pytest.mark.parametrize("tasks", [1, 3, 7])
def test_bands_and_remote_bands_give_the_same_labels(allen, tasks, monkeypatch):
    """However the volume is cut into bands, and whether the bands carry their own rows (as
    for a dask cluster) or read the shared volume, the closed labels and sets are the same."""
    import atlasmith.meshes._closing as closing

    tree, labels, kept, members = allen
    whole = close_structures(labels.copy(), members, 1, _serial, 1)
    monkeypatch.setattr(closing, "BAND_VOXELS", labels[0].size * 9)  # 15 bands of 9 rows

    class Remote(LocalRunner):
        remote = True

    for runner in (_serial, Remote(1)):
        cut = close_structures(labels.copy(), members, 1, runner, tasks)
        assert np.array_equal(cut.labels, whole.labels)
        assert np.array_equal(cut.members, whole.members)


def test_counts_after_closing_are_the_closed_labels_counts(allen):
    tree, labels, kept, members = allen
    before = np.bincount(labels.ravel(), minlength=members.shape[1])
    closed = close_structures(labels.copy(), members, 1, _serial, 2)
    expected = np.bincount(closed.labels.ravel(), minlength=closed.members.shape[1])
    np.testing.assert_array_equal(label_counts_after(before, closed), expected)


def test_closing_fills_slits_and_tunnels_not_the_staircase_corners():
    """A closing along each axis fills a slit (one voxel wide) and a tunnel, as the cross
    would, but leaves a staircase's concave corners (steps of two voxels, as a boundary
    upsampled from a coarser grid has), which the cross fills along every step's edge."""
    i, j = np.indices((8, 8))
    steps = np.repeat((i // 2 + j // 2 < 3)[:, :, None], 6, axis=2)  # steps of 2 voxels
    assert np.array_equal(close_mask(steps, 1), steps)
    crossed = ndimage.binary_closing(np.pad(steps, 1))[1:-1, 1:-1, 1:-1]
    corners = crossed & ~steps
    assert corners.sum() == 2 * 4  # two inner edges, but for their ends' layers
    assert np.array_equal(np.argwhere(corners[:, :, 1])[:, :2], [[2, 4], [4, 2]])

    slit = np.ones((7, 7, 7), dtype=bool)
    slit[3, 1:6, 1:6] = False  # a slit one voxel wide, closed all round
    tunnel = np.ones((7, 7, 7), dtype=bool)
    tunnel[3, 3, :] = False  # a tunnel through the block
    assert close_mask(slit, 1).all()
    assert close_mask(tunnel, 1).all()
    tube = np.zeros((7, 9, 9), dtype=bool)
    tube[:, 2:7, 2:7] = True
    tube[:, 4, 4] = False  # a hole along the tube, open at both ends
    filled = tube.copy()
    filled[:, 4, 4] = True  # the hole, and nothing around the tube's outer edges
    assert np.array_equal(close_mask(tube, 1), filled)


def test_closing_a_finer_grid_adds_voxels_as_its_boundaries_grow(allen):
    """The Allen annotation upsampled 2x (nearest neighbour: the same anatomy, boundaries of
    4x as many voxel faces, in steps of 2 voxels): the closings add at most 4x the voxels
    they add at 100 um (157,480 against 41,884). The 6-neighbour cross filled the inner
    corners of every step: 16x (513,317 against 31,831), in 8,498 label sets against
    1,514, each with a surface of its own (at 10 um, 137 M triangles against 26 M)."""
    tree, labels, kept, members = allen
    finer = labels.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    moved = []
    for volume in (labels, finer):
        closed = close_structures(volume.copy(), members, 1, _serial, 2)
        moved.append(int(np.count_nonzero(closed.labels != volume)))
    assert moved[0] > 20_000
    assert moved[1] <= 4 * moved[0]


def test_a_structure_mask_by_its_run_of_labels_is_the_lookup(allen):
    """The closing finds each structure's voxels in its box by one unsigned comparison where
    its compact labels are one run (every Allen structure's: the tree is in preorder), the
    same voxels as looking each label up; a structure whose labels are not one run, and
    signed labels, are looked up."""
    tree, labels, kept, members = allen
    boxes = structure_boxes(labels, members)
    runs = 0
    for row in range(len(kept)):
        low, high = boxes[row, :3], boxes[row, 3:]
        region = labels[tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))]
        marked = np.flatnonzero(members[row])
        runs += marked[-1] - marked[0] + 1 == len(marked)
        mask = _structure_mask(members[row], region)
        assert np.array_equal(mask, members[row][region]), tree.structures[kept[row] - 1].acronym
        assert mask.dtype == bool
        assert mask.flags.writeable
    assert runs == len(kept)
    scattered = members[0] & (np.arange(members.shape[1]) % 2 == 0)  # every other label
    assert np.array_equal(_structure_mask(scattered, labels), scattered[labels])
    signed = labels.astype(np.int32)
    assert np.array_equal(_structure_mask(members[5], signed), members[5][labels])
