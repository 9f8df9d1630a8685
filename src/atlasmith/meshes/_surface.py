"""The shared surface: every boundary between two labels of an annotation, once.

Surface nets over all labels at once (one vertex per 2x2x2 cell of voxel centres holding more
than one label, one quad per pair of neighbouring voxels with different labels), decimated by
vertex clustering; each structure's mesh is then finished on its own (the smoothing stage).
The volume is processed in slabs along its first axis, each with a margin wide enough that
every vertex and face a slab keeps is exactly what the whole volume would give; the slabs are
then stitched by the vertices' global keys. So memory is bounded by the slab size, slabs run
in parallel, and the result is the same, to the bit, whatever the number or size of the slabs.

Points are in voxel index units of the annotation ("asr"), voxel ``i`` at ``i``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from atlasmith._pages import map_rows, release_rows
from atlasmith._types import BoolArray, Float32Array as FloatArray, IntArray
from atlasmith.errors import AtlasFormatError
from atlasmith.meshes._geometry import face_cross
from atlasmith.meshes._runner import Runner
from atlasmith.statistics import row_blocks

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.hierarchy import StructureTree

SLAB_VOXELS = 1 << 25  # voxels per slab, margins included (bounds the memory of a slab)...
_MIN_CORE_MARGINS = 4  # ...but a core is at least this many margins thick (margins <= 1/2)
# On a dask cluster 2 (margins up to half a slab: a third more rows read): a worker holds all
# of a slab's peak itself, and at 10 um 4-margin slabs (84 rows, 77M voxels) peaked at 3-4 GB
# in local workers, against the 4 GB a laptop's worker may have.
_REMOTE_MIN_CORE_MARGINS = 2
SLAB_BYTES_PER_VOXEL = 32  # a slab's peak memory per voxel (measured: about 30 at 12.5 um)
_CHUNK_FACES = 1 << 21  # faces per block in whole-surface loops, to bound memory
_CHUNK_CELLS = 1 << 20  # cells per block of label sets (their temporaries: ~150 bytes a cell)
_AGREEMENT = 0.7  # clusters whose mean unit normal is shorter are split by facing
_HALVES = 2  # triangles per quad
_WORK_PER_VOXEL = 0.005  # a voxel's share of a slab's work, against a label change's


class SharedSurface(NamedTuple):
    """Every boundary between two labels, once: points (float32) in voxel index units (asr axes),
    triangles, and the compact label on each side (normals point towards ``pairs[:, 0]``)."""

    points: FloatArray
    faces: IntArray
    pairs: IntArray


class Slab(NamedTuple):
    """Rows (along axis 0, in the padded volume) a slab reads, and the rows of the voxels
    whose faces it keeps (its core)."""

    start: int
    stop: int
    core_start: int
    core_stop: int


class SlabInputs(NamedTuple):
    """What every slab needs: the volume and how to treat it."""

    volume: np.ndarray[Any, Any]  # annotation (structure ids) or compact labels
    compacted: bool  # volume already holds compact labels
    tree: StructureTree
    block: int
    small: BoolArray | None = None  # per label: belongs to a structure too small to cluster
    shape: tuple[int, ...] | None = None  # the volume's, when ``volume`` is left out (remote)


def volume_shape(inputs: SlabInputs) -> tuple[int, ...]:
    """The shape of the whole volume (also where the workers get only their slabs' rows)."""
    return inputs.shape if inputs.shape is not None else tuple(inputs.volume.shape)


# --- slabs -------------------------------------------------------------------------------


def margin(block: int) -> int:
    """Rows around a core that make its vertices and faces exact: a cluster spans up to a
    block, normals and label sets one more row."""
    return block + 4


def plan_slabs(
    shape: Sequence[int],
    margin_rows: int,
    workers: int,
    work: npt.NDArray[np.float64] | None = None,
    min_core_margins: int | None = None,
) -> list[Slab]:
    """Cut the padded volume's rows into cores of at most SLAB_VOXELS voxels with their
    margins, and into at least ``workers`` cores when the volume is thick enough (a multiple
    of ``workers`` when more are needed, so that every worker gets as many).

    ``work`` (per row of the volume, e.g. ``row_work``) moves the cuts so that the cores
    hold about equal work, as long as no core gets thicker than the memory bound allows.
    ``min_core_margins``: the thinnest core, in margins (default ``_MIN_CORE_MARGINS``).
    """
    thinnest = _MIN_CORE_MARGINS if min_core_margins is None else min_core_margins
    rows = int(shape[0]) + 2
    plane = (int(shape[1]) + 2) * (int(shape[2]) + 2)
    budget = max(1, SLAB_VOXELS // plane - 2 * margin_rows)
    core = max(budget, thinnest * margin_rows)
    count = math.ceil(rows / core)
    if count < workers and rows >= workers * thinnest * margin_rows:
        count = workers
    elif count > workers and rows >= math.ceil(count / workers) * workers * margin_rows:
        count = math.ceil(count / workers) * workers
    edges = [round(k * rows / count) for k in range(count + 1)]
    if work is not None and count > 1:
        edges = _balanced_edges(work, count, margin_rows, core)
    return [
        Slab(max(0, lo - margin_rows), min(rows, hi + margin_rows), lo, hi)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]


def _balanced_edges(
    work: npt.NDArray[np.float64], count: int, thinnest: int, thickest: int
) -> list[int]:
    """Edges of ``count`` cores of the padded rows with about equal ``work`` each, every
    core ``thinnest`` to ``thickest`` rows thick (where the rows allow it)."""
    total = np.cumsum(np.concatenate([[0.0, 0.0], work, [0.0]]))  # padded rows, cumulative
    rows = len(total) - 1
    edges = [0]
    for k in range(1, count):
        wanted = int(np.searchsorted(total, k / count * total[-1]))
        low = max(edges[-1] + thinnest, rows - (count - k) * thickest)
        high = min(edges[-1] + thickest, rows - (count - k) * thinnest)
        if low > high:  # the bounds cannot all hold: equal rows, as without the work
            return [round(k * rows / count) for k in range(count + 1)]
        edges.append(min(max(wanted, low), high))
    return [*edges, rows]


def row_work(volume: np.ndarray[Any, Any]) -> npt.NDArray[np.float64]:
    """An estimate of each row's share of the surface-nets work (along axis 0): its label
    changes along the last axis, plus a little per voxel. Reads a block of rows at a time."""
    out = np.empty(len(volume), dtype=np.float64)
    for start, part in row_blocks(volume):
        changes = np.count_nonzero(part[:, :, 1:] != part[:, :, :-1], axis=(1, 2))
        out[start : start + len(part)] = changes + _WORK_PER_VOXEL * part[0].size
    return out


def slab_labels(inputs: SlabInputs, slab: Slab) -> npt.NDArray[Any]:
    """Compact labels of the slab's rows of the padded volume (zeros outside the volume).

    Rows read from a memory-mapped annotation are let go once copied (``_pages``): a worker
    that read its slabs' rows kept them all mapped, and its memory grew by the rows it had
    read (at 10 um, unclosed, the mapped 4.8 GB annotation took the two workers of the slab
    stage to 3.4 GB each)."""
    volume = inputs.volume
    lo, hi = max(slab.start - 1, 0), min(slab.stop - 1, volume.shape[0])
    map_rows(volume, lo, hi)
    try:
        part = np.asarray(volume[lo:hi])
        labels = part if inputs.compacted else compact_labels(part, inputs.tree)
        shape = (slab.stop - slab.start, volume.shape[1] + 2, volume.shape[2] + 2)
        out = np.zeros(shape, labels.dtype)
        out[lo + 1 - slab.start : hi + 1 - slab.start, 1:-1, 1:-1] = labels
    finally:
        release_rows(volume, lo, hi)
    return out


def compact_labels(annotation: np.ndarray[Any, Any], tree: StructureTree) -> npt.NDArray[Any]:
    """Compact labels of the annotation (uint16/uint32); unknown labels raise."""
    return counted_compact_labels(annotation, tree)[0]


def counted_compact_labels(
    annotation: np.ndarray[Any, Any], tree: StructureTree
) -> tuple[npt.NDArray[Any], IntArray]:
    """Compact labels of the annotation and the voxels of each (unknown labels raise).

    A block of rows at a time, so that a memory-mapped annotation is never mapped whole (at
    10 um it would add its 4.8 GB to the process's memory beside the 2.4 GB of labels), and
    counted as they are made (a second pass over the labels took 12 s at 10 um).
    """
    out: npt.NDArray[Any] | None = None
    counts = np.zeros(len(tree) + 1, dtype=np.int64)
    unknown: set[int] = set()
    for start, part in row_blocks(annotation):
        labels = tree.compact(part)
        if out is None:
            out = np.empty(annotation.shape, dtype=labels.dtype)
        out[start : start + len(part)] = labels
        counts += np.bincount(labels.reshape(-1), minlength=len(counts))
        if np.count_nonzero(labels) != np.count_nonzero(part):
            unknown.update(np.unique(part[(labels == 0) & (part != 0)]).tolist())
    if unknown:
        raise unknown_labels_error(sorted(unknown))
    if out is None:  # no rows
        return tree.compact(annotation), counts
    return out, counts


def unknown_labels_error(unknown: Sequence[int] | npt.NDArray[Any]) -> AtlasFormatError:
    """The error for annotation values that are no structure of the tree."""
    return AtlasFormatError(
        f"the annotation has {len(unknown)} label(s) with no structure in the tree, e.g. "
        f"{[int(u) for u in unknown[:5]]}: add them to structures.json or set their voxels to 0."
    )


# --- one slab ----------------------------------------------------------------------------


class _Quads(NamedTuple):
    corners: npt.NDArray[Any]  # (n, 4) flat cell indices in the slab (int32 where they fit)
    pairs: npt.NDArray[Any]  # (n, 2) labels (their own dtype): the upper voxel's first
    owned: BoolArray  # the lower voxel lies in the slab's core
    canonical: IntArray  # axis * padded volume size + the lower voxel's flat index


class SlabSurface(NamedTuple):
    """A slab's share of the shared surface: its faces by vertex key, and each key's point."""

    keys: npt.NDArray[np.uint64]  # sorted
    points: FloatArray
    # int32 faces and the labels' own dtype for pairs where they fit: the driver holds every
    # slab's share until they are stitched (2.7 GB at 10 um with int64)
    faces: npt.NDArray[Any]  # (n, 3) indices into keys
    pairs: npt.NDArray[Any]
    order: IntArray  # canonical face number: same in any slab layout


def _axis_quads(labels: npt.NDArray[Any], axis: int, slab: Slab) -> _Quads:
    """Quads for the neighbours along ``axis`` that differ: their four cells (counter-
    clockwise around +axis, so normals point from the lower voxel to the upper one, whose
    label comes first). Quads whose cells leave the slab are left out (a margin's)."""
    lower = [slice(None)] * 3
    upper = [slice(None)] * 3
    lower[axis], upper[axis] = slice(0, -1), slice(1, None)
    below, above = labels[tuple(lower)], labels[tuple(upper)]
    where = np.nonzero(below != above)
    if axis != 0:  # their cells reach one row back and need one row ahead for label sets
        inside = (where[0] >= 1) & (where[0] <= labels.shape[0] - 2)
        where = tuple(w[inside] for w in where)
    pairs = np.column_stack([above[where], below[where]])
    a1, a2 = (axis + 1) % 3, (axis + 2) % 3
    corners = []
    for d1, d2 in ((-1, -1), (0, -1), (0, 0), (-1, 0)):
        index = list(where)
        index[a1] = index[a1] + d1
        index[a2] = index[a2] + d2
        corners.append(np.ravel_multi_index(tuple(index), labels.shape))
    row = where[0].astype(np.int64) + slab.start
    owned = (row >= slab.core_start) & (row < slab.core_stop)
    plane = labels.shape[1] * labels.shape[2]
    flat = row * plane + where[1].astype(np.int64) * labels.shape[2] + where[2]
    # int32 (and the labels' own dtype for pairs) where they fit: a slab holds these for all
    # its quads, several times over, and its peak was 3-4 GB at 10 um
    cell_type = np.int32 if labels.size <= np.iinfo(np.int32).max else np.int64
    return _Quads(np.column_stack(corners).astype(cell_type), pairs, owned, flat)


class _SlabRows(Sequence[tuple[Slab, npt.NDArray[Any]]]):
    """The slabs, each with its compact labels (made as it is sent: a remote worker's)."""

    def __init__(self, slabs: list[Slab], inputs: SlabInputs) -> None:
        self.slabs, self.inputs = slabs, inputs

    def __len__(self) -> int:
        return len(self.slabs)

    @overload
    def __getitem__(self, index: int) -> tuple[Slab, npt.NDArray[Any]]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[Slab, npt.NDArray[Any]]]: ...
    def __getitem__(
        self, index: int | slice
    ) -> tuple[Slab, npt.NDArray[Any]] | Sequence[tuple[Slab, npt.NDArray[Any]]]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        slab = self.slabs[index]
        return slab, slab_labels(self.inputs, slab)


def slab_surface(slab: Slab, inputs: SlabInputs) -> SlabSurface:
    """Surface nets and clustering of one slab; the faces its core owns."""
    return labelled_slab_surface((slab, slab_labels(inputs, slab)), inputs)


def labelled_slab_surface(item: tuple[Slab, npt.NDArray[Any]], inputs: SlabInputs) -> SlabSurface:
    """:func:`slab_surface` of a slab sent with its labels (``slab_labels``)."""
    slab, labels = item
    parts = [_axis_quads(labels, axis, slab) for axis in range(3)]
    total_rows = volume_shape(inputs)[0] + 2
    volume_size = total_rows * labels.shape[1] * labels.shape[2]
    corners = np.concatenate([p.corners for p in parts])
    pairs = np.concatenate([p.pairs for p in parts])
    owned = np.concatenate([p.owned for p in parts])
    canonical = np.concatenate([axis * volume_size + p.canonical for axis, p in enumerate(parts)])
    del parts
    if len(corners) == 0:
        return _empty_slab()
    # each cell's rank among the used ones, counted in place (a bool mask beside its int32
    # cumulative sum held 5 bytes a voxel of the slab: 385 MB at 10 um)
    rank = np.zeros(labels.size, dtype=np.int32 if labels.size < 2**31 else np.int64)
    rank[corners.ravel()] = 1
    cells = np.flatnonzero(rank)
    np.cumsum(rank, out=rank)
    quads = rank[corners]  # int32 where the cells fit
    quads -= 1
    del rank, corners
    plane = labels.shape[1] * labels.shape[2]  # the padded volume's too
    points = _cell_points(cells, labels.shape, slab.start)
    faces = _split_quads(points, quads)
    del quads
    face_pairs = np.concatenate([pairs] * _HALVES)
    del pairs
    signature, alone = _label_sets(labels, cells, inputs.small)
    global_cell = (cells + slab.start * plane).astype(np.uint64)  # in the padded volume
    del cells
    key = _cluster_keys(points, faces, signature, global_cell, inputs)
    key[alone] = global_cell[alone]
    unique, cluster = np.unique(key, return_inverse=True)
    counts = np.bincount(cluster).astype(np.float64)
    merged = np.column_stack(
        [np.bincount(cluster, points[:, axis].astype(np.float64)) / counts for axis in range(3)]
    ).astype(np.float32)
    keep = np.concatenate([owned] * _HALVES)
    kept_faces = cluster[faces[keep]]
    alive = alive_mask(kept_faces)
    kept_faces = kept_faces[alive]
    order = (np.arange(_HALVES).repeat(len(owned)) * (3 * volume_size))[keep] + np.concatenate(
        [canonical] * _HALVES
    )[keep]
    referenced = np.flatnonzero(np.bincount(kept_faces.ravel(), minlength=len(unique)))
    local = np.zeros(len(unique), dtype=np.int32 if len(unique) <= 2**31 - 1 else np.int64)
    local[referenced] = np.arange(len(referenced))
    return SlabSurface(
        unique[referenced],
        merged[referenced],
        local[kept_faces],
        face_pairs[keep][alive],
        order[alive],
    )


def _cell_points(cells: IntArray, shape: tuple[int, ...], start: int) -> FloatArray:
    """Centres of the slab's cells (flat indices) in the annotation's voxel units: cell
    (i, j, k) of the padded volume at i - 0.5 (float32: exact, the volume is far smaller
    than 2**24 voxels a side)."""
    rows, rest = np.divmod(cells, shape[1] * shape[2])
    points = np.empty((len(cells), 3), dtype=np.float32)
    points[:, 0] = rows + start
    del rows
    points[:, 1], points[:, 2] = np.divmod(rest, shape[2])
    points -= np.float32(0.5)
    return points


def _empty_slab() -> SlabSurface:
    return SlabSurface(
        np.zeros(0, np.uint64),
        np.zeros((0, 3), np.float32),
        np.zeros((0, 3), np.int64),
        np.zeros((0, 2), np.int64),
        np.zeros(0, np.int64),
    )


def _cluster_keys(
    points: FloatArray,
    faces: IntArray,
    signature: npt.NDArray[np.uint64],
    global_cell: npt.NDArray[np.uint64],
    inputs: SlabInputs,
) -> npt.NDArray[np.uint64]:
    """Each vertex's cluster key: vertices with the same key are merged into their mean.

    Vertices merge when their cells lie in the same block of ``block`` cells, hold the same
    set of labels and face the same way, so merged vertices lie on the boundaries of exactly
    the same structures: every structure keeps a closed surface within its voxels' bounds.
    Where a cluster's normals disagree (the two sides of a thin sheet, a tiny blob), it is
    split by facing. (Label sets are compared by a 64-bit hash.) Vertices of structures
    smaller than two blocks wide are not merged (``SlabInputs.small``): merging could leave
    such a structure without faces.
    """
    block = inputs.block
    if block <= 1:
        return global_cell
    block_index = _block_index(points, volume_shape(inputs), block)
    key = _mix(signature ^ block_index)
    normals = _vertex_normals(points, faces)
    _, cluster = np.unique(key, return_inverse=True)
    agreement = np.linalg.norm(
        np.column_stack([np.bincount(cluster, normals[:, k]) for k in range(3)]), axis=1
    ) / np.bincount(cluster)
    split = agreement[cluster] < _AGREEMENT
    key[split] = _mix(key[split] ^ _facing(normals[split]).astype(np.uint64))
    return key


def _block_index(points: FloatArray, shape: Sequence[int], block: int) -> npt.NDArray[np.uint64]:
    """The flat index of each cell's block (``block`` cells a side) in the padded volume of
    ``shape``, from the cells' centres (:func:`_cell_points`: each cell's index less a half,
    exact in float32), a column at a time (the cells' flat indices were split into these
    positions once already)."""
    blocks = [(int(n) + 2) // block + 1 for n in shape]
    index = np.zeros(len(points), dtype=np.uint64)
    for axis in range(3):
        position = (points[:, axis] + np.float32(0.5)).astype(np.uint64)
        position //= np.uint64(block)
        if axis:
            index *= np.uint64(blocks[axis])
        index += position
    return index


def stitch(parts: list[SlabSurface]) -> SharedSurface:
    """One shared surface from the slabs' shares: vertices by key, faces in canonical order.

    ``parts`` is emptied once joined, and the faces and pairs are reordered one after the
    other: at 10 um the shares and the surface are 3-4 GB each.
    """
    keys = np.concatenate([p.keys for p in parts])
    unique, first = np.unique(keys, return_index=True)
    del keys
    points = np.concatenate([p.points for p in parts])[first]
    faces = np.concatenate([np.searchsorted(unique, p.keys)[p.faces] for p in parts])
    pairs = np.concatenate([p.pairs.astype(np.int64, copy=False) for p in parts])
    order = np.concatenate([p.order for p in parts])
    parts.clear()
    order = np.argsort(order, kind="stable")
    faces = faces[order]
    pairs = pairs[order]
    return SharedSurface(points, faces, pairs)


def slab_surfaces(inputs: SlabInputs, runner: Runner) -> list[SlabSurface]:
    """The slabs' shares of the shared surface of ``inputs.volume``, slab by slab on
    ``runner`` (with no more slabs in memory at once than half the available memory holds),
    for :func:`stitch` (the caller can let the volume go first)."""
    shape = inputs.volume.shape
    work = row_work(inputs.volume) if runner.workers > 1 else None
    thinnest = min(_MIN_CORE_MARGINS, _REMOTE_MIN_CORE_MARGINS) if runner.remote else None
    slabs = plan_slabs(shape, margin(inputs.block), runner.workers, work, thinnest)
    if len(slabs) == 1:
        return [slab_surface(slabs[0], inputs)]
    plane = (shape[1] + 2) * (shape[2] + 2)
    voxels = max((s.stop - s.start) * plane for s in slabs)
    if runner.remote:  # each slab goes with its rows, never the whole volume (2.4 GB at 10 um)
        sent = inputs._replace(volume=np.zeros((0, 0, 0), inputs.volume.dtype), shape=shape)
        return list(runner.map(labelled_slab_surface, _SlabRows(slabs, inputs), sent))
    return list(runner.map(slab_surface, slabs, inputs, concurrent_slabs(voxels)))


def extract(inputs: SlabInputs, runner: Runner) -> SharedSurface:
    """The shared surface of ``inputs.volume``: :func:`slab_surfaces`, stitched."""
    return stitch(slab_surfaces(inputs, runner))


def concurrent_slabs(voxels: int, available: int | None = None) -> int:
    """How many slabs of ``voxels`` voxels fit at once in half the available memory (at
    least one): a slab needs about SLAB_BYTES_PER_VOXEL bytes per voxel at its peak."""
    if available is None:
        available = available_memory()
    return max(1, available // 2 // (SLAB_BYTES_PER_VOXEL * max(1, voxels)))


def available_memory() -> int:
    """Memory the system can give without swapping (Linux: MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume plenty
        return 1 << 40


def alive_mask(faces: npt.NDArray[Any]) -> BoolArray:
    """Faces whose three vertices are distinct."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    mask: BoolArray = (a != b) & (b != c) & (a != c)
    return mask


# --- helpers -----------------------------------------------------------------------------


def _label_sets(
    padded: npt.NDArray[Any], cells: IntArray, small: BoolArray | None
) -> tuple[npt.NDArray[np.uint64], BoolArray]:
    """A 64-bit hash of the set of labels among each cell's 8 voxels, and whether one of
    them is ``small``; a block of cells at a time (all at once, its temporaries took about
    250 bytes a cell: the largest part of a slab's peak at 10 um)."""
    parts = [
        _block_label_sets(padded, cells[start : start + _CHUNK_CELLS], small)
        for start in range(0, len(cells), _CHUNK_CELLS)
    ]
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _block_label_sets(
    padded: npt.NDArray[Any], cells: IntArray, small: BoolArray | None
) -> tuple[npt.NDArray[np.uint64], BoolArray]:
    """:func:`_label_sets` of some cells."""
    sy, sz = padded.shape[1], padded.shape[2]
    offsets = np.array(
        [di * sy * sz + dj * sz + dk for di in (0, 1) for dj in (0, 1) for dk in (0, 1)]
    )
    around = padded.ravel()[cells[:, None] + offsets]
    alone = np.zeros(len(cells), dtype=bool) if small is None else small[around].any(axis=1)
    around = np.sort(around.astype(np.uint64), axis=1)
    repeated = np.zeros(around.shape, dtype=bool)
    repeated[:, 1:] = around[:, 1:] == around[:, :-1]
    around[repeated] = np.iinfo(np.uint64).max  # count each label once, then sort them last
    around.sort(axis=1)
    signature = np.zeros(len(cells), dtype=np.uint64)
    for column in around.T:
        signature = _mix(signature ^ column)
    return signature, alone


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: a well-spread 64-bit hash of each value (wrapping arithmetic)."""
    values = values + np.uint64(0x9E3779B97F4A7C15)
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: npt.NDArray[np.uint64] = values ^ (values >> np.uint64(31))
    return out


def _split_quads(points: FloatArray, quads: IntArray) -> IntArray:
    """Two triangles per quad, cut along the shorter diagonal (same winding): every quad's
    first triangle, then every second one; a block of quads at a time (bounds temporaries)."""
    count = len(quads)
    out: IntArray = np.empty((_HALVES * count, 3), dtype=quads.dtype)
    for start in range(0, count, _CHUNK_FACES):
        block = quads[start : start + _CHUNK_FACES]
        a, b, c, d = block.T
        short02 = (_square_length(points, a, c) <= _square_length(points, b, d))[:, None]
        stop = start + len(block)
        out[start:stop] = np.where(short02, block[:, [0, 1, 2]], block[:, [0, 1, 3]])
        out[count + start : count + stop] = np.where(
            short02, block[:, [0, 2, 3]], block[:, [1, 2, 3]]
        )
    return out


def _square_length(points: FloatArray, start: IntArray, stop: IntArray) -> FloatArray:
    """Squared length of the segments start -> stop."""
    delta = points[stop] - points[start]
    out: FloatArray = np.einsum("ij,ij->i", delta, delta)
    return out


# --- clustering helpers ---------------------------------------------------------------------


def block_size(cluster_um: float, resolution: npt.NDArray[np.float64]) -> int:
    """Clustering block in voxels: about ``cluster_um``, at least 2 (1 when off)."""
    if cluster_um <= 0:
        return 1
    return max(2, round(cluster_um / float(resolution.min())))


def _vertex_normals(points: FloatArray, faces: IntArray) -> npt.NDArray[np.float64]:
    """Unit normal per vertex: the sum of its faces' (area-weighted) normals."""
    summed = np.zeros((len(points), 3))
    for start in range(0, len(faces), _CHUNK_FACES):
        chunk = faces[start : start + _CHUNK_FACES]
        _, normals = face_cross(points, chunk)
        # a block's faces use a narrow range of the vertices (cells are numbered in the
        # volume's order): count over that range, not over every vertex nine times a block
        low, high = int(chunk.min()), int(chunk.max()) + 1
        for k in range(3):
            corner = chunk[:, k] - low
            for axis in range(3):
                summed[low:high, axis] += np.bincount(corner, normals[:, axis], high - low)
    summed /= np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
    return summed


def _facing(normals: npt.NDArray[np.float64]) -> IntArray:
    """Which of 27 directions (each axis: -, 0, +) each unit normal points to.

    An axis counts when it carries at least a third of the normal, so the corners of a
    small box face different ways and are never merged into a flat shape.
    """
    sign = np.where(np.abs(normals) >= 1.0 / 3.0, np.sign(normals), 0.0).astype(np.int64) + 1
    out: IntArray = (sign[:, 0] * 3 + sign[:, 1]) * 3 + sign[:, 2]
    return out
