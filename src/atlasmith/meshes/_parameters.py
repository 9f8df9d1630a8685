"""How meshes are made: the engine's public parameters, recorded in every package manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from atlasmith.errors import ConfigError

__all__ = ["ENGINE", "MeshParameters"]

ENGINE = "atlasmith-surface-nets/4"  # /4: smoothing over a length (um), shrinking a little


@dataclass(frozen=True)
class MeshParameters:
    """How meshes are made; recorded in the package manifest (``to_dict``).

    Parameters
    ----------
    smoothing_um : float
        How far along the surface each structure's mesh is smoothed, in micrometres (0:
        none). Taubin smoothing reaches one edge further with each iteration, an edge being
        about the clustering block (a voxel without clustering), so it runs
        ``round(smoothing_um / edge)`` iterations, and an atlas's meshes are smoothed over
        about the same length at every resolution. It rounds the voxels' staircase away and
        shrinks a little; no vertex moves more than half a voxel along any axis.
    cluster_um : float
        Decimation by vertex clustering: vertices within a block of about ``cluster_um``
        micrometres (at least 2 voxels; 0: no clustering) that lie on the boundaries of the
        same structures and face the same way are merged. The block grows as voxels shrink,
        so the triangles stay about as wide at every resolution.
    decimate : float
        Fraction of the shared surface's triangles kept by a further quadric decimation, in
        (0, 1] (1: none).
    closing : int
        Iterations of the morphological closing (6-neighbour cross) of each structure before
        meshing, which fills its slits and tunnels up to about twice as many voxels wide
        (0: none). Each structure is closed on its own, as BrainGlobe does, so a structure's
        mesh may then overlap its neighbours' and a parent's may hold more than its
        children's.
    decimals : int
        Decimals of the vertex coordinates (micrometres) written to the OBJ files.
    """

    smoothing_um: float = 800.0
    cluster_um: float = 100.0
    decimate: float = 1.0
    closing: int = 1
    decimals: int = 2

    def __post_init__(self) -> None:
        checks = (
            ("smoothing_um", self.smoothing_um, 0.0 <= self.smoothing_um <= 100_000.0),
            ("cluster_um", self.cluster_um, 0.0 <= self.cluster_um <= 10_000.0),
            ("decimate", self.decimate, 0.0 < self.decimate <= 1.0),
            ("closing", self.closing, isinstance(self.closing, int) and self.closing >= 0),
            ("decimals", self.decimals, isinstance(self.decimals, int) and 0 <= self.decimals <= 6),
        )
        for name, value, ok in checks:
            if isinstance(value, bool) or not ok:
                raise ConfigError(
                    f"mesh parameter {name}={value!r} is not valid: smoothing_um is 0 to 100000, "
                    "cluster_um is 0 to 10000, decimate is a fraction in (0, 1], closing is an "
                    "integer >= 0, decimals is 0 to 6."
                )

    def to_dict(self) -> dict[str, Any]:
        """The parameters and the engine name, JSON-ready."""
        return {"engine": ENGINE, **asdict(self)}
