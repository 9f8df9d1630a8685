"""Decimation of the shared surface by half-edge collapses within a distance.

The shared surface holds every boundary between two labels once; where three labels meet
its edges are shared by three faces (junction curves), and where four or more meet lie its
corners. A collapse moves a vertex ``u`` onto a neighbour ``v`` (``v`` keeps its place, so
every vertex stays where the surface nets put it: within its voxels) and deletes the faces
on the edge. It is allowed when it keeps every boundary where it is, topologically and
within ``tolerance``:

- ``u`` lies inside one boundary (two labels around it, the edge shared by two faces), or
  where three or more labels meet and the edge is shared by three or more faces (it slides
  along a junction curve; a corner moves only onto a neighbour that has all its labels);
  frozen vertices, and those of very small surface pieces or junctions, never move;
- ``v`` lies on every boundary ``u`` lies on (its labels include ``u``'s);
- the link condition: ``u`` and ``v`` have no common neighbour but the faces' opposite
  corners (so no fold, pinch or doubled face appears);
- no face around ``u`` turns over;
- the quadric error (the mean squared distance of ``v`` from the planes of the faces
  ``u`` stood for, weighted by area) is within ``tolerance`` squared.

Collapses run in rounds: each vertex picks its cheapest allowed collapse, and those whose
neighbourhoods (the rings of ``u`` and ``v``) do not overlap a cheaper one's are done at
once, with numpy over whole arrays. Every boundary keeps its faces on both of its sides, so
the meshes taken from the surface stay closed and shared, and the result depends only on
the input (never on timing or workers).

Points are in voxel index units.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from atlasmith._types import BoolArray, IntArray
from atlasmith.meshes._geometry import cross, face_cross
from atlasmith.meshes._surface import alive_mask

__all__ = ["collapse"]

_MAX_ROUNDS = 40
_LAST_ROUND = 0.002  # stop when a round collapses fewer than this fraction of the vertices
_MIN_TURN = 0.2  # cosine between a face's normal before and after a collapse, at least
_SMALL_COMPONENT = 8  # vertices: a surface piece this small is kept as it is
_SMALL_CURVE = 5  # vertices: a junction (with its corners) this small is kept as it is
_PASSES = 8  # of the choice of independent collapses in a round

Float64Array = npt.NDArray[np.float64]


class _Round(NamedTuple):
    """The current surface's connectivity, rebuilt each round."""

    edges: IntArray  # (E, 2) undirected, smaller index first
    sharing: IntArray  # faces on each edge
    adjacency: csr_matrix  # vertex to vertex
    n_labels: IntArray  # labels around each vertex
    labels: csr_matrix  # vertex to label (1 where the label is around the vertex)


def collapse(
    points: npt.NDArray[np.floating[Any]],
    faces: IntArray,
    pairs: IntArray,
    frozen: BoolArray,
    tolerance: float,
    target: int = 0,
) -> IntArray:
    """Each vertex's representative after the collapses: itself, or the vertex it moved to.

    ``faces`` (F, 3) index ``points``; ``pairs`` (F, 2) are the labels on each face's two
    sides; ``frozen`` vertices never move; ``tolerance`` is in the points' units (``inf``:
    any distance); collapses stop when no more are allowed or at most ``target`` faces
    are left.
    """
    n = len(points)
    represent = np.arange(n, dtype=np.int64)
    if len(faces) <= target or tolerance <= 0:
        return represent
    position = points.astype(np.float64)
    quadric, area = _quadrics(position, faces)
    limit = tolerance**2
    for _ in range(_MAX_ROUNDS):
        state = _connectivity(faces, pairs, n)
        fixed = frozen | _in_small_pieces(state, n)
        u, v = _choices(position, faces, state, fixed, quadric, area, limit)
        u, v = _independent(u, v, state.adjacency)
        if len(u) == 0:
            break
        step = np.arange(n, dtype=np.int64)
        step[u] = v
        represent = step[represent]
        quadric[v] += quadric[u]
        area[v] += area[u]
        faces = step[faces]
        alive = alive_mask(faces)
        faces, pairs = faces[alive], pairs[alive]
        if len(u) < _LAST_ROUND * n or len(faces) <= target:
            break
    return represent


def _quadrics(position: Float64Array, faces: IntArray) -> tuple[Float64Array, Float64Array]:
    """Per vertex: the sum of its faces' plane quadrics (4x4, area-weighted) and areas."""
    a, normal = face_cross(position, faces)
    double_area = np.linalg.norm(normal, axis=1)
    unit = normal / np.maximum(double_area, 1e-12)[:, None]
    plane = np.column_stack([unit, -np.einsum("ij,ij->i", unit, a)])
    weight = double_area / 2
    outer = plane[:, :, None] * plane[:, None, :] * weight[:, None, None]
    n = len(position)
    quadric = np.zeros((n, 4, 4))
    area = np.zeros(n)
    for k in range(3):
        np.add.at(quadric, faces[:, k], outer)
        area += np.bincount(faces[:, k], weight, minlength=n)
    return quadric, area


def _connectivity(faces: IntArray, pairs: IntArray, n: int) -> _Round:
    """Edges with the number of faces on each, adjacency, and the labels around vertices."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    low, high = directed.min(axis=1), directed.max(axis=1)
    key, sharing = np.unique(low * n + high, return_counts=True)
    edges = np.column_stack([key // n, key % n])
    ones = np.ones(2 * len(edges), dtype=np.int8)
    adjacency = csr_matrix(
        (ones, (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n)
    )
    corner = faces.ravel()
    rows = np.r_[corner, corner]
    columns = np.r_[np.repeat(pairs[:, 0], 3), np.repeat(pairs[:, 1], 3)]
    labels = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)))
    labels.sum_duplicates()
    labels.data[:] = 1
    n_labels = np.zeros(n, dtype=np.int64)
    counts = np.diff(labels.indptr)
    n_labels[: len(counts)] = counts
    return _Round(edges, sharing, adjacency, n_labels, labels)


def _in_small_pieces(state: _Round, n: int) -> BoolArray:
    """Vertices of small connected pieces of the surface, and of short junction curves."""
    out = np.zeros(n, dtype=bool)
    _, component = connected_components(state.adjacency, directed=False)
    sizes = np.bincount(component)
    out |= sizes[component] <= _SMALL_COMPONENT
    junction = state.edges[state.sharing >= 3]
    if len(junction):
        graph = csr_matrix(
            (np.ones(len(junction), dtype=np.int8), (junction[:, 0], junction[:, 1])),
            shape=(n, n),
        )
        _, curve = connected_components(graph, directed=False)
        curve_sizes = np.bincount(curve)
        on_curve = np.zeros(n, dtype=bool)
        on_curve[junction.ravel()] = True
        out |= on_curve & (curve_sizes[curve] <= _SMALL_CURVE)
    return out


def _row_overlap(matrix: csr_matrix, first: IntArray, second: IntArray) -> IntArray:
    """Per pair of rows, how many columns both have."""
    counts: IntArray = np.asarray(matrix[first].multiply(matrix[second]).sum(axis=1)).ravel()
    return counts


def _choices(
    position: Float64Array,
    faces: IntArray,
    state: _Round,
    fixed: BoolArray,
    quadric: Float64Array,
    area: Float64Array,
    limit: float,
) -> tuple[IntArray, IntArray]:
    """Per movable vertex, its cheapest allowed collapse within the limit: (u, v) arrays,
    cheapest first."""
    edges, sharing = state.edges, state.sharing
    u = np.r_[edges[:, 0], edges[:, 1]]
    v = np.r_[edges[:, 1], edges[:, 0]]
    share = np.r_[sharing, sharing]
    ok = ~fixed[u] & ((state.n_labels[u] == 2) == (share == 2))
    u, v = u[ok], v[ok]
    ok = _row_overlap(state.labels, u, v) == state.n_labels[u]
    u, v = u[ok], v[ok]
    target = np.column_stack([position[v], np.ones(len(v))])
    cost = np.einsum("ij,ijk,ik->i", target, quadric[u], target) / np.maximum(area[u], 1e-12)
    ok = cost <= limit
    u, v, cost = u[ok], v[ok], cost[ok]
    order = np.lexsort((v, cost, u))
    u, v, cost = u[order], v[order], cost[order]
    first = np.r_[True, u[1:] != u[:-1]]
    u, v, cost = u[first], v[first], cost[first]
    # the link condition: common neighbours only the faces' opposite corners
    key = np.minimum(u, v) * len(position) + np.maximum(u, v)
    edge_key = edges[:, 0] * len(position) + edges[:, 1]
    on_edge = sharing[np.searchsorted(edge_key, key)]
    ok = _row_overlap(state.adjacency, u, v) == on_edge
    u, v, cost = u[ok], v[ok], cost[ok]
    ok = ~_turns_over(position, faces, u, v)
    u, v, cost = u[ok], v[ok], cost[ok]
    order = np.lexsort((u, cost))  # cheapest first: the order is the priority
    return u[order], v[order]


def _turns_over(position: Float64Array, faces: IntArray, u: IntArray, v: IntArray) -> BoolArray:
    """Per collapse u -> v: whether a face around u (not on the edge) would turn over."""
    n = len(position)
    corner_vertex = faces.ravel()
    order = np.argsort(corner_vertex, kind="stable")
    starts = np.searchsorted(corner_vertex[order], np.arange(n + 1))
    which, at = _rows(starts, u)
    face = order[at] // 3
    tri = faces[face]
    moved_u, moved_v = u[which], v[which]
    keep = ~np.any(tri == moved_v[:, None], axis=1)
    tri, which, moved_u, moved_v = tri[keep], which[keep], moved_u[keep], moved_v[keep]
    before = _normals(position[tri])
    after_tri = np.where(tri == moved_u[:, None], moved_v[:, None], tri)
    after = _normals(position[after_tri])
    length = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
    bad = np.einsum("ij,ij->i", before, after) < _MIN_TURN * np.maximum(length, 1e-12)
    bad |= np.linalg.norm(after, axis=1) < 1e-9
    out: BoolArray = np.bincount(which[bad], minlength=len(u)) > 0
    return out


def _rows(indptr: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """The entries of a compressed table's ``rows``: for each, which row (its position in
    ``rows``) and where it lies (an index into the table's entries)."""
    count = indptr[rows + 1] - indptr[rows]
    which = np.repeat(np.arange(len(rows), dtype=np.int64), count)
    offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return which, np.repeat(indptr[rows], count) + offsets


def _normals(corners: Float64Array) -> Float64Array:
    """Unnormalised normals of triangles given as (F, 3, 3) corner positions."""
    out: Float64Array = cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return out


def _independent(u: IntArray, v: IntArray, adjacency: csr_matrix) -> tuple[IntArray, IntArray]:
    """A maximal set of the collapses whose closed neighbourhoods (u and its ring, which
    holds v) do not overlap, cheaper ones first: in passes, a collapse is taken when it is
    the cheapest left in all of its neighbourhood, and those that overlap taken ones are
    dropped. No vertex of a taken collapse's faces moves in another, and no other collapse
    gains or loses a common neighbour of its ends: each stays as checked."""
    if len(u) == 0:
        return u, v
    which, at = _rows(adjacency.indptr, u)
    owner = np.r_[np.arange(len(u), dtype=np.int64), which]  # u and v are cheapest first
    vertex = np.r_[u, adjacency.indices[at]]
    n = adjacency.shape[0]
    taken = np.zeros(len(u), dtype=bool)
    for _ in range(_PASSES):
        claim = np.full(n, len(u), dtype=np.int64)
        np.minimum.at(claim, vertex, owner)
        active = np.bincount(owner, minlength=len(u)) > 0
        lost = np.bincount(owner[claim[vertex] != owner], minlength=len(u)) > 0
        won = active & ~lost
        if not won.any():
            break
        taken |= won
        busy = np.zeros(n, dtype=bool)
        busy[vertex[won[owner]]] = True
        blocked = np.bincount(owner[busy[vertex]], minlength=len(u)) > 0
        keep = ~blocked[owner]
        owner, vertex = owner[keep], vertex[keep]
        if len(owner) == 0:
            break
    return u[taken], v[taken]
