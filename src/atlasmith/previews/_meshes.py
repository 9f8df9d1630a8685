"""Mesh sheets: the root mesh and the top-level regions seen from three directions, as an
orthographic projection with per-face shading (painter's algorithm): no display or OpenGL."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasmith import errors  # errors.MeshError, made on first use: it imports meshio (65 ms)
from atlasmith._types import PathLike
from atlasmith.formats import AtlasFiles
from atlasmith.meshes._geometry import cross
from atlasmith.meshes.decimation import simplify
from atlasmith.meshes.obj import MeshData, read_obj
from atlasmith.previews._layout import (
    PLANES,
    SEEN_FROM,
    PanelLayout,
    direction_labels,
    load_atlas_files,
    new_figure,
    root_structure,
    save_figure,
    section_layout,
    sheet_title,
    top_level_structures,
    viewer_side,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["MeshReader", "render_mesh_sheet"]

#: Reads one OBJ file (the inspection passes one that keeps meshes it reads twice).
MeshReader = Callable[[Path], MeshData]


def _mesh_polygons(
    vertices: npt.NDArray[np.float64],
    faces: npt.NDArray[np.int64],
    layout: PanelLayout,
    res: tuple[float, float, float],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """2D triangles (in voxel units, image axes), their depth and their shading for one view."""
    tri = vertices[faces] / np.asarray(res)
    normals = cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    facing = np.abs(normals[:, layout.slice_axis]) / np.where(length > 0, length, 1)
    polygons = tri[:, :, [layout.col_axis, layout.row_axis]]
    depth = tri[:, :, layout.slice_axis].mean(axis=1)
    return polygons, depth, 0.3 + 0.6 * facing


def render_mesh_sheet(
    folder: PathLike | AtlasFiles,
    path: str | Path,
    *,
    max_faces: int = 12000,
    panel_inches: float = 3.0,
    dpi: int = 100,
    read: MeshReader = read_obj,
) -> list[dict[str, Any]]:
    """Write a PNG of the root mesh and the top-level regions seen from three directions.

    Row 1 shows the root mesh, row 2 the meshes of the root's children, each in its
    ``rgb_triplet``, viewed along each anatomical axis (orthographic, nearest faces on top).
    Each row is decimated to about ``max_faces`` triangles in all (shared among its meshes in
    proportion to their size). Missing meshes are listed in the figure.

    Parameters
    ----------
    folder : path or AtlasFiles
        An atlas folder.
    path : path
        The PNG to write (atomically).
    max_faces : int
        Triangle budget per row.
    panel_inches, dpi : float, int
        Size of one panel and resolution of the image.
    read : callable
        Reads one OBJ file (default :func:`read_obj`; the inspection passes a caching one).

    Returns
    -------
    list of dict
        One entry per panel: the view's :class:`PanelLayout` fields plus ``row``,
        ``structures`` (ids drawn) and ``viewer``. Also stored in the PNG's
        ``atlasmith:panels`` chunk.
    """
    atlas = load_atlas_files(folder)
    groups = {"root": [root_structure(atlas)], "top-level regions": top_level_structures(atlas)}
    meshes: dict[int, MeshData | None] = {}
    for structures in groups.values():
        meshes.update(_load_row(atlas, structures, max_faces, read))
    layouts = section_layout(atlas.metadata.orientation)
    fig = new_figure(panel_inches * 3, panel_inches * 2 + 0.9, dpi)
    grid = fig.add_gridspec(
        2, 3, left=0.02, right=0.98, top=0.88, bottom=0.09, hspace=0.25, wspace=0.05
    )
    panels: list[dict[str, Any]] = []
    for row, (label, structures) in enumerate(groups.items()):
        for col, plane in enumerate(PLANES):
            ax = fig.add_subplot(grid[row, col])
            drawn = _draw_meshes(ax, structures, meshes, layouts[plane], atlas)
            side = viewer_side(layouts[plane])
            ax.set_title(f"{label}: seen from {SEEN_FROM[side]}", fontsize=8)
            panels.append(
                {**layouts[plane].to_dict(), "row": label, "structures": drawn, "viewer": side}
            )
    fig.text(0.5, 0.02, _missing_note(groups, meshes), ha="center", fontsize=8, wrap=True)
    fig.suptitle(sheet_title(atlas, "meshes"), fontsize=10)
    save_figure(fig, Path(path), dpi, panels)
    return panels


def _load_row(
    atlas: AtlasFiles, structures: Sequence[Mapping[str, Any]], budget: int, read: MeshReader
) -> dict[int, MeshData | None]:
    """Read a row's meshes and decimate them to share ``budget`` triangles."""
    raw: dict[int, MeshData | None] = {}
    for s in structures:
        file = atlas.mesh_path(int(s["id"]))
        try:
            mesh = read(file) if file.is_file() else None
        except errors.MeshError:
            mesh = None
        raw[int(s["id"])] = mesh if mesh is not None and len(mesh[1]) else None
    total = sum(len(m[1]) for m in raw.values() if m is not None) or 1
    return {
        sid: None if m is None else simplify(*m, max(200, budget * len(m[1]) // total))
        for sid, m in raw.items()
    }


def _missing_note(
    groups: Mapping[str, Sequence[Mapping[str, Any]]], meshes: Mapping[int, MeshData | None]
) -> str:
    missing = [
        f"{s['acronym']} ({s['id']})"
        for structures in groups.values()
        for s in structures
        if meshes[int(s["id"])] is None
    ]
    if not missing:
        return "all meshes present"
    more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    return "missing or empty meshes: " + ", ".join(missing[:12]) + more


def _draw_meshes(
    ax: Axes,
    structures: Sequence[Mapping[str, Any]],
    meshes: Mapping[int, MeshData | None],
    layout: PanelLayout,
    atlas: AtlasFiles,
) -> list[int]:
    from matplotlib.collections import PolyCollection

    parts, drawn = [], []
    for structure in structures:
        mesh = meshes.get(int(structure["id"]))
        if mesh is None:
            continue
        polygons, depth, shade = _mesh_polygons(*mesh, layout, atlas.resolution)
        base = np.asarray(structure["rgb_triplet"], dtype=np.float64) / 255
        parts.append((polygons, depth, shade[:, None] * base))
        drawn.append(int(structure["id"]))
    shape = atlas.annotation.shape
    pad_x, pad_y = 0.08 * shape[layout.col_axis], 0.08 * shape[layout.row_axis]
    ax.set_xlim(-0.5 - pad_x, shape[layout.col_axis] - 0.5 + pad_x)
    ax.set_ylim(shape[layout.row_axis] - 0.5 + pad_y, -0.5 - pad_y)
    res = atlas.resolution
    ax.set_aspect(res[layout.row_axis] / res[layout.col_axis])
    ax.set_xticks([])
    ax.set_yticks([])
    direction_labels(ax, layout, boxed=False)
    if not parts:
        ax.text(0.5, 0.5, "no mesh", ha="center", va="center", transform=ax.transAxes)
        return drawn
    polygons = np.concatenate([p[0] for p in parts])
    depth = np.concatenate([p[1] for p in parts])
    colours = np.clip(np.concatenate([p[2] for p in parts]), 0, 1)
    near_first = viewer_side(layout) == layout.first  # viewer at index 0: low depth is near
    order = np.argsort(-depth if near_first else depth, kind="stable")  # far faces first
    triangles: Any = polygons[order]  # an (F, 3, 2) array: matplotlib's fast path
    collection = PolyCollection(
        triangles, facecolors=colours[order], edgecolors="none", antialiased=False
    )
    ax.add_collection(collection)
    return drawn
