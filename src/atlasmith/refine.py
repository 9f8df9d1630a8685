"""One structure's mesh, smoothed on its own.

A vertex of the shared surface (``atlasmith.surface``) where several structures meet cannot
be placed well for all of them: each wants its own corner rounded. So each structure's mesh,
taken from the shared surface, is smoothed as a whole (Taubin: the surface is rounded, not
shrunk), each vertex kept within half a voxel of where the shared surface put it, as a mesh
made from that structure alone would be.

Points are in voxel index units.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

REACH = 0.5  # how far (voxels, per axis) smoothing may move a vertex
_PASS_BAND = (0.5, -0.53)  # Taubin's two factors (shrink, then inflate)


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
