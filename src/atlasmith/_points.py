"""Points in an atlas: coordinates (one point or N, voxels or micrometres) to voxel indices,
checked against the volume (negative or out-of-range points are errors, never wrapped)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from atlasmith.errors import CoordinateError, InvalidCoordinatesError

__all__ = ["Grid", "as_voxels", "check_bounds", "flat_indices"]


class Grid(Protocol):
    """The voxel grid points are checked against (an :class:`~atlasmith.Atlas`)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def resolution(self) -> tuple[float, ...]: ...

    @property
    def shape_um(self) -> tuple[float, ...]: ...


def as_voxels(grid: Grid, coords: Any, microns: bool) -> tuple[npt.NDArray[np.int64], bool]:
    """(N, 3) voxel indices for one point or N points, and whether one point was given.

    Microns map to ``floor(x / resolution)``; voxel coordinates that are not integers are
    floored too (BrainGlobe truncates, the same for the non-negative coordinates it
    accepts). Anything outside ``0 <= index < shape`` raises CoordinateError.
    """
    try:
        points = np.asarray(coords)
        if points.dtype.kind not in "iu" or microns:
            points = points.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidCoordinatesError(
            f"coordinates must be numbers (one point of 3, or an (N, 3) array), got {coords!r}."
        ) from err
    single = points.shape == (3,)
    if not single and (points.ndim != 2 or points.shape[1] != 3):
        raise InvalidCoordinatesError(
            f"coordinates must be one point of 3 values or an (N, 3) array, got shape "
            f"{points.shape}."
        )
    points = points.reshape(-1, 3)
    if points.dtype.kind == "f":
        points = _floor_points(grid, points, microns)
    if single:
        check_bounds(grid, points, microns)
    return points.astype(np.int64, copy=False), single


def _floor_points(grid: Grid, points: npt.NDArray[np.float64], microns: bool) -> npt.NDArray[Any]:
    if not np.isfinite(points).all():
        bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        raise InvalidCoordinatesError(
            f"point {bad} is {points[bad].tolist()}: coordinates must be finite numbers."
        )
    if microns:
        points = points / np.asarray(grid.resolution, dtype=np.float64)
    return np.floor(points)


def check_bounds(grid: Grid, points: npt.NDArray[Any], microns: bool) -> None:
    shape = np.asarray(grid.shape)
    bad = ((points < 0) | (points >= shape)).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        unit = "um" if microns else "voxels"
        raise CoordinateError(
            f"{int(bad.sum())} point(s) fall outside the atlas volume; the first is point "
            f"{first}, voxel {points[first].astype(np.int64).tolist()} (from coordinates in "
            f"{unit}), but indices must be 0 <= index < shape {grid.shape} (extent "
            f"{grid.shape_um} um). Negative coordinates are errors, not wrapped around "
            "(unlike BrainGlobe)."
        )


def flat_indices(grid: Grid, voxels: npt.NDArray[np.int64], microns: bool) -> npt.NDArray[np.intp]:
    """Flat indices of (N, 3) voxels; CoordinateError for any outside the volume."""
    try:
        flat: npt.NDArray[np.intp] = np.ravel_multi_index(
            (voxels[:, 0], voxels[:, 1], voxels[:, 2]), grid.shape
        )
    except ValueError:  # numpy rejects negative and too-large indices: say which
        check_bounds(grid, voxels, microns)
        raise
    return flat
