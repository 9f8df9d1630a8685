"""How good a structure's mesh is: topology, size, and distance to what it should represent.

Distances follow CONTRACTS.md: the symmetric mean nearest-neighbour distance between 20,000
points sampled uniformly by area on each surface. The region's voxel boundary is the set of
faces between its voxels and the others (voxel ``i`` spans ``(i - 0.5, i + 0.5) *
resolution``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasmith import errors  # errors.MeshError, made on first use: it imports meshio (65 ms)
from atlasmith.meshes._geometry import cross
from atlasmith.meshes.obj import read_obj as read_any_obj

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.hierarchy import StructureTree

__all__ = [
    "MeshQuality",
    "is_closed",
    "mesh_quality",
    "quality_report",
    "read_obj",
    "surface_distance",
    "voxel_boundary",
]

N_SAMPLES = 20_000
Points = npt.NDArray[np.float64]
Faces = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MeshQuality:
    """Quality of one structure's mesh (lengths in micrometres, volumes in cubic um)."""

    structure_id: int
    triangles: int
    vertices: int
    closed: bool  # every edge is matched by an edge in the opposite direction: watertight
    manifold: bool  # closed, and every edge has exactly two faces
    components: int
    outward: bool  # the enclosed (signed) volume is positive: normals point outwards
    volume: float
    voxel_volume: float
    mean_distance: float  # symmetric mean distance to the voxel boundary
    max_distance: float  # largest sampled distance, either way

    @property
    def volume_ratio(self) -> float:
        """Enclosed volume over the region's voxel volume."""
        return self.volume / self.voxel_volume if self.voxel_volume else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``volume_ratio``)."""
        return {**asdict(self), "volume_ratio": self.volume_ratio}


def read_obj(path: Path | str) -> tuple[Points, Faces]:
    """Vertices and triangles of a Wavefront OBJ file (polygons are fanned into triangles).

    Raises MeshError when the file is missing, is not a valid OBJ file or has no triangles.
    """
    points, faces = read_any_obj(path)
    if not len(faces):
        raise errors.MeshError(f"mesh {path} has no faces: regenerate it (atlasmith meshes).")
    return points, faces


# --- topology and volume -----------------------------------------------------------------


def _edges(faces: Faces) -> tuple[Faces, Faces]:
    """Directed edges of the faces, as (start, stop) arrays."""
    return faces.ravel(), np.roll(faces, -1, axis=1).ravel()


def is_closed(faces: Faces) -> bool:
    """Whether every directed edge of the faces is matched by one in the opposite direction
    (the mesh is watertight and consistently oriented)."""
    n = int(faces.max()) + 1 if len(faces) else 0
    start, stop = _edges(faces)
    return _edges_paired(start * n + stop, stop * n + start)


def _edges_paired(forward: Faces, backward: Faces) -> bool:
    """Whether the directed edges (encoded ``forward``) are those reversed (``backward``)."""
    return bool(np.array_equal(np.sort(forward), np.sort(backward)))


def _topology(faces: Faces, n_points: int) -> tuple[bool, bool, int]:
    """Closed, manifold, and number of connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    start, stop = _edges(faces)
    forward = start * n_points + stop
    backward = stop * n_points + start
    closed = _edges_paired(forward, backward)
    undirected = np.minimum(forward, backward)
    _, counts = np.unique(undirected, return_counts=True)
    manifold = closed and bool(np.all(counts == 2))
    graph = coo_matrix((np.ones(len(start)), (start, stop)), shape=(n_points, n_points))
    _, component = connected_components(graph, directed=False)
    used = np.unique(faces)
    return closed, manifold, int(np.unique(component[used]).size)


def enclosed_volume(points: Points, faces: Faces) -> float:
    """Signed volume enclosed by a closed mesh (positive when normals point outwards)."""
    a, b, c = (points[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, cross(b, c)).sum() / 6.0)


# --- sampling and distances --------------------------------------------------------------


def sample_triangles(points: Points, faces: Faces, n: int = N_SAMPLES, seed: int = 0) -> Points:
    """``n`` points uniformly distributed (by area) on a triangle mesh."""
    rng = np.random.default_rng(seed)
    a, b, c = (points[faces[:, k]] for k in range(3))
    area = np.linalg.norm(cross(b - a, c - a), axis=1)
    chosen = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random((2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = a[chosen], b[chosen], c[chosen]
    out: Points = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    return out


def voxel_boundary(
    mask: npt.NDArray[np.bool_], resolution: Sequence[float], offset: Sequence[int] = (0, 0, 0)
) -> tuple[Points, Faces]:
    """The faces between the voxels of ``mask`` and the others, as a triangle mesh in um.

    ``offset`` is the index of ``mask[0, 0, 0]`` in the full volume (for a cropped mask).
    Each voxel face becomes two triangles, oriented outwards.
    """
    padded = np.pad(mask, 1)
    scale = np.asarray(resolution, dtype=np.float64)
    origin = np.asarray(offset, dtype=np.float64) - 1.0
    pieces = [_axis_faces(padded, axis) for axis in range(3)]
    corners = np.concatenate([p for p in pieces if len(p)])
    points = (corners.reshape(-1, 3) + origin) * scale
    quads = np.arange(len(points), dtype=np.int64).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return points, faces


def _axis_faces(padded: npt.NDArray[np.bool_], axis: int) -> Points:
    """Quads (n, 4, 3) between neighbours along ``axis`` that differ, oriented outwards."""
    moved = np.moveaxis(padded, axis, 0).astype(np.int8)
    change = moved[1:] - moved[:-1]  # +1: the region starts at i + 1, -1: it ends at i
    where = np.argwhere(change != 0)
    sign = change[tuple(where.T)]
    centre = where.astype(np.float64)
    centre[:, 0] += 0.5  # the face lies between index i and i + 1
    square = np.array([[0, -0.5, -0.5], [0, 0.5, -0.5], [0, 0.5, 0.5], [0, -0.5, 0.5]])
    quads = centre[:, None, :] + square  # normal +axis when (axis, others) is right-handed
    handed = -1 if axis == 1 else 1
    reverse = sign * handed > 0
    quads[reverse] = quads[reverse][:, ::-1]
    order = [axis, *(k for k in range(3) if k != axis)]
    out: Points = np.empty_like(quads)
    out[:, :, order] = quads
    return out


def surface_distance(
    first: tuple[Points, Faces],
    second: tuple[Points, Faces],
    n: int = N_SAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Symmetric mean and maximum nearest-neighbour distance between two surfaces, from
    ``n`` points sampled uniformly by area on each."""
    from scipy.spatial import cKDTree

    a = sample_triangles(*first, n=n, seed=seed)
    b = sample_triangles(*second, n=n, seed=seed + 1)
    there, _ = cKDTree(b).query(a)
    back, _ = cKDTree(a).query(b)
    mean = (float(there.mean()) + float(back.mean())) / 2.0
    return mean, float(max(there.max(), back.max()))


# --- reports -----------------------------------------------------------------------------


def mesh_quality(
    structure_id: int,
    mesh: tuple[Points, Faces],
    mask: npt.NDArray[np.bool_],
    resolution: Sequence[float],
    offset: Sequence[int] = (0, 0, 0),
) -> MeshQuality:
    """Quality of one mesh against its region's voxels (``mask``, cropped at ``offset``)."""
    points, faces = mesh
    closed, manifold, components = _topology(faces, len(points))
    volume = enclosed_volume(points, faces)
    boundary = voxel_boundary(mask, resolution, offset)
    mean, largest = surface_distance(mesh, boundary)
    return MeshQuality(
        structure_id=int(structure_id),
        triangles=len(faces),
        vertices=len(np.unique(faces)),
        closed=closed,
        manifold=manifold,
        components=components,
        outward=volume > 0,
        volume=volume,
        voxel_volume=float(np.count_nonzero(mask) * np.prod(resolution)),
        mean_distance=mean,
        max_distance=largest,
    )


def region_masks(
    annotation: npt.NDArray[Any], tree: StructureTree, ids: Sequence[int]
) -> Iterator[tuple[int, npt.NDArray[np.bool_], tuple[int, int, int]]]:
    """Yield ``(id, mask, offset)``: each structure's voxels (with descendants) cropped to
    their bounding box, the boxes from one statistics pass over the volume."""
    from atlasmith.statistics import structure_stats

    stats = structure_stats(annotation, tree)
    for sid in ids:
        row = tree.index(sid)
        if not stats.voxels[row]:
            continue
        low, high = stats.low[row], stats.high[row] + 1
        box = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high, strict=True))
        offset = (int(low[0]), int(low[1]), int(low[2]))
        yield int(sid), tree.map_labels(annotation[box], tree.member_lut(sid)), offset


def quality_report(
    annotation: npt.NDArray[Any],
    tree: StructureTree,
    resolution: Sequence[float],
    mesh_dir: Path,
    ids: Sequence[int] | None = None,
) -> list[MeshQuality]:
    """Quality of each ``mesh_dir/<id>.obj`` (all structures with a mesh, or ``ids``)."""
    mesh_dir = Path(mesh_dir)
    if ids is None:
        ids = [s.id for s in tree if (mesh_dir / f"{s.id}.obj").is_file()]
    return [
        mesh_quality(sid, read_obj(mesh_dir / f"{sid}.obj"), mask, resolution, offset)
        for sid, mask, offset in region_masks(annotation, tree, ids)
    ]
