"""Triangle geometry shared by the engine, the decimation, the OBJ writer and the quality
report: the cross product of row vectors and each face's edge cross product (twice its
area-weighted normal), in one place.

``numpy.cross`` moves axes and allocates for every call; three products and three
subtractions per component are the same arithmetic, in the same order (the same bits), in
a quarter of the time (2 M float32 rows: 88 -> 23 ms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["cross", "extremes", "face_cross"]


def cross(u: npt.NDArray[Any], v: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Row-wise ``u x v`` of two (n, 3) arrays: ``numpy.cross``'s result, bit for bit."""
    out = np.empty(np.broadcast_shapes(u.shape, v.shape), dtype=np.result_type(u, v))
    np.subtract(u[:, 1] * v[:, 2], u[:, 2] * v[:, 1], out=out[:, 0])
    np.subtract(u[:, 2] * v[:, 0], u[:, 0] * v[:, 2], out=out[:, 1])
    np.subtract(u[:, 0] * v[:, 1], u[:, 1] * v[:, 0], out=out[:, 2])
    return out


def face_cross(
    points: npt.NDArray[Any], faces: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Each face's first corner ``a`` and ``(b - a) x (c - a)`` (its normal, twice its area
    long), in the points' dtype, from one gathering of the corners."""
    a = points[faces[:, 0]]
    b = points[faces[:, 1]]
    b -= a
    c = points[faces[:, 2]]
    c -= a
    return a, cross(b, c)


def extremes(points: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """The indices of a mesh's lowest vertex along each axis, then its highest (the
    vertices that set its extent; one may appear twice)."""
    return np.concatenate([points.argmin(axis=0), points.argmax(axis=0)])
