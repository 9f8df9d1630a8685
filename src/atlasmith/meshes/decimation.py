"""Decimation: of the whole shared surface within a distance, in parallel pieces (the
engine's stage: ``_collapse``); of one mesh to the triangle budget its area allows (the
engine's ``budget_um``); and of one mesh to a number of triangles (for drawing)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from atlasmith._types import BoolArray, Float64Array, IntArray
from atlasmith.meshes._geometry import extremes, face_cross
from atlasmith.meshes._runner import Runner
from atlasmith.meshes._surface import SharedSurface, alive_mask
from atlasmith.meshes.quality import enclosed_volume, is_closed

__all__ = [
    "budget_faces",
    "decimate",
    "fit_budget",
    "simplify",
    "simplify_anchored",
    "used_vertices",
]

_PIECE_FACES = 200_000  # faces per decimation piece; fixed, so output never depends on workers
#: Triangles of a regular triangulation per square of its edge (an equilateral triangle of
#: side L covers sqrt(3) / 4 L^2)
_FACES_PER_SQUARE_EDGE = 4.0 / math.sqrt(3.0)
_BUDGET_FLOOR = 64  # no mesh is decimated below this many triangles
_BUDGET_SLACK = 1.25  # meshes within 25 % of their budget are left as they are
_BUDGET_VOLUME = 0.9  # the least part of its volume a decimated mesh keeps


class _Piece(NamedTuple):
    """One slab of the shared surface to decimate: local points (micrometres), faces, the
    labels on their sides, frozen vertices, and how far and how low to go."""

    points: Float64Array
    faces: IntArray
    pairs: IntArray
    frozen: BoolArray
    tolerance: float
    target: int


def _pieces(
    surface: SharedSurface,
    scale: npt.NDArray[np.float64],
    frozen_labels: BoolArray | None,
    tolerance: float,
    keep: float,
) -> tuple[list[IntArray], list[_Piece]]:
    """Cut the surface into slabs of about _PIECE_FACES faces along axis 0; the vertices on
    the cuts (their faces lie in more than one piece) and those around a frozen label are
    frozen."""
    points, faces = surface.points, surface.faces
    n_pieces = max(1, math.ceil(len(faces) / _PIECE_FACES))
    centre = points[faces, 0].mean(axis=1)
    cuts = np.quantile(centre, np.arange(1, n_pieces) / n_pieces)
    piece = np.searchsorted(cuts, centre)
    low = np.full(len(points), n_pieces, dtype=np.int64)
    high = np.full(len(points), -1, dtype=np.int64)
    for k in range(3):
        np.minimum.at(low, faces[:, k], piece)
        np.maximum.at(high, faces[:, k], piece)
    frozen = low != high
    if frozen_labels is not None:
        touching = frozen_labels[surface.pairs].any(axis=1)
        frozen |= used_vertices(faces[touching], len(points))
    members, out = [], []
    for k in range(n_pieces):
        mine = piece == k
        local_faces = faces[mine]
        used = used_vertices(local_faces, len(points))
        remap = np.cumsum(used) - 1
        members.append(np.flatnonzero(used))
        target = 0 if keep >= 1.0 else math.ceil(keep * len(local_faces))
        out.append(
            _Piece(
                points[used].astype(np.float64) * scale,
                remap[local_faces],
                surface.pairs[mine],
                frozen[used],
                tolerance,
                target,
            )
        )
    return members, out


def used_vertices(faces: IntArray, n_points: int) -> BoolArray:
    """Which of n_points vertices the faces use."""
    used = np.zeros(n_points, dtype=bool)
    used[faces.ravel()] = True
    return used


def _decimate_piece(piece: _Piece, _shared: Any = None) -> IntArray:
    """Each vertex's representative after the piece's collapses."""
    from atlasmith.meshes._collapse import collapse  # scipy's graphs: only when decimating

    return collapse(
        piece.points, piece.faces, piece.pairs, piece.frozen, piece.tolerance, piece.target
    )


def decimate(
    surface: SharedSurface,
    scale: npt.NDArray[np.float64],
    deviation_um: float,
    keep: float,
    frozen_labels: BoolArray | None,
    runner: Runner,
) -> SharedSurface:
    """Decimate the whole shared surface, piece by piece: every collapse that keeps the
    surface within ``deviation_um`` of where it was (with ``keep`` < 1: further, cheapest
    first, until that fraction of the faces is left); faces of ``frozen_labels`` stay as
    they are. Vertices never move: a collapse merges a vertex into a neighbour."""
    if deviation_um <= 0 and keep >= 1.0:
        return surface
    tolerance = math.inf if keep < 1.0 else deviation_um
    members, pieces = _pieces(surface, scale, frozen_labels, tolerance, keep)
    represent = np.arange(len(surface.points), dtype=np.int64)
    for ids, local in zip(members, runner.map(_decimate_piece, pieces, None), strict=True):
        represent[ids] = ids[local]
    faces = represent[surface.faces]
    alive = alive_mask(faces)
    faces = faces[alive]
    used = used_vertices(faces, len(surface.points))
    remap = np.cumsum(used) - 1
    return SharedSurface(surface.points[used], remap[faces], surface.pairs[alive])


def _alive(faces: IntArray) -> IntArray:
    """The faces whose three vertices are distinct."""
    return faces[alive_mask(faces)]


def simplify(
    vertices: Float64Array, faces: IntArray, max_faces: int, aggressiveness: int = 7
) -> tuple[Float64Array, IntArray]:
    """Simplify a mesh to about ``max_faces`` triangles (unchanged when already smaller);
    ``aggressiveness`` is fast-simplification's ``agg`` (higher: faster, rougher)."""
    if len(faces) <= max_faces:
        return vertices, faces
    import fast_simplification

    points32, faces32 = vertices.astype(np.float32), faces.astype(np.int32)
    reduction = 1 - max_faces / len(faces)
    points, tri = fast_simplification.simplify(points32, faces32, reduction, agg=aggressiveness)
    if len(tri) > 2 * max_faces:  # stalled (it happens on staircase surfaces): push harder
        points, tri = fast_simplification.simplify(points32, faces32, reduction, agg=10)
    return np.asarray(points, dtype=np.float64), np.asarray(tri, dtype=np.int64)


def budget_faces(
    points_um: npt.NDArray[np.floating[Any]], faces: IntArray, budget_um: float
) -> int:
    """Triangles of a regular triangulation of the mesh's area (at least ``_BUDGET_FLOOR``)
    with edges of ``budget_um`` micrometres, or, for a thinner structure, of its mean radius
    (three times its volume over its area: a ball's radius, one and a half times a sheet's
    thickness), so that thin sheets and small nuclei keep their volume (at 100 um, edges of
    200 um flattened the one-voxel layers 6b of the cortex to 2 % of their volume; with
    the radius, every Allen structure keeps at least 93 %)."""
    return _budget(*_area_volume(points_um, faces), len(faces), budget_um)


def _area_volume(points_um: npt.NDArray[np.floating[Any]], faces: IntArray) -> tuple[float, float]:
    """Area and signed enclosed volume of a mesh, from one gathering of its corners, in the
    points' precision (float32 or float64), summed in float64."""
    corners = points_um if points_um.dtype == np.float32 else points_um.astype(np.float64)
    a, cross = face_cross(corners, faces)
    area = 0.5 * float(np.sqrt(np.einsum("ij,ij->i", cross, cross)).sum(dtype=np.float64))
    return area, float(np.einsum("ij,ij->i", a, cross).sum(dtype=np.float64)) / 6.0


def _budget(area: float, volume: float, n_faces: int, budget_um: float) -> int:
    """:func:`budget_faces` of a mesh of ``n_faces`` with this area and volume."""
    if area <= 0 or volume <= 0:
        return max(_BUDGET_FLOOR, n_faces)  # not a closed outward mesh: left alone
    edge = min(budget_um, 3.0 * volume / area)
    return max(_BUDGET_FLOOR, int(_FACES_PER_SQUARE_EDGE * area / edge**2))


def simplify_anchored(
    points: npt.NDArray[np.floating[Any]], faces: IntArray, max_faces: int, aggressiveness: int = 10
) -> tuple[Float64Array, IntArray] | None:
    """:func:`simplify` with the mesh's extreme vertices (the lowest and highest along each
    axis) kept where they are, so that its bounding box stays; None if the simplifier did
    not return them as expected.

    fast-simplification keeps the vertices of open borders when asked to; each extreme
    vertex is cut free of its faces (one copy of it per face around it, which makes their
    edges borders), the mesh simplified, and the copies of each joined again. The copies,
    appended last and never collapsed, are the simplifier's last output vertices, in order
    (it keeps the survivors' order): their positions are checked, so a simplifier that did
    otherwise is noticed, not trusted."""
    import fast_simplification

    anchors = np.unique(extremes(points))
    cut = faces.astype(np.int32)
    anchor = np.zeros(len(points), dtype=bool)
    anchor[anchors] = True
    rows, cols = np.nonzero(anchor[cut])
    owners = cut[rows, cols].astype(np.int64)
    cut[rows, cols] = len(points) + np.arange(len(rows), dtype=np.int32)
    points32 = np.concatenate([points, points[owners]]).astype(np.float32, copy=False)
    reduction = 1 - max_faces / len(faces)
    out, tri = fast_simplification.simplify(
        points32, cut, reduction, agg=aggressiveness, preserve_border=True
    )
    first = len(out) - len(owners)
    if first < 0 or not np.array_equal(out[first:], points32[len(points) :]):
        return None
    # each copy -> the first copy of its anchor; the other copies are left unused
    _, where, inverse = np.unique(owners, return_index=True, return_inverse=True)
    remap = np.arange(len(out), dtype=np.int64)
    remap[first:] = first + where[inverse]
    return np.asarray(out, dtype=np.float64), remap[np.asarray(tri, dtype=np.int64)]


def fit_budget(
    points_um: npt.NDArray[np.floating[Any]], faces: IntArray, budget_um: float, reach_um: float
) -> tuple[npt.NDArray[np.floating[Any]], IntArray]:
    """A closed mesh decimated to its triangle budget (:func:`budget_faces`) when it has more
    than ``_BUDGET_SLACK`` times that; unchanged otherwise.

    The extreme vertices stay where they are (:func:`simplify_anchored`: a decimation cuts
    the tips of thin processes off otherwise; at 25 um, 174 of the Allen annotation's 837
    meshes lost more than half a voxel so, and were left undecimated). The result must stay
    closed (fast-simplification keeps closed meshes closed, but the engine's guarantee does
    not rest on it), keep its extent (each side of its bounding box at most ``reach_um``
    inside the mesh's; vertices the decimation places outside it, by at most twice
    ``reach_um``, are moved back onto it, so the extent never grows: at 25 um four Allen
    meshes, the brain stem's 418,178 triangles among them, overshot by 13 to 16 um at both
    tries and were left whole) and keep ``_BUDGET_VOLUME`` of its volume (a small mesh can
    lose more: at 100 um, the layer 2 of the nucleus of the lateral olfactory tract kept
    85 %). A mesh that does not is decimated again to twice as many triangles, then left as
    it was."""
    if budget_um <= 0:
        return points_um, faces
    area, volume = _area_volume(points_um, faces)
    target = _budget(area, volume, len(faces), budget_um)
    low, high = points_um.min(axis=0), points_um.max(axis=0)
    volume *= _BUDGET_VOLUME
    for tries in (target, 2 * target):
        if len(faces) <= _BUDGET_SLACK * tries:
            break
        # aggressiveness 10: at 100 um 28 % less time than fast-simplification's default 7,
        # for meshes as close to Allen's and to the voxels (measured on the Allen annotation)
        simpler = simplify_anchored(points_um, faces, tries, 10)
        if simpler is None:
            break
        points, fewer = simpler
        fewer = _alive(fewer)
        used = used_vertices(fewer, len(points))
        if len(fewer) < 4 or not is_closed(fewer):
            continue
        kept = points[used]
        shrunk = np.maximum(kept.min(axis=0) - low, high - kept.max(axis=0))
        grown = np.maximum(low - kept.min(axis=0), kept.max(axis=0) - high)
        if np.all(shrunk <= reach_um) and np.all(grown <= 2.0 * reach_um):
            kept = np.clip(kept, low, high)  # the extent never grows
            fewer = (np.cumsum(used) - 1)[fewer]
            if enclosed_volume(kept, fewer) >= volume:
                return kept, fewer
    return points_um, faces
