"""One structure's mesh, smoothed on its own.

A vertex of the shared surface (``atlasmith.surface``) where several structures meet cannot
be placed well for all of them: each wants its own corner rounded. So each structure's mesh,
taken from the shared surface, is smoothed as a whole, as a mesh made from that structure
alone would be, and then each vertex is kept within half a voxel of where the shared surface
put it.

The smoothing is Taubin's low-pass filter (a shrinking step, then an inflating one, in
turn) with factors chosen so that it shrinks a little, never inflates: it rounds the
voxels' staircase away, and a small nucleus comes out slightly inside its voxels, as in
Allen's own meshes, rather than bulging out of them.

Points are in voxel index units.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix  # here, not in smooth: forked mesh workers inherit it

from atlasmith.meshes._geometry import extremes

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

REACH = 0.5  # how far (voxels, per axis) smoothing may move a vertex
_PASS_BAND = (0.4, -0.34)  # Taubin's two factors (shrink, then inflate a little less)


def smoothing_iterations(smoothing_um: float, edge_um: float) -> int:
    """Taubin iterations that reach about ``smoothing_um`` along a surface whose edges are
    about ``edge_um`` long: each iteration reaches one edge further. Always an even number
    (at least 2): the steps go in pairs, a shrinking one then its inflating one, and a
    count that ended on a shrinking step shrank every mesh by a further step (1400 um at
    100 um, 7 steps: every measured Allen region 1 to 3 um smaller than with 6 or 8)."""
    if smoothing_um <= 0:
        return 0
    return 2 * max(1, math.floor(smoothing_um / (2.0 * edge_um) + 0.5))


def smooth(points: FloatArray, faces: IntArray, iterations: int) -> FloatArray:
    """Taubin smoothing over the mesh's edges, the mesh's extreme vertices (the lowest and
    highest along each axis) held where they are, so its extent is never pulled in from
    where the surface put it (a one-voxel tip came out more than a voxel inside its voxels
    otherwise); then each vertex is kept within REACH of its start along each axis.

    Each step moves every vertex towards (or, inflating, away from) the mean of its
    neighbours. In a closed, consistently oriented mesh each edge runs once in each
    direction, so the faces' directed edges list every vertex's neighbours once each: they
    make the sparse averaging matrix directly.
    """
    n = len(points)
    corners = faces.astype(np.int32 if n < 2**31 else np.int64)
    start, stop = corners.ravel(), corners[:, [1, 2, 0]].ravel()
    weight = (1.0 / np.maximum(np.bincount(start, minlength=n), 1)).astype(np.float32)
    mean_of_neighbours = coo_matrix((weight[start], (start, stop)), shape=(n, n))
    out = points.astype(np.float32)  # a copy: float32 is ample for moves within a voxel
    # the lowest and highest vertex along each axis stay where the surface put them
    ends = extremes(points)
    held = out[ends]
    for step in range(iterations):
        out += np.float32(_PASS_BAND[step % 2]) * (mean_of_neighbours @ out - out)
        out[ends] = held
    np.clip(out, points - REACH, points + REACH, out=out)
    return out
