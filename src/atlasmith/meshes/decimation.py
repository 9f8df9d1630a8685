"""Quadric decimation: of the whole shared surface in parallel pieces (the engine's optional
pass), and of one mesh to a triangle budget (for drawing)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from atlasmith._types import BoolArray, Float32Array, Float64Array, IntArray
from atlasmith.meshes._runner import Runner
from atlasmith.meshes._surface import SharedSurface, alive_mask

__all__ = ["decimate", "simplify", "used_vertices"]

_PIECE_FACES = 300_000  # faces per decimation piece; fixed, so output never depends on workers
# Boundaries (label pairs) with fewer faces than this are never decimated: the quadric pass
# would otherwise collapse a structure of a few voxels to nothing and lose its mesh.
_SMALL_PATCH_FACES = 48


class _Piece(NamedTuple):
    """One slab of the shared surface to decimate: local points, faces, frozen vertices."""

    points: Float32Array
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
        used = used_vertices(local_faces, len(points))
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
    return used_vertices(surface.faces[small], len(surface.points))


def used_vertices(faces: IntArray, n_points: int) -> BoolArray:
    """Which of n_points vertices the faces use."""
    used = np.zeros(n_points, dtype=bool)
    used[faces.ravel()] = True
    return used


def _decimate_piece(piece: _Piece, _shared: Any = None) -> tuple[IntArray, Float32Array]:
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
    survivors = np.flatnonzero(used_vertices(_alive(represent[all_faces]), len(represent)))
    if len(survivors) != len(new_points):  # pragma: no cover - a change in the simplifier
        raise RuntimeError("fast_simplification no longer keeps its vertices in order")
    positions = np.concatenate([piece.points, anchors])
    positions[survivors] = new_points
    positions[frozen] = piece.points[frozen]
    return represent[:n], positions[:n]


def decimate(surface: SharedSurface, keep: float, runner: Runner) -> SharedSurface:
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
    alive = alive_mask(faces)
    return SharedSurface(points, faces[alive], surface.pairs[alive])


def _alive(faces: IntArray) -> IntArray:
    """The faces whose three vertices are distinct."""
    return faces[alive_mask(faces)]


def simplify(
    vertices: Float64Array, faces: IntArray, max_faces: int
) -> tuple[Float64Array, IntArray]:
    """Simplify a mesh to about ``max_faces`` triangles (unchanged when already smaller)."""
    if len(faces) <= max_faces:
        return vertices, faces
    import fast_simplification

    points32, faces32 = vertices.astype(np.float32), faces.astype(np.int32)
    reduction = 1 - max_faces / len(faces)
    points, tri = fast_simplification.simplify(points32, faces32, reduction)
    if len(tri) > 2 * max_faces:  # stalled (it happens on staircase surfaces): push harder
        points, tri = fast_simplification.simplify(points32, faces32, reduction, agg=10)
    return np.asarray(points, dtype=np.float64), np.asarray(tri, dtype=np.int64)
