"""Per-structure statistics of a label volume: voxels, bounding boxes, centroids, in one pass.

Everything here comes from *label profiles*: for each axis, how many voxels of each label lie
at each index along it (one ``np.bincount`` per axis per block of rows). A label's voxel
count, bounding box and centroid follow from its three profiles; a structure's, descendants
included, from the sum of its labels' profiles (a sparse matrix product over the hierarchy).
The volume is read a block of rows at a time, so memory stays bounded for fine atlases, and
a memory-mapped annotation is never copied nor mapped whole (:func:`row_blocks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._pages import map_rows, prefetch_rows, release_rows
from atlasmith._types import BoolArray, Float64Array, IntArray
from atlasmith.hierarchy import StructureTree

__all__ = [
    "LabelProfiles",
    "StructureStats",
    "label_counts",
    "label_profiles",
    "label_histogram",
    "labelled_along",
    "plane",
    "row_blocks",
    "sample_every",
    "structure_stats",
    "unknown_labels",
    "value_range",
]

ROW_BLOCK_VOXELS = 1 << 24  # voxels read at once by a whole-volume pass
_PROFILE_VOXELS = 1 << 22  # voxels per block of a profile pass (bounds its temporaries)


def row_blocks(
    volume: npt.NDArray[Any], voxels: int = ROW_BLOCK_VOXELS
) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """``(first row, rows)`` of a volume, about ``voxels`` voxels at a time.

    A memory-mapped stack is never held whole: each block's pages are mapped in one call
    before it is yielded and unmapped when the next is asked for (or the loop ends), so the
    process holds one block of the file, not all of it (4.8 GB at 10 um; the pages stay
    valid, a block kept longer is mapped again when read). The next block is read ahead in
    the background meanwhile, for a file not yet in the page cache.
    """
    step = max(1, voxels // max(1, volume[0].size))
    for start in range(0, len(volume), step):
        prefetch_rows(volume, start + step, start + 2 * step)
        map_rows(volume, start, start + step)
        try:
            yield start, np.asarray(volume[start : start + step])
        finally:
            release_rows(volume, start, start + step)


def sample_every(volume: npt.NDArray[Any], step: int) -> npt.NDArray[Any]:
    """``volume[::step, ::step, ::step]``, a block of rows at a time: such a sample reads
    nearly every page of a memory-mapped stack, which then stay mapped (7.2 GB at 10 um)."""
    parts = [part[(-start) % step :: step, ::step, ::step] for start, part in row_blocks(volume)]
    return np.concatenate(parts) if parts else np.asarray(volume[::step, ::step, ::step])


def plane(volume: npt.NDArray[Any], axis: int, index: int) -> npt.NDArray[Any]:
    """``np.take(volume, index, axis)`` of a 3-D volume; across rows (``axis`` 1 or 2) a block
    of rows at a time, as :func:`sample_every`."""
    if axis == 0 or len(volume) == 0:
        return np.asarray(np.take(volume, index, axis=axis))
    return np.concatenate([np.take(part, index, axis=axis) for _, part in row_blocks(volume)])


def labelled_along(volume: npt.NDArray[Any]) -> list[BoolArray]:
    """Per axis of a 3-D volume, which of its indices hold a non-zero voxel: ``volume.any(
    axis=others)`` for each axis, in one pass a block of rows at a time (three whole-volume
    ``any`` map a memory-mapped stack whole: 4.8 GB at 10 um)."""
    found = [np.zeros(n, dtype=bool) for n in volume.shape]
    for start, part in row_blocks(volume):
        labelled = part != 0
        found[0][start : start + len(part)] = labelled.any(axis=(1, 2))
        found[1] |= labelled.any(axis=(0, 2))
        found[2] |= labelled.any(axis=(0, 1))
    return found


def value_range(volume: npt.NDArray[Any]) -> tuple[Any, Any]:
    """The lowest and highest value of a volume, a block of rows at a time (a memory-mapped
    stack is never mapped whole: 7.2 GB for the 10 um Allen annotation and reference)."""
    lows, highs = zip(*((part.min(), part.max()) for _, part in row_blocks(volume)), strict=True)
    return min(lows), max(highs)


def label_histogram(labels: npt.NDArray[Any], length: int) -> IntArray:
    """Voxels per label of a volume of labels ``0 <= label < length``, a block of rows at a
    time (``np.bincount`` of the whole volume first copies it as 64-bit integers: 9.6 GB for
    the 10 um Allen compact labels)."""
    counts = np.zeros(length, dtype=np.int64)
    for _, part in row_blocks(labels):
        counts += np.bincount(part.ravel(), minlength=length)
    return counts


def label_counts(
    annotation: npt.NDArray[Any], tree: StructureTree
) -> tuple[IntArray, tuple[int, ...]]:
    """Voxels per compact label of ``tree`` (index 0: no structure) and the annotation values
    of no structure, sorted, in one blocked pass."""
    counts = np.zeros(len(tree) + 1, dtype=np.int64)
    unknown: set[int] = set()
    for _, block in row_blocks(annotation):
        labels = tree.compact(block)
        counts += np.bincount(labels.ravel(), minlength=len(counts))
        unknown.update(_unknown_in(block, labels))
    return counts, tuple(sorted(unknown))


@dataclass(frozen=True)
class LabelProfiles:
    """Voxels of each label at each index along each axis: one (length, labels) table per
    axis."""

    axes: tuple[IntArray, IntArray, IntArray]

    @property
    def counts(self) -> IntArray:
        """Voxels per label."""
        out: IntArray = self.axes[0].sum(axis=0)
        return out

    def boxes(self, members: BoolArray | None = None) -> IntArray:
        """Bounding box per label, or per row of ``members`` (rows x labels: the union of the
        row's labels): (rows, 6) as low 0..2 (inclusive) then high 0..2 (exclusive); an empty
        row gets low = size and high = 0."""
        labels = self.axes[0].shape[1]
        rows = np.eye(labels, dtype=bool) if members is None else members
        boxes = np.zeros((len(rows), 6), dtype=np.int64)
        for axis, profile in enumerate(self.axes):
            size = profile.shape[0]
            seen = profile > 0
            present = seen.any(axis=0)
            low = np.where(present, seen.argmax(axis=0), size)
            high = np.where(present, size - seen[::-1].argmax(axis=0), 0)
            boxes[:, axis] = np.where(rows, low, size).min(axis=1)
            boxes[:, 3 + axis] = np.where(rows, high, 0).max(axis=1)
        return boxes


def label_profiles(
    volume: npt.NDArray[Any],
    n_labels: int,
    to_labels: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None = None,
) -> LabelProfiles:
    """Profiles of a 3-D volume of labels ``0 <= label < n_labels``, in one blocked pass.

    ``to_labels`` turns each block of rows into such labels first (e.g.
    :meth:`StructureTree.compact` for an annotation of structure ids).
    """
    shape = volume.shape
    hists = [np.zeros(length * n_labels, dtype=np.int64) for length in shape]
    plane = shape[1] * shape[2]
    offsets1 = np.repeat(np.arange(shape[1], dtype=np.int64) * n_labels, shape[2])
    offsets2 = np.tile(np.arange(shape[2], dtype=np.int64) * n_labels, shape[1])
    for start, part in row_blocks(volume, _PROFILE_VOXELS):
        block = np.asarray(part if to_labels is None else to_labels(part)).reshape(-1, plane)
        offsets0 = (np.arange(start, start + len(block), dtype=np.int64) * n_labels)[:, None]
        hists[0] += np.bincount((block + offsets0).ravel(), minlength=hists[0].size)
        hists[1] += np.bincount((block + offsets1).ravel(), minlength=hists[1].size)
        hists[2] += np.bincount((block + offsets2).ravel(), minlength=hists[2].size)
    axes = [h.reshape(length, n_labels) for h, length in zip(hists, shape, strict=True)]
    return LabelProfiles((axes[0], axes[1], axes[2]))


@dataclass(frozen=True)
class StructureStats:
    """Size and position of every structure of a tree, descendants included.

    Arrays follow the tree's order (``tree.structures``). ``low``/``high`` are inclusive voxel
    bounds (rows of an empty structure are undefined); ``centroid`` is in voxel units (NaN for
    an empty structure); ``unknown_labels`` are the annotation values of no structure.
    """

    ids: IntArray
    voxels: IntArray
    own_voxels: IntArray
    low: IntArray
    high: IntArray
    centroid: Float64Array
    unknown_labels: tuple[int, ...]


def structure_stats(annotation: npt.NDArray[Any], tree: StructureTree) -> StructureStats:
    """Voxels, bounding box and centroid of every structure, descendants included, and the
    labels of no structure, in one pass over the annotation."""
    unknown: set[int] = set()

    def compact(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
        labels = tree.compact(block)
        unknown.update(_unknown_in(block, labels))
        return labels

    profiles = label_profiles(annotation, len(tree) + 1, compact)
    subtree = _subtree_matrix(tree)
    summed = [np.asarray(p.astype(np.float64) @ subtree) for p in profiles.axes]
    counts = profiles.counts
    voxels = np.asarray(counts.astype(np.float64) @ subtree).astype(np.int64)
    low = np.zeros((len(tree), 3), dtype=np.int64)
    high = np.zeros((len(tree), 3), dtype=np.int64)
    centroid = np.zeros((len(tree), 3), dtype=np.float64)
    for axis, profile in enumerate(summed):
        occupied = profile[:, 1:] > 0
        low[:, axis] = occupied.argmax(axis=0)
        high[:, axis] = profile.shape[0] - 1 - occupied[::-1].argmax(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            centroid[:, axis] = (np.arange(profile.shape[0]) @ profile[:, 1:]) / voxels[1:]
    return StructureStats(
        ids=tree.ids.copy(),
        voxels=voxels[1:],
        own_voxels=counts[1:].astype(np.int64),
        low=low,
        high=high,
        centroid=centroid,
        unknown_labels=tuple(sorted(unknown)),
    )


def unknown_labels(annotation: npt.NDArray[Any], tree: StructureTree) -> tuple[int, ...]:
    """The annotation values that are not 0 and not a structure of ``tree``, sorted (one
    blocked pass)."""
    return label_counts(annotation, tree)[1]


def _unknown_in(block: npt.NDArray[Any], compact: npt.NDArray[Any]) -> list[int]:
    unknown = (compact == 0) & (block != 0)
    return np.unique(block[unknown]).tolist() if unknown.any() else []


def _subtree_matrix(tree: StructureTree) -> Any:
    """Sparse (N + 1, N + 1) matrix M with M[c, s] = 1 when compact label c lies in the
    subtree of s (row and column 0, "no structure", are empty)."""
    from scipy.sparse import csr_matrix

    table = tree.ancestor_table
    n = len(tree) + 1
    levels = np.arange(table.shape[0])[:, None]
    own = tree.depths[None, :] >= levels  # the ancestor at this level is a distinct one
    own[:, 0] = False
    columns = np.broadcast_to(np.arange(n), table.shape)[own]
    return csr_matrix(
        (np.ones(columns.size), (columns, table[own])), shape=(n, n), dtype=np.float64
    )
