"""Closing each structure on its own, and labels that carry what the closings add.

A morphological closing (``n`` dilations by the 6-neighbour cross, then ``n`` erosions) fills
a structure's thin gaps: slits, tunnels and notches up to about 2n voxels wide, such as the
third ventricle's slit through the hypothalamus or the fibre tracts crossing the thalamus.
Each structure is closed as a whole, as BrainGlobe does (parents too, not as the union of
their closed children), and the result never leaves the structure's bounding box.

A voxel that a closing adds keeps its own structure as well: a voxel of the third ventricle in
the hypothalamus' slit belongs to the ventricle and, for the hypothalamus' mesh, to the
hypothalamus. Every set of structures that voxels belong to gets a label of its own (after
the tree's compact labels), with a membership table from labels to structures, so a single
shared surface still serves every structure.

Closings run on bit-packed masks (64 voxels per word along the last axis) in each structure's
bounding box, a chunk of rows at a time, so memory stays bounded whatever the structure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from atlasmith._types import BoolArray, IntArray
from atlasmith.meshes._runner import Runner
from atlasmith.statistics import label_profiles

Words = npt.NDArray[np.uint64]

CHUNK_VOXELS = 1 << 24  # voxels of a bounding box closed at once (bounds the memory)
_WORD = 64


class ClosingInputs(NamedTuple):
    """What every closing task needs (shared by the workers)."""

    labels: npt.NDArray[Any]  # compact labels of the whole annotation
    members: BoolArray  # per structure (row), which labels belong to it
    boxes: IntArray  # per structure: lowest and highest+1 voxel index on each axis (6)
    iterations: int


class Closed(NamedTuple):
    """Labels after closing (compact labels, then one per added set) and their membership."""

    labels: npt.NDArray[Any]
    members: BoolArray


def close_structures(
    labels: npt.NDArray[Any], members: BoolArray, iterations: int, runner: Runner, tasks: int
) -> Closed:
    """Close every structure (row of ``members``) and relabel the voxels the closings add.

    ``labels`` is changed in place where it can hold the new labels. The structures are cut
    into ``tasks`` chunks of about equal work, run on ``runner``.
    """
    inputs = ClosingInputs(labels, members, structure_boxes(labels, members), iterations)
    rows = np.argsort(-_box_volumes(inputs.boxes), kind="stable")
    chunks = [rows[k::tasks] for k in range(min(tasks, len(rows)))]
    found = list(runner.map(added_voxels, chunks, inputs))
    voxels = np.concatenate([np.zeros(0, np.int64), *(f[0] for f in found)])
    owners = np.concatenate([np.zeros(0, np.int64), *(f[1] for f in found)])
    return relabel(labels, members, voxels, owners)


def structure_boxes(labels: npt.NDArray[Any], members: BoolArray) -> IntArray:
    """Each structure's bounding box (low, low, low, high, high, high; high exclusive) as the
    union of its labels' boxes; empty structures get an empty box."""
    return label_profiles(labels, members.shape[1]).boxes(members)


def _box_volumes(boxes: IntArray) -> IntArray:
    sizes = np.clip(boxes[:, 3:] - boxes[:, :3], 0, None)
    out: IntArray = sizes.prod(axis=1)
    return out


def added_voxels(rows: npt.NDArray[Any], inputs: ClosingInputs) -> tuple[IntArray, IntArray]:
    """The voxels (flat indices) that closing adds to each structure of ``rows``, and the
    structure (row) each is added to."""
    voxels, owners = [], []
    for row in rows:
        for found in _added_to(int(row), inputs):
            voxels.append(found)
            owners.append(np.full(len(found), row, dtype=np.int64))
    if not voxels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(voxels), np.concatenate(owners)


def _added_to(row: int, inputs: ClosingInputs) -> Iterator[IntArray]:
    """Closing of one structure, chunk of rows by chunk of rows of its bounding box: the
    result at a voxel depends only on voxels within 2n, so chunks overlap by 2n rows."""
    low, high = inputs.boxes[row, :3], inputs.boxes[row, 3:]
    if np.any(high <= low):
        return
    n = inputs.iterations
    plane = int((high[1] - low[1]) * (high[2] - low[2]))
    step = max(1, CHUNK_VOXELS // plane - 4 * n)
    shape = inputs.labels.shape
    member = inputs.members[row]
    for start in range(int(low[0]), int(high[0]), step):
        stop = min(start + step, int(high[0]))
        lo, hi = max(start - 2 * n, int(low[0])), min(stop + 2 * n, int(high[0]))
        mask = member[inputs.labels[lo:hi, low[1] : high[1], low[2] : high[2]]]
        added = close_mask(mask, n) & ~mask
        i, j, k = np.nonzero(added[start - lo : stop - lo])
        if len(i):
            yield np.ravel_multi_index((i + start, j + low[1], k + low[2]), shape).astype(np.int64)


def close_mask(mask: BoolArray, iterations: int) -> BoolArray:
    """Binary closing by the 6-neighbour cross, ``iterations`` times, with empty space all
    around the mask (the same as ``scipy.ndimage.binary_closing`` on a mask padded by that
    many voxels)."""
    n = iterations
    if n == 0 or not mask.any():
        return mask.copy()
    x, y, z = mask.shape
    words = -(-(z + 2 * n) // _WORD)
    padded = np.zeros((x + 2 * n, y + 2 * n, words * _WORD), dtype=bool)
    padded[n : n + x, n : n + y, n : n + z] = mask
    packed = np.packbits(padded, axis=2, bitorder="little").view("<u8")
    closed = packed
    for _ in range(n):
        closed = _grow(closed)
    for _ in range(n):
        closed = _shrink(closed)
    bits = np.unpackbits(closed.view(np.uint8), axis=2, bitorder="little")
    out: BoolArray = bits[n : n + x, n : n + y, n : n + z].view(bool)
    return out


def _grow(words: Words) -> Words:
    """Dilation by the 6-neighbour cross of a mask packed along its last axis."""
    out = words.copy()
    out[1:] |= words[:-1]
    out[:-1] |= words[1:]
    out[:, 1:] |= words[:, :-1]
    out[:, :-1] |= words[:, 1:]
    out |= _previous(words) | _next(words)
    return out


def _shrink(words: Words) -> Words:
    """Erosion by the 6-neighbour cross (outside the array counts as empty)."""
    out = words & _previous(words) & _next(words)
    out[1:] &= words[:-1]
    out[:-1] &= words[1:]
    out[[0, -1]] = 0
    out[:, 1:] &= words[:, :-1]
    out[:, :-1] &= words[:, 1:]
    out[:, [0, -1]] = 0
    return out


def _previous(words: Words) -> Words:
    """Each voxel's neighbour at z - 1, in its place (bit k of word w is voxel 64 w + k)."""
    out = words << np.uint64(1)
    out[..., 1:] |= words[..., :-1] >> np.uint64(_WORD - 1)
    return out


def _next(words: Words) -> Words:
    """Each voxel's neighbour at z + 1, in its place."""
    out = words >> np.uint64(1)
    out[..., :-1] |= words[..., 1:] << np.uint64(_WORD - 1)
    return out


def relabel(
    labels: npt.NDArray[Any], members: BoolArray, voxels: IntArray, owners: IntArray
) -> Closed:
    """Give each voxel that closings add a label for its set of structures: its own label's
    structures plus those it was added to. Sets are compared exactly (rows of a table)."""
    width = members.shape[1]
    if len(voxels) == 0:
        return Closed(labels, members)
    order = np.lexsort((owners, voxels))
    voxels, owners = voxels[order], owners[order]
    unique, starts, counts = np.unique(voxels, return_index=True, return_counts=True)
    table = np.full((len(unique), 1 + int(counts.max())), -1, dtype=np.int64)
    table[:, 0] = labels.ravel()[unique]
    group = np.repeat(np.arange(len(unique)), counts)
    table[group, 1 + np.arange(len(voxels)) - starts[group]] = owners
    sets, which = np.unique(table, axis=0, return_inverse=True)
    total = width + len(sets)
    dtype = labels.dtype if total <= np.iinfo(labels.dtype).max + 1 else np.uint32
    out = labels if dtype == labels.dtype else labels.astype(dtype)
    np.put(out, unique, (width + which.ravel()).astype(dtype))
    extra = members[:, sets[:, 0]].copy()
    for column in sets[:, 1:].T:
        named = column >= 0
        extra[column[named], np.flatnonzero(named)] = True
    return Closed(out, np.concatenate([members, extra], axis=1))
