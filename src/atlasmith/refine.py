"""One structure's mesh, finished on its own: clustered by block, then smoothed.

The shared surface (``atlasmith.surface``) only merges vertices that lie on the boundaries of
exactly the same structures, so that every structure can take its faces from it. Seen from
one structure, that leaves its surface cut into small pieces wherever its substructures or
neighbours meet it. Each structure's mesh is therefore clustered again on its own (vertices
in the same block that face the same way are merged) and smoothed on its own (Taubin: the
surface is rounded, not shrunk), each vertex kept within half a voxel of where clustering
put it. A structure is smoothed as a whole: its corners and edges where neighbours meet are
rounded as in a mesh made from that structure alone.

Points are in voxel index units; clustering keeps a closed, outward mesh closed and outward.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from atlasmith.surface import _alive_mask, _facing, _unique_inverse, _vertex_normals

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

REACH = 0.5  # how far (voxels, per axis) smoothing may move a vertex
_AGREEMENT = 0.7  # blocks whose mean unit normal is shorter are split by facing
_PASS_BAND = (0.5, -0.53)  # Taubin's two factors (shrink, then inflate)
_DENSE_KEYS = 1 << 22


def refine(
    points: FloatArray, faces: IntArray, block: int, iterations: int
) -> tuple[FloatArray, IntArray]:
    """Cluster (blocks of ``block`` voxels; 1: none) and smooth (``iterations``) a mesh."""
    if block > 1 and len(faces):
        points, faces = cluster(points, faces, block)
    if iterations and len(faces):
        points = smooth(points, faces, iterations)
    return points, faces


def cluster(points: FloatArray, faces: IntArray, block: int) -> tuple[FloatArray, IntArray]:
    """Merge the vertices in each block into their mean, split by facing where the block's
    normals disagree (two sides of a thin part); faces that collapse are dropped."""
    cell = np.floor((points + np.float32(0.5)) / np.float32(block)).astype(np.int64)
    cell -= cell.min(axis=0)
    dims = cell.max(axis=0) + 1
    size = int(np.prod(dims))
    key = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    blocks, group = _inverse(key, size)
    normals = _vertex_normals(points, faces)
    agreement = np.linalg.norm(
        np.column_stack([np.bincount(group, normals[:, k]) for k in range(3)]), axis=1
    ) / np.bincount(group)
    split = agreement[group] < _AGREEMENT
    _, group = _inverse(group * 27 + np.where(split, _facing(normals), 0), len(blocks) * 27)
    # one vertex at each end of each axis keeps its place, so the mesh keeps its extent
    extreme = np.unique(np.concatenate([points.argmin(axis=0), points.argmax(axis=0)]))
    group[extreme] = group.max() + 1 + np.arange(len(extreme))
    _, group = _inverse(group, int(group.max()) + 1)
    counts = np.bincount(group).astype(np.float64)
    merged = np.column_stack(
        [np.bincount(group, points[:, axis].astype(np.float64)) / counts for axis in range(3)]
    ).astype(np.float32)
    faces = group[faces]
    faces = faces[_alive_mask(faces)]
    used = np.zeros(len(merged), dtype=bool)
    used[faces.ravel()] = True
    if used.all():
        return merged, faces
    remap = np.cumsum(used) - 1
    return merged[used], remap[faces]


def _inverse(key: IntArray, size: int) -> tuple[IntArray, IntArray]:
    return _unique_inverse(key, size) if size <= _DENSE_KEYS else _sorted_inverse(key)


def _sorted_inverse(key: IntArray) -> tuple[IntArray, IntArray]:
    unique, inverse = np.unique(key, return_inverse=True)
    return unique, inverse.ravel().astype(np.int64)


def smooth(points: FloatArray, faces: IntArray, iterations: int) -> FloatArray:
    """Taubin smoothing over the mesh's edges, each vertex kept within REACH of its start.

    In a closed, consistently oriented mesh each edge runs once in each direction, so the
    faces' directed edges list every vertex's neighbours once each.
    """
    n = len(points)
    start, stop = faces.ravel(), faces[:, [1, 2, 0]].ravel()
    inverse_degree = 1.0 / np.maximum(np.bincount(start, minlength=n), 1)
    out = np.ascontiguousarray(points.T, dtype=np.float64)
    low, high = out - REACH, out + REACH
    for step in range(iterations):
        factor = _PASS_BAND[step % 2]
        for axis in out:  # the axes are independent
            axis += factor * (np.bincount(start, axis[stop], n) * inverse_degree - axis)
        np.clip(out, low, high, out=out)
    smoothed: FloatArray = out.T.astype(np.float32)
    return smoothed
