"""How meshes are made: the engine's public parameters, recorded in every package manifest."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from atlasmith.errors import ConfigError

__all__ = [
    "BUDGET_CLOSING",
    "BUDGET_SMOOTHING_UM",
    "CLOSING",
    "DECIMALS",
    "ENGINE",
    "SMOOTHING_UM",
    "MeshParameters",
    "default_decimals",
]

#: Coordinates are written in steps of at most this fraction of the smallest voxel side, or
#: ten times coarser for a mesh whose vertices all stay apart and whose faces all keep some
#: area so (``_engine._decimals``): for every mesh, a tenth would give distinct vertices the
#: same position (28 in 26 Allen meshes at 100 um, and 1,741 triangles of no area), which
#: Draco then merges: a v3 mesh would no longer match its OBJ vertex for vertex.
_COORDINATE_STEP = 0.01
DECIMALS = (-3, 6)  # the fewest (to thousands) and the most decimals written

ENGINE = "atlasmith-surface-nets/12"  # /12: smoothing steps in whole pairs

#: The defaults of ``smoothing_um`` and ``closing`` without a budget, and with one: meshes
#: decimated to edges of ``budget_um`` keep nearer their voxels unclosed, and smoothed over
#: about six such edges (measured on the Allen annotation at 100, 50 and 25 um)
SMOOTHING_UM = 800.0
CLOSING = 1
BUDGET_SMOOTHING_UM = 1200.0
BUDGET_CLOSING = 0


def default_decimals(resolution: float) -> int:
    """Decimals (micrometres) whose last digit is at most a hundredth of a voxel side."""
    low, high = DECIMALS
    return max(low, min(high, math.ceil(-math.log10(resolution * _COORDINATE_STEP) - 1e-9)))


@dataclass(frozen=True)
class MeshParameters:
    """How meshes are made; recorded in the package manifest (``to_dict``).

    Parameters
    ----------
    smoothing_um : float, optional
        How far along the surface each structure's mesh is smoothed, in micrometres (0:
        none). Taubin smoothing reaches one edge further with each iteration, an edge being
        about the clustering block (a voxel without clustering), so it runs about
        ``smoothing_um / edge`` iterations, rounded to whole pairs of Taubin's shrinking and
        inflating steps (at least one pair), and an atlas's meshes are smoothed over about
        the same length at every resolution. It rounds the voxels' staircase away and
        shrinks a little; no vertex moves more than half a voxel along any axis. By default
        (None) 800, or 1200 with a budget.
    cluster_um : float
        Decimation by vertex clustering: vertices within a block of about ``cluster_um``
        micrometres (at least 2 voxels; 0: no clustering) that lie on the boundaries of the
        same structures and face the same way are merged. The block grows as voxels shrink,
        so the triangles stay about as wide at every resolution.
    deviation_um : float
        How far, in micrometres, decimation may move the shared surface (0: no
        decimation): every boundary between structures is simplified, once for all the
        meshes that share it, as long as it stays within about this distance of the
        surface made from the voxels. The triangles follow the shape, not the voxels: an
        atlas gets meshes of about the same weight at every resolution.
    decimate : float
        With a value below 1, decimation goes on past ``deviation_um``, cheapest first,
        until this fraction of the shared surface's triangles is left or no collapse keeps
        every boundary where it is (at 100 um, near half of the Allen annotation's), in
        (0, 1] (1: stop at ``deviation_um``).
    budget_um : float
        A triangle budget for each mesh, set by its geometry, not by the voxel count (0:
        none): a mesh with more triangles than a regular triangulation of its area with
        edges of ``budget_um`` micrometres (``4 / sqrt(3) * area / budget_um**2``, at least
        64) is decimated to that many after smoothing, by quadric error (fast-simplification),
        its extreme vertices held in place, so an atlas's meshes weigh about as much at
        every resolution. With a budget, ``smoothing_um`` and ``closing`` default to 1200
        and 0. On the Allen annotation 200 keeps 1.35, 1.64, 2.05 and 2.83 M triangles at
        100, 50, 25 and 10 um (2.9, 9.3, 15.0 and 25.9 M without); at 100 and 50 um nearer
        both Allen's own meshes and the voxels than BrainGlobe 2.3.1's meshes.
    closing : int, optional
        Iterations of the morphological closing of each structure before meshing, along each
        axis (a line of three voxels), which fills its slits and tunnels up to about twice as
        many voxels wide, but not the inner corners of its voxels' staircase (0: none).
        Each structure is closed on its own, as BrainGlobe does, so a structure's mesh may
        then overlap its neighbours' and a parent's may hold more than its children's. By
        default (None) 1 without a budget and 0 with one: the budget's edges are far wider
        than the slits a closing fills, and unclosed meshes keep nearer their voxels (at
        100 um, 31.78 -> 29.78 um from them on average over 15 regions, 27.93 -> 28.51 um
        from Allen's own meshes, with smoothing 1200; without the closing a parent's mesh
        is the union of its children's before decimation).
    decimals : int, optional
        Decimals of the vertex coordinates (micrometres) written to the OBJ files, -3 to 6
        (below 0 the coordinates are rounded to tens, hundreds or thousands). By default
        (None) only digits that carry information: steps of at most a hundredth of the
        smallest voxel side (:func:`default_decimals`: 0 from 100 to 999 um, 1 from 99 to
        10 um, 2 from 9.9 to 1 um), far below where the voxels put the surface.
    """

    smoothing_um: float | None = None  # resolved on creation: never None after
    cluster_um: float = 100.0
    deviation_um: float = 0.0
    decimate: float = 1.0
    budget_um: float = 0.0
    closing: int | None = None  # resolved on creation: never None after
    decimals: int | None = None

    def __post_init__(self) -> None:
        budget = self.budget_um
        budgeted = isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0
        if self.smoothing_um is None:
            object.__setattr__(
                self, "smoothing_um", BUDGET_SMOOTHING_UM if budgeted else SMOOTHING_UM
            )
        if self.closing is None:
            object.__setattr__(self, "closing", BUDGET_CLOSING if budgeted else CLOSING)
        smoothing_um, closing = self.smoothing_um, self.closing
        checks = (
            (
                "smoothing_um",
                smoothing_um,
                isinstance(smoothing_um, (int, float)) and 0.0 <= smoothing_um <= 100_000.0,
            ),
            ("cluster_um", self.cluster_um, 0.0 <= self.cluster_um <= 10_000.0),
            ("deviation_um", self.deviation_um, 0.0 <= self.deviation_um <= 10_000.0),
            ("decimate", self.decimate, 0.0 < self.decimate <= 1.0),
            ("budget_um", self.budget_um, 0.0 <= self.budget_um <= 100_000.0),
            ("closing", closing, isinstance(closing, int) and closing >= 0),
            (
                "decimals",
                self.decimals,
                self.decimals is None
                or (isinstance(self.decimals, int) and DECIMALS[0] <= self.decimals <= DECIMALS[1]),
            ),
        )
        for name, value, ok in checks:
            if isinstance(value, bool) or not ok:
                raise ConfigError(
                    f"mesh parameter {name}={value!r} is not valid: smoothing_um is 0 to 100000, "
                    "budget_um is 0 to 100000, cluster_um and deviation_um are 0 to 10000, "
                    "decimate is a fraction in "
                    "(0, 1], closing is an integer >= 0 (smoothing_um and closing None: from the "
                    "budget), decimals is -3 to 6 (or None: from the resolution)."
                )

    def decimals_for(self, resolution: float) -> int:
        """The decimals written at ``resolution`` (the smallest voxel side, micrometres)."""
        return default_decimals(resolution) if self.decimals is None else self.decimals

    def to_dict(self) -> dict[str, Any]:
        """The parameters and the engine name, JSON-ready."""
        return {"engine": ENGINE, **asdict(self)}
