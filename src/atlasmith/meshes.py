"""The mesh engine: one closed, smoothed, decimated mesh per structure, from an annotation.

The design (shared surface, face selection):

1. The annotation becomes compact labels (one per structure, 0 outside), padded by one voxel.
2. One multi-label surface-nets pass extracts every boundary between two labels once, as a
   shared surface whose faces carry the label pair on their two sides (one vertex per 2x2x2
   cell of voxel centres holding several labels, one quad per pair of differing
   neighbours), and smooths it once (Taubin, each vertex kept near its cell).
3. The shared surface is decimated once: vertices in the same block (``cluster_um``) whose
   cells hold the same set of labels, and that face the same way, are merged; optionally a
   quadric edge collapse (``fast_simplification``) follows, in pieces along the first axis
   that run in parallel, with the vertices on the cuts between pieces kept in place.
4. Every structure's mesh (leaf or parent) is then the set of faces with exactly one side in
   the structure or one of its descendants, oriented so its normals point outwards. Parents
   are therefore exactly the union of their descendants, every mesh is closed, neighbours
   share their common boundary, and each surface element is smoothed and decimated once
   instead of once per ancestor. Selection and OBJ writing run in parallel (local processes
   or a dask.distributed cluster).

Coordinates are micrometres in the stacks' axes ("asr"), voxel index ``i`` at
``i * resolution``. The output is byte-identical for the same input and parameters, whatever
the number of workers or the scheduler.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from atlasmith.errors import AtlasExistsError, AtlasFormatError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.hierarchy import StructureTree

__all__ = ["MeshParameters", "generate_meshes", "meshes_for_folder", "read_atlas_inputs"]

ENGINE = "atlasmith-surface-nets/1"
_PIECE_FACES = 300_000  # faces per decimation piece; fixed, so output never depends on workers
# Boundaries (label pairs) with fewer faces than this are never decimated: the quadric pass
# would otherwise collapse a structure of a few voxels to nothing and lose its mesh.
_SMALL_PATCH_FACES = 48
_TASKS_PER_WORKER = 6  # structure chunks per worker, for load balance
_REACH = 0.5  # how far (voxels, per axis) smoothing may move a vertex from its cell centre
_CHUNK_FACES = 1 << 21  # faces per block in whole-surface loops, to bound memory
_AGREEMENT = 0.7  # clusters whose mean unit normal is shorter are split by facing
_MIN_PATCH_FACES = 32  # vertices next to smaller patches are not merged

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class MeshParameters:
    """How meshes are made; recorded in the package manifest (``to_dict``).

    Parameters
    ----------
    smoothing : int
        Iterations of the constrained smoothing of the shared surface (0: none).
    cluster_um : float
        Decimation by vertex clustering: vertices within a block of about ``cluster_um``
        micrometres (at least 2 voxels; 0: no clustering) that lie on the boundaries of the
        same structures and face the same way are merged. The block grows as voxels shrink,
        so finer atlases do not get heavier meshes.
    decimate : float
        Fraction of the remaining triangles kept by a further quadric decimation, in (0, 1]
        (1: none).
    closing : int
        Iterations of a morphological closing of the brain's outline before meshing: background
        voxels that the closing (or hole filling) adds take the nearest structure's label.
        0 keeps the annotation as it is.
    decimals : int
        Decimals of the vertex coordinates (micrometres) written to the OBJ files.
    """

    smoothing: int = 16
    cluster_um: float = 150.0
    decimate: float = 1.0
    closing: int = 0
    decimals: int = 2

    def __post_init__(self) -> None:
        checks = (
            ("smoothing", self.smoothing, isinstance(self.smoothing, int) and self.smoothing >= 0),
            ("cluster_um", self.cluster_um, 0.0 <= self.cluster_um <= 10_000.0),
            ("decimate", self.decimate, 0.0 < self.decimate <= 1.0),
            ("closing", self.closing, isinstance(self.closing, int) and self.closing >= 0),
            ("decimals", self.decimals, isinstance(self.decimals, int) and 0 <= self.decimals <= 6),
        )
        for name, value, ok in checks:
            if isinstance(value, bool) or not ok:
                raise ConfigError(
                    f"mesh parameter {name}={value!r} is not valid: smoothing and closing are "
                    "integers >= 0, cluster_um is 0 to 10000, decimate is a fraction in (0, 1], "
                    "decimals is 0 to 6."
                )

    def to_dict(self) -> dict[str, Any]:
        """The parameters and the engine name, JSON-ready."""
        return {"engine": ENGINE, **asdict(self)}


class SharedSurface(NamedTuple):
    """Every boundary between two labels, once: points (float32) in voxel index units (asr axes),
    triangles, and the compact label on each side (normals point towards ``pairs[:, 0]``)."""

    points: FloatArray
    faces: IntArray
    pairs: IntArray
    signature: npt.NDArray[np.uint64]  # per point: hash of the set of labels around it


class _Patches(NamedTuple):
    """The shared surface with faces grouped by label pair, ready for face selection."""

    points: FloatArray
    faces: IntArray
    first: IntArray  # label on the side the normals point to, per patch
    second: IntArray
    starts: IntArray
    stops: IntArray


# --- input -------------------------------------------------------------------------------


def _check_annotation(annotation: np.ndarray[Any, Any]) -> None:
    """Raise AtlasFormatError for an annotation that cannot be meshed."""
    if annotation.ndim != 3:
        raise AtlasFormatError(
            f"the annotation has {annotation.ndim} dimensions, expected 3 (a volume)."
        )
    if not (np.issubdtype(annotation.dtype, np.integer) or annotation.dtype == np.bool_):
        raise AtlasFormatError(
            f"the annotation has dtype {annotation.dtype}, expected integers (structure ids): "
            "convert it with annotation.astype(np.uint32) after checking its values are whole."
        )
    if annotation.size == 0 or not annotation.any():
        raise AtlasFormatError(
            "the annotation is empty (every voxel is 0): there is no structure to mesh."
        )


def _compact_labels(annotation: np.ndarray[Any, Any], tree: StructureTree) -> npt.NDArray[Any]:
    """Compact labels of the annotation (uint16/uint32); unknown labels raise."""
    labels = tree.compact(annotation)
    if np.count_nonzero(labels) != np.count_nonzero(annotation):
        unknown = np.unique(annotation[(labels == 0) & (annotation != 0)])
        raise AtlasFormatError(
            f"the annotation has {unknown.size} label(s) with no structure in the tree, e.g. "
            f"{unknown[:5].tolist()}: add them to structures.json or set their voxels to 0."
        )
    return labels


def _close_outline(labels: npt.NDArray[Any], iterations: int) -> npt.NDArray[Any]:
    """Fill the background voxels that closing the brain's outline adds with the nearest label."""
    from scipy import ndimage

    inside = labels != 0
    closed = ndimage.binary_closing(inside, iterations=iterations, border_value=0)
    added = ndimage.binary_fill_holes(closed) & ~inside
    if not added.any():
        return labels
    _, nearest = ndimage.distance_transform_edt(~inside, return_indices=True)
    filled = labels.copy()
    filled[added] = labels[tuple(axis[added] for axis in nearest)]
    return filled


# --- the shared surface ------------------------------------------------------------------


def _surface_nets(
    labels: npt.NDArray[Any], smoothing: int, ancestors: IntArray | None = None
) -> SharedSurface:
    """Extract the boundaries between all labels in one pass, and smooth them.

    Surface nets: one vertex per 2x2x2 cell of voxel centres that holds more than one label,
    one quad per pair of neighbouring voxels with different labels (joining the four cells
    around their common face). Every structure's set of faces is then closed. ``ancestors``
    (the tree's ancestor table over compact labels) makes the smoothing follow the hierarchy
    (see _smoothing_graph).
    """
    padded = np.pad(labels, 1)
    quads, pairs = zip(*(_axis_quads(padded, axis) for axis in range(3)), strict=True)
    corners = np.concatenate(quads)
    pairs_once = np.concatenate(pairs)
    del quads, pairs
    used = np.zeros(padded.size, dtype=bool)
    used[corners.ravel()] = True
    cells = np.flatnonzero(used)
    rank = np.cumsum(used, dtype=np.int64 if padded.size >= 2**31 else np.int32)
    del used
    corners = (rank[corners] - 1).astype(np.int64)
    del rank
    # cell (i, j, k) is centred at i + 0.5 in padded voxel indices, i - 0.5 in the annotation's
    centres = np.column_stack(np.unravel_index(cells, padded.shape)).astype(np.float32) - 0.5
    if smoothing:
        graph = _smoothing_graph(corners, _pair_levels(pairs_once, ancestors), len(centres))
        points = _smooth(centres, graph, smoothing)
    else:
        points = centres
    faces = _split_quads(points, corners)
    return SharedSurface(
        points, faces, np.concatenate([pairs_once] * 2), _label_sets(padded, cells)
    )


def _pair_levels(pairs: IntArray, ancestors: IntArray | None) -> tuple[IntArray, IntArray]:
    """Per quad: the depth of the common ancestor of its two labels (-1 when one side is
    outside the brain) and a dense id of the boundary it belongs to at that depth (the two
    labels' ancestors one level below the common one)."""
    width = int(pairs.max()) + 1
    low, high = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    unique, inverse = np.unique(low * width + high, return_inverse=True)
    inverse = inverse.ravel()
    if ancestors is None:  # a flat hierarchy: every boundary at the same level
        return np.zeros(len(pairs), dtype=np.int64), inverse.astype(np.int64)
    first, second = unique // width, unique % width
    same = ancestors[:, first] == ancestors[:, second]
    level = same.sum(axis=0) - 1
    level[(first == 0) | (second == 0)] = -1
    below = np.minimum(level + 1, len(ancestors) - 1)
    coarse_a = ancestors[below, first]
    coarse_b = ancestors[below, second]
    low, high = np.minimum(coarse_a, coarse_b), np.maximum(coarse_a, coarse_b)
    _, boundary = np.unique(low * width + high, return_inverse=True)
    return level[inverse], boundary.ravel()[inverse].astype(np.int64)


def _smoothing_graph(quads: IntArray, levels: tuple[IntArray, IntArray], n: int) -> Any:
    """Which neighbours each vertex is averaged with (a sparse 0/1 matrix).

    Each vertex follows the coarsest boundary it lies on (the one highest in the hierarchy:
    the brain's outline first, then the boundaries between top-level structures, ...), so
    a structure's surface is smoothed as a whole and is never pulled towards the boundaries
    between its own substructures. Where several boundaries of that level meet (a junction
    line), the vertex moves only along the junction.
    """
    from scipy import sparse

    level, boundary = levels
    coarsest = np.full(n, np.iinfo(np.int16).max, dtype=np.int16)
    for value in np.unique(level)[::-1]:  # the smallest level is written last
        coarsest[quads[level == value].ravel()] = value
    # per vertex: does more than one boundary of its level meet there? (variance of the ids)
    on_level = coarsest[quads] == level[:, None]
    at = quads[on_level]
    ids = np.broadcast_to(boundary[:, None], quads.shape)[on_level].astype(np.float64)
    count = np.bincount(at, minlength=n)
    total = np.bincount(at, ids, minlength=n)
    squares = np.bincount(at, ids**2, minlength=n)
    junction = count * squares - total**2 > 0.5
    del at, ids, count, total, squares
    # directed quad edges i -> j on i's level; a junction vertex follows junction vertices only
    rows, columns = [], []
    for k in range(4):
        for i, j, here in (
            (quads[:, k], quads[:, (k + 1) % 4], on_level[:, k]),
            (quads[:, (k + 1) % 4], quads[:, k], on_level[:, (k + 1) % 4]),
        ):
            keep = here & (~junction[i] | junction[j])
            rows.append(i[keep])
            columns.append(j[keep])
    start, stop = np.concatenate(rows), np.concatenate(columns)
    graph = sparse.csr_matrix((np.ones(len(start), dtype=np.float32), (start, stop)), (n, n))
    graph.data[:] = 1.0  # an edge shared by several quads counts once
    return graph


def _label_sets(padded: npt.NDArray[Any], cells: IntArray) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of the set of labels among each cell's 8 voxels."""
    sy, sz = padded.shape[1], padded.shape[2]
    offsets = np.array(
        [di * sy * sz + dj * sz + dk for di in (0, 1) for dj in (0, 1) for dk in (0, 1)]
    )
    around = np.sort(padded.ravel()[cells[:, None] + offsets].astype(np.uint64), axis=1)
    repeated = np.zeros(around.shape, dtype=bool)
    repeated[:, 1:] = around[:, 1:] == around[:, :-1]
    around[repeated] = np.iinfo(np.uint64).max  # count each label once, then sort them last
    around.sort(axis=1)
    signature = np.zeros(len(cells), dtype=np.uint64)
    for column in around.T:
        signature = _mix(signature ^ column)
    return signature


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: a well-spread 64-bit hash of each value (wrapping arithmetic)."""
    values = values + np.uint64(0x9E3779B97F4A7C15)
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: npt.NDArray[np.uint64] = values ^ (values >> np.uint64(31))
    return out


def _axis_quads(padded: npt.NDArray[Any], axis: int) -> tuple[IntArray, IntArray]:
    """Quads (as flat cell indices) for the neighbours along ``axis`` that differ, with the
    labels on their two sides: normals point from the lower voxel to the upper one, whose
    label comes first."""
    lower = [slice(None)] * 3
    upper = [slice(None)] * 3
    lower[axis], upper[axis] = slice(0, -1), slice(1, None)
    below, above = padded[tuple(lower)], padded[tuple(upper)]
    where = np.nonzero(below != above)
    pairs = np.column_stack([above[where], below[where]]).astype(np.int64)
    a1, a2 = (axis + 1) % 3, (axis + 2) % 3
    corners = []
    for d1, d2 in ((-1, -1), (0, -1), (0, 0), (-1, 0)):  # counter-clockwise around +axis
        index = list(where)
        index[a1] = index[a1] + d1
        index[a2] = index[a2] + d2
        corners.append(np.ravel_multi_index(tuple(index), padded.shape))
    return np.column_stack(corners).astype(np.int64), pairs


def _smooth(centres: FloatArray, graph: Any, iterations: int) -> FloatArray:
    """Taubin smoothing over ``graph`` (see _smoothing_graph), each vertex kept near its cell."""
    degree = np.diff(graph.indptr)
    inverse_degree = (1.0 / np.maximum(degree, 1)).astype(np.float32)[:, None]
    still = (degree == 0)[:, None]
    points = centres.copy()
    for step in range(iterations):
        factor = np.float32(0.5 if step % 2 == 0 else -0.53)
        moved = factor * ((graph @ points) * inverse_degree - points)
        moved[still[:, 0]] = 0.0
        points += moved
        np.clip(points, centres - _REACH, centres + _REACH, out=points)
    return points


def _split_quads(points: FloatArray, quads: IntArray) -> IntArray:
    """Two triangles per quad, cut along the shorter diagonal (same winding)."""
    a, b, c, d = quads.T
    short02 = _square_length(points, a, c) <= _square_length(points, b, d)
    first = np.where(short02[:, None], quads[:, [0, 1, 2]], quads[:, [0, 1, 3]])
    second = np.where(short02[:, None], quads[:, [0, 2, 3]], quads[:, [1, 2, 3]])
    return np.concatenate([first, second])


def _square_length(points: FloatArray, start: IntArray, stop: IntArray) -> FloatArray:
    """Squared length of the segments start -> stop."""
    delta = points[stop] - points[start]
    out: FloatArray = np.einsum("ij,ij->i", delta, delta)
    return out


# --- vertex clustering -------------------------------------------------------------------


def _block(cluster_um: float, resolution: npt.NDArray[np.float64]) -> int:
    """Clustering block in voxels: about ``cluster_um``, at least 2 (1 when off)."""
    if cluster_um <= 0:
        return 1
    return max(2, round(cluster_um / float(resolution.min())))


def _cluster(surface: SharedSurface, block: int) -> SharedSurface:
    """Merge the vertices that share a block of ``block`` voxels, the set of labels around
    them and a facing direction into their mean, and drop the faces that collapse.

    Merged vertices lie on the boundaries of exactly the same structures, so every structure
    keeps a closed surface within its voxels' bounds and neighbours still share their
    boundary; vertices on opposite sides of a thin sheet (opposite normals) are never merged,
    so thin structures keep their two sides. (Label sets are compared by a 64-bit hash.)
    """
    if block <= 1:
        return surface
    points, faces = surface.points, surface.faces
    width = int(surface.pairs.max()) + 1
    pair_index = surface.pairs[:, 0] * width + surface.pairs[:, 1]
    patch_size = np.bincount(pair_index)[pair_index]
    smallest = np.full(len(points), len(faces), dtype=np.int64)
    for k in range(3):
        np.minimum.at(smallest, faces[:, k], patch_size)
    cell = np.floor((points + 0.5) / block).astype(np.int64) + 1
    cell_index = np.ravel_multi_index(cell.T, tuple(cell.max(axis=0) + 1)).astype(np.uint64)
    key = _mix(surface.signature ^ cell_index)
    # Where a cluster's normals disagree (the two sides of a thin sheet, a tiny blob), its
    # vertices are split further by the way they face.
    normals = _vertex_normals(points, faces)
    _, cluster = np.unique(key, return_inverse=True)
    agreement = np.linalg.norm(
        np.column_stack([np.bincount(cluster, normals[:, k]) for k in range(3)]), axis=1
    ) / np.bincount(cluster)
    split = agreement[cluster] < _AGREEMENT
    key[split] = _mix(key[split] ^ _facing(normals[split]).astype(np.uint64))
    # Vertices next to a small patch (tiny structures, short contacts), which merging would
    # flatten, keep their place.
    alone = smallest < _MIN_PATCH_FACES
    key[alone] = np.flatnonzero(alone).astype(np.uint64)
    _, first, cluster = np.unique(key, return_index=True, return_inverse=True)
    counts = np.bincount(cluster).astype(np.float64)
    merged = np.column_stack(
        [np.bincount(cluster, points[:, axis].astype(np.float64)) / counts for axis in range(3)]
    ).astype(np.float32)
    new_faces = cluster[faces]
    alive = _alive_mask(new_faces)
    return SharedSurface(merged, new_faces[alive], surface.pairs[alive], surface.signature[first])


def _vertex_normals(points: FloatArray, faces: IntArray) -> npt.NDArray[np.float64]:
    """Unit normal per vertex: the sum of its faces' (area-weighted) normals."""
    summed = np.zeros((len(points), 3))
    for start in range(0, len(faces), _CHUNK_FACES):
        chunk = faces[start : start + _CHUNK_FACES]
        a, b, c = (points[chunk[:, k]] for k in range(3))
        normals = np.cross(b - a, c - a)
        for k in range(3):
            for axis in range(3):
                summed[:, axis] += np.bincount(chunk[:, k], normals[:, axis], len(points))
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    out: npt.NDArray[np.float64] = summed / np.maximum(length, 1e-12)
    return out


def _facing(normals: npt.NDArray[np.float64]) -> IntArray:
    """Which of 27 directions (each axis: -, 0, +) each unit normal points to.

    An axis counts when it carries at least a third of the normal, so the corners of a
    small box face different ways and are never merged into a flat shape.
    """
    sign = np.where(np.abs(normals) >= 1.0 / 3.0, np.sign(normals), 0.0).astype(np.int64) + 1
    out: IntArray = (sign[:, 0] * 3 + sign[:, 1]) * 3 + sign[:, 2]
    return out


# --- decimation in pieces ----------------------------------------------------------------


class _Piece(NamedTuple):
    """One slab of the shared surface to decimate: local points, faces, frozen vertices."""

    points: FloatArray
    faces: IntArray
    frozen: BoolArray
    keep: float


def _pieces(surface: SharedSurface, keep: float) -> tuple[list[IntArray], list[_Piece]]:
    """Cut the surface into slabs of about _PIECE_FACES faces along axis 0."""
    points, faces = surface.points, surface.faces
    n_pieces = max(1, math.ceil(len(faces) / _PIECE_FACES))
    centre = points[faces, 0].mean(axis=1)
    cuts = np.quantile(centre, np.arange(1, n_pieces) / n_pieces)
    piece = np.searchsorted(cuts, centre)
    # A vertex is frozen when its faces lie in more than one piece (their piece ids vary).
    corner_piece = np.repeat(piece, 3).astype(np.float64)
    count = np.bincount(faces.ravel(), minlength=len(points))
    total = np.bincount(faces.ravel(), corner_piece, minlength=len(points))
    squares = np.bincount(faces.ravel(), corner_piece**2, minlength=len(points))
    frozen = (count * squares - total**2 > 0.5) | _small_patch_vertices(surface)
    members, out = [], []
    for k in range(n_pieces):
        local_faces = faces[piece == k]
        used = _used_vertices(local_faces, len(points))
        remap = np.cumsum(used) - 1
        members.append(np.flatnonzero(used))
        out.append(_Piece(points[used], remap[local_faces], frozen[used], keep))
    return members, out


def _small_patch_vertices(surface: SharedSurface) -> BoolArray:
    """Vertices of the boundaries between two labels that have few faces (kept as they are)."""
    _, pair_of_face, sizes = np.unique(
        surface.pairs, axis=0, return_inverse=True, return_counts=True
    )
    small = sizes[pair_of_face.ravel()] < _SMALL_PATCH_FACES
    return _used_vertices(surface.faces[small], len(surface.points))


def _used_vertices(faces: IntArray, n_points: int) -> BoolArray:
    """Which of n_points vertices the faces use."""
    used = np.zeros(n_points, dtype=bool)
    used[faces.ravel()] = True
    return used


def _decimate_piece(piece: _Piece, _shared: Any = None) -> tuple[IntArray, FloatArray]:
    """Decimate one piece; returns each vertex's surviving representative and positions.

    Frozen vertices get a tiny extra triangle each, which makes them border vertices, and
    border vertices are never collapsed (``preserve_border``).
    """
    import fast_simplification

    n, frozen = len(piece.points), np.flatnonzero(piece.frozen)
    anchors = np.repeat(piece.points[frozen], 2, axis=0)
    anchors[0::2, 1] += 1e-3
    anchors[1::2, 2] += 1e-3
    extra = np.column_stack(
        [frozen, n + 2 * np.arange(len(frozen)), n + 1 + 2 * np.arange(len(frozen))]
    )
    target = len(frozen) + max(4, math.ceil(piece.keep * len(piece.faces)))
    all_faces = np.concatenate([piece.faces, extra])
    new_points, _, collapses = fast_simplification.simplify(
        np.concatenate([piece.points, anchors]),
        all_faces,
        target_count=target,
        preserve_border=True,
        return_collapses=True,
    )
    represent = np.arange(n + len(anchors), dtype=np.int64)
    represent[collapses[:, 1]] = collapses[:, 0]
    while not np.array_equal(nxt := represent[represent], represent):
        represent = nxt
    # The simplifier keeps the vertices of the remaining faces, in their original order.
    survivors = np.flatnonzero(_used_vertices(_alive(represent[all_faces]), len(represent)))
    if len(survivors) != len(new_points):  # pragma: no cover - a change in the simplifier
        raise RuntimeError("fast_simplification no longer keeps its vertices in order")
    positions = np.concatenate([piece.points, anchors])
    positions[survivors] = new_points
    positions[frozen] = piece.points[frozen]
    return represent[:n], positions[:n]


def _decimate(surface: SharedSurface, keep: float, runner: _Runner) -> SharedSurface:
    """Decimate the whole shared surface, piece by piece, and drop collapsed faces."""
    if keep >= 1.0:
        return surface
    members, pieces = _pieces(surface, keep)
    represent = np.arange(len(surface.points), dtype=np.int64)
    points = surface.points.copy()
    for ids, (local_rep, local_pos) in zip(
        members, runner.map(_decimate_piece, pieces, None), strict=True
    ):
        represent[ids] = ids[local_rep]
        points[ids] = local_pos
    faces = represent[surface.faces]
    alive = _alive_mask(faces)
    return SharedSurface(points, faces[alive], surface.pairs[alive], surface.signature)


def _alive_mask(faces: IntArray) -> BoolArray:
    """Faces whose three vertices are distinct."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    mask: BoolArray = (a != b) & (b != c) & (a != c)
    return mask


def _alive(faces: IntArray) -> IntArray:
    """The faces whose three vertices are distinct."""
    return faces[_alive_mask(faces)]


# --- face selection and OBJ --------------------------------------------------------------


def _group(surface: SharedSurface) -> _Patches:
    """Sort faces by label pair; each run of one pair is a patch."""
    pairs = surface.pairs
    key = pairs[:, 0] * (int(pairs.max()) + 1) + pairs[:, 1]
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], len(key)]
    first, second = pairs[order[starts], 0], pairs[order[starts], 1]
    return _Patches(surface.points, surface.faces[order], first, second, starts, stops)


def _ranges(starts: IntArray, stops: IntArray) -> IntArray:
    """Concatenation of arange(start, stop) for each pair, vectorised."""
    lengths = stops - starts
    offsets = np.repeat(stops - np.cumsum(lengths), lengths)
    out: IntArray = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
    return out


def _select(patches: _Patches, member: BoolArray) -> tuple[FloatArray, IntArray]:
    """The closed surface of a structure: patches with exactly one side in it, outwards."""
    inside_first = member[patches.first]
    chosen = np.flatnonzero(inside_first != member[patches.second])
    index = _ranges(patches.starts[chosen], patches.stops[chosen])
    faces = patches.faces[index]
    # Normals point towards the first label: flip the patches where the structure is there.
    flip = np.repeat(inside_first[chosen], patches.stops[chosen] - patches.starts[chosen])
    faces[flip] = faces[flip][:, ::-1]
    used = np.flatnonzero(_used_vertices(faces, len(patches.points)))
    remap = np.empty(len(patches.points), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return patches.points[used], remap[faces]


def obj_bytes(points: npt.NDArray[np.floating[Any]], faces: IntArray, decimals: int = 2) -> bytes:
    """Wavefront OBJ text (``v`` and 1-based ``f`` lines) of a triangle mesh.

    The same text as ``"v %.2f %.2f %.2f"`` / ``"f %d %d %d"`` formatting of the rounded
    values (no ``-0.00``), built with table lookups over whole arrays: each line is a row of
    4-byte words in which unused bytes are 0, and the zeros are dropped at the end.
    """
    n = len(points)
    scaled = np.rint(np.asarray(points, dtype=np.float64) * 10.0**decimals).astype(np.int64)
    scaled = scaled.ravel()
    whole, fraction = np.divmod(np.abs(scaled), 10**decimals)
    number = [np.where(scaled < 0, _WORDS["-"], 0).astype(np.uint32)[:, None]]
    number.append(_digit_words(whole))
    if decimals:
        number.append(_fraction_words(decimals)[fraction])
    number.append(np.full((len(scaled), 1), _WORDS[" "], dtype=np.uint32))
    vertices = _lines(_WORDS["v "], np.concatenate(number, axis=1).reshape(n, -1))
    index = (np.asarray(faces, dtype=np.int64) + 1).ravel()
    separator = np.full((len(index), 1), _WORDS[" "], dtype=np.uint32)
    words = np.concatenate([_digit_words(index), separator], axis=1).reshape(len(faces), -1)
    text = np.concatenate([vertices, _lines(_WORDS["f "], words)]).view(np.uint8)
    out: bytes = text[text != 0].tobytes()
    return out


def _word(text: str) -> np.uint32:
    """Up to 4 ASCII characters as one word (padded with zero bytes)."""
    word: np.uint32 = np.frombuffer(text.encode("ascii").ljust(4, b"\0"), dtype=np.uint32)[0]
    return word


_WORDS = {text: _word(text) for text in ("-", " ", "\n", "v ", "f ")}


def _lines(start: np.uint32, words: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Rows of words with ``start`` in front and the last (separator) word made a newline."""
    words[:, -1] = _WORDS["\n"]
    out = np.empty((len(words), words.shape[1] + 1), dtype=np.uint32)
    out[:, 0] = start
    out[:, 1:] = words
    return out.ravel()


@functools.cache
def _digit_tables() -> tuple[npt.NDArray[np.uint32], ...]:
    """Words of 4 decimal digits for 0-9999: zero-padded, and with leading zeros blank (all
    blank for 0, or "0" for a number's last group)."""
    value = np.arange(10_000)
    powers = np.array([1000, 100, 10, 1])
    digits = ((value[:, None] // powers) % 10 + 48).astype(np.uint8)
    padded = digits.copy().view(np.uint32).ravel()
    digits[(value[:, None] < powers) & (powers > 1)] = 0
    digits[0, 3] = 48
    last = digits.copy().view(np.uint32).ravel()
    digits[0, 3] = 0
    lead = digits.view(np.uint32).ravel()
    return padded, lead, last


@functools.cache
def _fraction_words(decimals: int) -> npt.NDArray[np.uint32]:
    """Per value below 10**decimals: "." and its zero-padded digits, as words."""
    value = np.arange(10**decimals)
    out = np.zeros((len(value), 4 * (decimals // 4 + 1)), dtype=np.uint8)
    out[:, 0] = 46
    for k in range(decimals):
        out[:, 1 + k] = (value // 10 ** (decimals - 1 - k)) % 10 + 48
    return out.view(np.uint32)


def _digit_words(values: IntArray) -> npt.NDArray[np.uint32]:
    """Decimal digits of non-negative integers without leading zeros: groups of 4 digits
    as words, one column per group (blank words before the first digit)."""
    padded, lead, last = _digit_tables()
    groups = 1
    while values.size and int(values.max()) >= 10_000**groups:
        groups += 1
    parts = []
    rest = values
    for _ in range(groups):
        rest, part = np.divmod(rest, 10_000)
        parts.append(part)
    out = np.empty((len(values), groups), dtype=np.uint32)
    started = np.zeros(len(values), dtype=bool)
    for column, part in enumerate(reversed(parts)):
        first = last if column == groups - 1 else lead
        out[:, column] = np.where(started, padded[part], first[part])
        started |= part > 0
    return out


def _structure_chunk(
    rows: Sequence[int],
    shared: tuple[_Patches, BoolArray, npt.NDArray[np.float64], int, IntArray, str | None],
) -> list[bytes | int]:
    """OBJ files of the structures at the given rows of the membership table: written into
    the folder ``target`` (their sizes returned) or, without one, returned as bytes."""
    patches, members, scale, decimals, ids, target = shared
    out: list[bytes | int] = []
    for row in rows:
        points, faces = _select(patches, members[row])
        blob = obj_bytes(points * scale, faces, decimals)
        if target is None:
            out.append(blob)
        else:
            Path(target, f"{int(ids[row])}.obj").write_bytes(blob)
            out.append(len(blob))
    return out


# --- running tasks: in this process, in local processes, or on a dask cluster -------------

_SHARED: Any = None


def _set_shared(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _call_with_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(item, _SHARED)


class _Runner:
    """Runs ``fn(item, shared)`` over items, yielding results in order."""

    def __init__(self, workers: int | None, scheduler: str | None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.client: Any = None
        if scheduler is not None:
            self.client = _connect(scheduler)
            self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(
        self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any
    ) -> Iterator[Any]:
        if self.client is not None:
            yield from self._map_dask(fn, items, shared)
        elif self.workers == 1 or len(items) <= 1:
            for item in items:
                yield fn(item, shared)
        else:
            yield from self._map_pool(fn, items, shared)

    def _map_pool(
        self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any
    ) -> Iterator[Any]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        workers = min(self.workers, len(items))
        with ProcessPoolExecutor(workers, context, _set_shared, (shared,)) as pool:
            yield from pool.map(_call_with_shared, [fn] * len(items), items)

    def _map_dask(
        self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any
    ) -> Iterator[Any]:
        scattered = self.client.scatter(shared, broadcast=True) if shared is not None else None
        futures = self.client.map(fn, items, shared=scattered, pure=False)
        try:
            for future in futures:
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _connect(address: str) -> Any:
    """A dask.distributed client for the scheduler at ``address``."""
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - dask is an optional extra
        raise ConfigError(
            "a scheduler address needs dask.distributed: pip install 'atlasmith[dask]'."
        ) from err
    try:
        client: Any = distributed.Client
        return client(address, timeout=30)
    except OSError as err:
        raise ConfigError(
            f"cannot connect to the dask scheduler at {address!r}: {err}. Check the address "
            "(e.g. tcp://host:8786) and that the scheduler is running."
        ) from err


# --- the engine --------------------------------------------------------------------------


def _resolution(resolution: float | Sequence[float]) -> npt.NDArray[np.float64]:
    """Voxel size in micrometres per axis (asr order)."""
    values = np.broadcast_to(np.asarray(resolution, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ConfigError(f"resolution {resolution!r} is not valid: expected positive micrometres.")
    return values


def _membership(tree: StructureTree, present_labels: IntArray) -> tuple[IntArray, BoolArray]:
    """Compact indices of the structures with voxels (own or descendants') and, per such
    structure, which compact labels belong to it."""
    table = tree.ancestor_table
    present = np.zeros(table.shape[1], dtype=bool)
    present[table[:, present_labels].ravel()] = True
    present[0] = False
    kept = np.flatnonzero(present)
    members: BoolArray = table[tree.depths[kept]] == kept[:, None]
    members[:, 0] = False
    return kept, members


def _chunks(n: int, n_chunks: int) -> list[list[int]]:
    """Rows 0..n-1 dealt into n_chunks interleaved chunks (big parents come first)."""
    return [list(range(k, n, n_chunks)) for k in range(min(n, n_chunks))]


def _iter_meshes(
    annotation: np.ndarray[Any, Any],
    tree: StructureTree,
    resolution: float | Sequence[float],
    params: MeshParameters,
    runner: _Runner,
    target: Path | None = None,
) -> Iterator[tuple[int, int, bytes | int]]:
    """Yield ``(structure id, count, OBJ bytes)`` for each structure with voxels, in tree
    order; ``count`` is how many meshes there are in all. With ``target`` (a folder on this
    machine) local workers write ``<id>.obj`` there themselves, and the size is yielded
    instead of the bytes."""
    _check_annotation(annotation)
    scale = _resolution(resolution)
    labels = _compact_labels(annotation, tree)
    if params.closing:
        labels = _close_outline(labels, params.closing)
    surface = _surface_nets(labels, params.smoothing, tree.ancestor_table)
    del labels
    surface = _cluster(surface, _block(params.cluster_um, scale))
    surface = _decimate(surface, params.decimate, runner)
    kept, members = _membership(tree, np.unique(surface.pairs))
    patches = _group(surface)
    chunks = _chunks(len(kept), runner.workers * _TASKS_PER_WORKER)
    ids = tree.ids[kept - 1]
    local = target is not None and runner.client is None
    shared = (patches, members, scale, params.decimals, ids, str(target) if local else None)
    done: dict[int, bytes | int] = {}
    position = 0
    for rows, blobs in zip(chunks, runner.map(_structure_chunk, chunks, shared), strict=True):
        done.update(zip(rows, blobs, strict=True))
        while position in done:
            yield int(ids[position]), len(kept), done.pop(position)
            position += 1


def generate_meshes(
    annotation: np.ndarray[Any, Any],
    tree: StructureTree,
    resolution: float | Sequence[float],
    out_dir: Path,
    params: MeshParameters = MeshParameters(),  # noqa: B008 - frozen, so safe as a default
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> dict[int, Path]:
    """Write one mesh per structure with voxels (in it or its descendants) as ``<id>.obj``.

    Parameters
    ----------
    annotation : numpy.ndarray
        3-D integer volume of structure ids (0 = no structure), "asr" orientation.
    tree : StructureTree
        The structures; every non-zero label must be one of them.
    resolution : float or tuple of 3 floats
        Voxel size in micrometres (asr order).
    out_dir : Path
        Folder to write (e.g. ``<atlas>/meshes``); written in a temporary folder next to it
        and renamed when complete.
    params : MeshParameters
        Smoothing, decimation and closing.
    workers : int, optional
        Local processes (default: all cores). Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address of a dask.distributed scheduler (``tcp://host:port``) to run the work on.
    progress : callable, optional
        Called as ``progress(done, total)`` after each structure.
    overwrite : bool
        Replace ``out_dir`` if it exists and is not empty.

    Returns
    -------
    dict of int to Path
        Structure id to its mesh file, in tree order.

    Raises
    ------
    AtlasFormatError
        An annotation that is not a 3-D integer volume, is empty or has unknown labels.
    AtlasExistsError
        ``out_dir`` exists, is not empty and ``overwrite`` is False.
    ConfigError
        Invalid resolution, or a scheduler that cannot be reached.

    Notes
    -----
    Vertices are in micrometres, voxel index ``i`` at ``i * resolution``. Meshes of parent
    structures are exactly the union of their descendants' volumes; neighbouring meshes share
    their common boundary. The files are byte-identical for the same input and parameters
    whatever ``workers`` or ``scheduler``.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    runner = _Runner(workers, scheduler)
    try:
        written = {}
        meshes = _iter_meshes(annotation, tree, resolution, params, runner, temp)
        for sid, total, blob in meshes:
            if isinstance(blob, bytes):  # made on a dask worker
                (temp / f"{sid}.obj").write_bytes(blob)
            written[sid] = out_dir / f"{sid}.obj"
            if progress is not None:
                progress(len(written), total)
        _replace(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        runner.close()
    return written


def _check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty folder unless asked to."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AtlasExistsError(f"{out_dir} exists and is not a folder: choose another --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise AtlasExistsError(
            f"{out_dir} exists and is not empty: choose another folder or pass overwrite=True "
            "(--overwrite) to replace it."
        )


def _replace(temp: Path, out_dir: Path) -> None:
    """Move the finished folder into place (the old one, if any, is removed after)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    temp.chmod(0o755)
    temp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old)


def read_atlas_inputs(
    folder: Path,
) -> tuple[np.ndarray[Any, Any], StructureTree, tuple[float, float, float]]:
    """Annotation, structure tree and resolution of a BrainGlobe-format atlas folder."""
    import json

    import tifffile

    from atlasmith.hierarchy import StructureTree

    folder = Path(folder)
    paths = [folder / name for name in ("annotation.tiff", "structures.json", "metadata.json")]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise AtlasFormatError(
            f"{folder} is not an atlas folder: {', '.join(missing)} missing. Point to a folder "
            "with annotation.tiff, structures.json and metadata.json (BrainGlobe format)."
        )
    try:
        annotation: np.ndarray[Any, Any]
        try:  # uncompressed, contiguous (as atlasmith writes them): no copy in memory
            annotation = tifffile.memmap(paths[0], mode="r")
        except ValueError:
            annotation = tifffile.imread(paths[0])
        structures = json.loads(paths[1].read_text(encoding="utf-8"))
        resolution = json.loads(paths[2].read_text(encoding="utf-8"))["resolution"]
    except (OSError, ValueError, KeyError) as err:
        raise AtlasFormatError(f"cannot read the atlas folder {folder}: {err}") from err
    values = tuple(float(r) for r in np.broadcast_to(np.asarray(resolution, float), (3,)))
    return annotation, StructureTree.from_list(structures), (values[0], values[1], values[2])


def meshes_for_folder(
    folder: Path,
    out_dir: Path,
    params: MeshParameters = MeshParameters(),  # noqa: B008 - frozen, so safe as a default
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> dict[int, Path]:
    """Regenerate the meshes of an atlas folder into ``out_dir`` (see generate_meshes)."""
    annotation, tree, resolution = read_atlas_inputs(folder)
    return generate_meshes(
        annotation,
        tree,
        resolution,
        out_dir,
        params,
        workers,
        scheduler,
        progress,
        overwrite=overwrite,
    )
