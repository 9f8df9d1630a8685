"""Preview figures of an atlas folder: section sheets and mesh sheets (PNG, matplotlib Agg).

A *section sheet* shows frontal (coronal), sagittal and horizontal sections of the reference
with the annotation drawn over it in each structure's ``rgb_triplet`` and outlined. Every
panel carries anatomical direction labels derived from the metadata orientation through
brainglobe-space, and the slice index: an atlas whose data does not match its declared
orientation shows a brain on its side or upside down under labels that say otherwise.

A *mesh sheet* shows the root mesh and the top-level regions (children of the root) seen from
three directions, drawn as an orthographic projection with per-face shading (painter's
algorithm), so no display or OpenGL is needed.

The panel layout and its labels are also written into each PNG as a text chunk
(``atlasmith:panels``, JSON), so programs can check what a figure claims.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from atlasmith._fs import atomic_file
from atlasmith.errors import AtlasFormatError, MeshError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "OVERLAY_ALPHA",
    "AtlasFiles",
    "PanelLayout",
    "load_atlas_files",
    "read_obj",
    "read_panels",
    "render_mesh_sheet",
    "render_section_sheet",
    "section_layout",
    "viewer_side",
    "write_package_preview",
]

Plane = Literal["frontal", "sagittal", "horizontal"]
PLANES: tuple[Plane, ...] = ("frontal", "sagittal", "horizontal")
#: Opacity of the annotation colours over the reference.
OVERLAY_ALPHA = 0.5
#: Colour of labels that have no entry in structures.json (so they stand out).
UNKNOWN_RGB = (255, 0, 255)
PANELS_KEY = "atlasmith:panels"

_WORDS = {
    "a": "anterior",
    "p": "posterior",
    "s": "dorsal",
    "i": "ventral",
    "r": "right",
    "l": "left",
}
_PLANE_TITLES = {"frontal": "frontal (coronal)", "sagittal": "sagittal", "horizontal": "horizontal"}
_SEEN_FROM = {
    "anterior": "the front (anterior)",
    "posterior": "behind (posterior)",
    "dorsal": "above (dorsal)",
    "ventral": "below (ventral)",
    "left": "the left",
    "right": "the right",
}
_PANEL_PX = 260  # longest side of a section panel raster, in pixels


@dataclass(frozen=True)
class PanelLayout:
    """How one plane of an atlas is shown: which axis is sliced, which runs down and across.

    ``top``/``bottom``/``left``/``right`` name the anatomical side at each edge of the panel
    (from the metadata orientation); ``first``/``last`` the sides at slice index 0 and at the
    last index.
    """

    plane: Plane
    slice_axis: int
    row_axis: int
    col_axis: int
    top: str
    bottom: str
    left: str
    right: str
    first: str
    last: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the layout."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def section_layout(orientation: str) -> dict[Plane, PanelLayout]:
    """Panel layout of each anatomical plane for stacks in ``orientation``.

    Rows run along the dorsal-ventral axis when the plane contains it (else anterior-posterior),
    index 0 at the top and on the left, so the data is shown as stored and only the labels come
    from the orientation.

    Examples
    --------
    >>> frontal = section_layout("asr")["frontal"]
    >>> (frontal.slice_axis, frontal.top, frontal.bottom, frontal.left, frontal.first)
    (0, 'dorsal', 'ventral', 'right', 'anterior')
    """
    from atlasmith.orientation import as_space

    space = as_space(orientation)
    pairs: tuple[str, ...] = tuple(space.axes_description)
    planes: tuple[str, ...] = tuple(space.sections)
    return {plane: _plane_layout(plane, planes.index(plane), pairs) for plane in PLANES}


def _plane_layout(plane: Plane, slice_axis: int, pairs: Sequence[str]) -> PanelLayout:
    others = [axis for axis in range(3) if axis != slice_axis]
    vertical = next((a for a in others if set(pairs[a]) == {"s", "i"}), None)
    if vertical is None:
        vertical = next(a for a in others if set(pairs[a]) == {"a", "p"})
    across = next(a for a in others if a != vertical)
    return PanelLayout(
        plane=plane,
        slice_axis=slice_axis,
        row_axis=vertical,
        col_axis=across,
        top=_WORDS[pairs[vertical][0]],
        bottom=_WORDS[pairs[vertical][1]],
        left=_WORDS[pairs[across][0]],
        right=_WORDS[pairs[across][1]],
        first=_WORDS[pairs[slice_axis][0]],
        last=_WORDS[pairs[slice_axis][1]],
    )


# --- reading an atlas folder -------------------------------------------------------------


@dataclass(frozen=True)
class AtlasFiles:
    """The parts of an atlas folder the previews need (stacks memory-mapped when possible)."""

    folder: Path
    metadata: Mapping[str, Any]
    structures: tuple[Mapping[str, Any], ...]
    reference: npt.NDArray[Any]
    annotation: npt.NDArray[Any]

    @property
    def resolution(self) -> tuple[float, float, float]:
        """Voxel size in micrometres."""
        res = self.metadata["resolution"]
        return (float(res[0]), float(res[1]), float(res[2]))

    @property
    def root(self) -> Mapping[str, Any]:
        """The root structure (acronym "root", else the one with a path of length 1)."""
        for structure in self.structures:
            if structure["acronym"] == "root":
                return structure
        return next(s for s in self.structures if len(s["structure_id_path"]) == 1)


def load_atlas_files(folder: str | Path) -> AtlasFiles:
    """Read metadata, structures and the reference and annotation stacks of an atlas folder.

    Raises
    ------
    AtlasFormatError
        When a file is missing or unreadable, or the stacks' shapes differ.
    """
    from atlasmith.metadata import AtlasMetadata, read_json_file

    path = Path(folder)
    if not (path / "metadata.json").is_file():
        raise AtlasFormatError(
            f"{path} is not an atlas folder: it has no metadata.json. Give the folder that "
            "holds reference.tiff, annotation.tiff, structures.json and metadata.json."
        )
    raw = read_json_file(path / "metadata.json", "metadata")
    AtlasMetadata.from_dict(raw)
    structures = read_json_file(path / "structures.json", "structures")
    if not isinstance(structures, list) or not structures:
        raise AtlasFormatError(f"{path / 'structures.json'} must hold a non-empty JSON list.")
    reference = _read_stack(path / "reference.tiff")
    annotation = _read_stack(path / "annotation.tiff")
    if reference.shape != annotation.shape or reference.ndim != 3:
        raise AtlasFormatError(
            f"reference.tiff {reference.shape} and annotation.tiff {annotation.shape} in {path} "
            "must be 3D stacks of the same shape. Rebuild the atlas."
        )
    return AtlasFiles(path, raw, tuple(structures), reference, annotation)


def _read_stack(path: Path) -> npt.NDArray[Any]:
    import tifffile

    if not path.is_file():
        raise AtlasFormatError(f"{path} is missing: every atlas folder has it. Rebuild the atlas.")
    try:
        return np.asarray(tifffile.memmap(path, mode="r"))
    except (ValueError, OSError):
        pass  # compressed or not contiguous: read it into memory instead
    try:
        return np.asarray(tifffile.imread(path))
    except Exception as err:  # tifffile raises many types on corrupt files
        raise AtlasFormatError(f"{path} is not a readable TIFF stack ({err}).") from err


# --- colours -----------------------------------------------------------------------------


def colour_lut(
    structures: Sequence[Mapping[str, Any]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Sorted structure ids and their ``rgb_triplet`` colours (for :func:`label_colours`)."""
    ids = np.array([int(s["id"]) for s in structures], dtype=np.int64)
    rgb = np.array([s["rgb_triplet"] for s in structures], dtype=np.int64).reshape(-1, 3)
    order = np.argsort(ids, kind="stable")
    return ids[order], np.clip(rgb[order], 0, 255).astype(np.uint8)


def label_colours(
    labels: npt.NDArray[Any], ids: npt.NDArray[np.int64], rgb: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """RGB of each label (``UNKNOWN_RGB`` for labels without a structure, 0 for label 0)."""
    flat = labels.astype(np.int64).ravel()
    pos = np.clip(np.searchsorted(ids, flat), 0, len(ids) - 1)
    known = ids[pos] == flat
    out = np.where(known[:, None], rgb[pos], np.array(UNKNOWN_RGB, dtype=np.uint8))
    out[flat == 0] = 0
    return out.reshape(*labels.shape, 3).astype(np.uint8)


# --- section sheets ----------------------------------------------------------------------


def slice_positions(annotation: npt.NDArray[Any], axis: int, count: int) -> list[int]:
    """``count`` slice indices spread over the annotated extent of ``axis`` (inner 80 %)."""
    step = max(1, round((annotation.size / 4e6) ** (1 / 3)))
    sample = np.asarray(annotation[::step, ::step, ::step])
    other = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero(sample.any(axis=other)) * step
    size = annotation.shape[axis]
    lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, size - 1)
    margin = 0.1 * (hi - lo)
    raw = np.linspace(lo + margin, hi - margin, count) if count > 1 else [(lo + hi) / 2]
    return sorted({int(min(size - 1, max(0, round(p)))) for p in raw})


def _intensity_range(reference: npt.NDArray[Any]) -> tuple[float, float]:
    step = max(1, round((reference.size / 2e6) ** (1 / 3)))
    sample = np.asarray(reference[::step, ::step, ::step], dtype=np.float64)
    foreground = sample[sample > sample.min()]
    lo, hi = np.percentile(foreground if foreground.size else sample, [0.5, 99.8])
    return float(lo), float(max(hi, lo + 1e-9))


def section_raster(
    atlas: AtlasFiles,
    layout: PanelLayout,
    index: int,
    lut: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]],
    window: tuple[float, float],
) -> npt.NDArray[np.uint8]:
    """RGB raster of one section: grey reference, annotation colours blended in, outlines."""
    ref = _oriented_slice(atlas.reference, layout, index).astype(np.float64)
    labels = _oriented_slice(atlas.annotation, layout, index)
    scale = max(1, _PANEL_PX // max(labels.shape))
    ref, labels = _upsample(ref, scale), _upsample(labels, scale)
    grey = np.clip((ref - window[0]) / (window[1] - window[0]), 0, 1) * 255
    out = np.repeat(grey[..., None], 3, axis=2)
    inside = labels != 0
    colours = label_colours(labels, *lut).astype(np.float64)
    out[inside] = OVERLAY_ALPHA * colours[inside] + (1 - OVERLAY_ALPHA) * out[inside]
    out[_outlines(labels)] = 0
    return np.round(out).astype(np.uint8)


def _oriented_slice(stack: npt.NDArray[Any], layout: PanelLayout, index: int) -> npt.NDArray[Any]:
    plane = np.take(stack, index, axis=layout.slice_axis)
    rest = [a for a in range(3) if a != layout.slice_axis]
    return np.asarray(plane if rest.index(layout.row_axis) == 0 else plane.T)


def _upsample(image: npt.NDArray[Any], scale: int) -> npt.NDArray[Any]:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _outlines(labels: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def render_section_sheet(
    folder: str | Path | AtlasFiles,
    path: str | Path,
    *,
    positions: int = 5,
    panel_inches: float = 2.3,
    dpi: int = 110,
) -> list[dict[str, Any]]:
    """Write a PNG section sheet: one row per plane, ``positions`` sections per row.

    With ``positions=1`` the three planes share one row (the small package preview).

    Parameters
    ----------
    folder : path or AtlasFiles
        An atlas folder (BrainGlobe v1.2 layout).
    path : path
        The PNG to write (atomically: a temporary file, then renamed).
    positions : int
        Sections per plane, spread over the annotated extent.
    panel_inches, dpi : float, int
        Size of one panel and resolution of the image.

    Returns
    -------
    list of dict
        One entry per panel: the :class:`PanelLayout` fields plus ``index`` and ``size`` (the
        number of slices on that axis). The same list is stored in the PNG's
        ``atlasmith:panels`` text chunk.
    """
    atlas = folder if isinstance(folder, AtlasFiles) else load_atlas_files(folder)
    layouts = section_layout(str(atlas.metadata["orientation"]))
    grid = [
        [
            (layouts[p], i)
            for i in slice_positions(atlas.annotation, layouts[p].slice_axis, positions)
        ]
        for p in PLANES
    ]
    if positions == 1:
        grid = [[row[0] for row in grid]]
    columns = max(len(row) for row in grid)
    ratios = [max(_aspect(atlas, layout) for layout, _ in row) for row in grid]
    height = sum(panel_inches * r + 0.35 for r in ratios) + 0.35
    fig = _figure(panel_inches * columns, height, dpi)
    fig.suptitle(_sheet_title(atlas, "sections"), fontsize=9 if positions > 1 else 7)
    panels = _draw_sections(fig, atlas, grid, columns, ratios)
    _save(fig, Path(path), dpi, panels)
    return panels


def _aspect(atlas: AtlasFiles, layout: PanelLayout) -> float:
    shape, res = atlas.annotation.shape, atlas.resolution
    height = shape[layout.row_axis] * res[layout.row_axis]
    return float(height / (shape[layout.col_axis] * res[layout.col_axis]))


def _draw_sections(
    fig: Figure,
    atlas: AtlasFiles,
    grid: list[list[tuple[PanelLayout, int]]],
    columns: int,
    ratios: list[float],
) -> list[dict[str, Any]]:
    lut, window = colour_lut(atlas.structures), _intensity_range(atlas.reference)
    inches = fig.get_figheight()
    spec = fig.add_gridspec(
        len(grid),
        columns,
        left=0.01,
        right=0.99,
        top=1 - 0.7 / inches,
        bottom=0.05 / inches,
        hspace=0.35 * len(grid) / sum(ratios) / 2.3,
        wspace=0.06,
        height_ratios=ratios,
    )
    panels: list[dict[str, Any]] = []
    res = atlas.resolution
    for row, cells in enumerate(grid):
        for col, (layout, index) in enumerate(cells):
            ax = fig.add_subplot(spec[row, col])
            ax.set_axis_off()
            ax.set_anchor("N")  # panels of one row share the top edge, titles line up
            size = int(atlas.annotation.shape[layout.slice_axis])
            raster = section_raster(atlas, layout, index, lut, window)
            ax.imshow(
                raster, interpolation="nearest", aspect=res[layout.row_axis] / res[layout.col_axis]
            )
            ax.set_title(
                f"{_PLANE_TITLES[layout.plane]} {index}/{size - 1}\n"
                f"index: {layout.first} \u2192 {layout.last}",
                fontsize=7,
                pad=2,
            )
            _direction_labels(ax, layout, boxed=True)
            panels.append({**layout.to_dict(), "index": index, "size": size})
    return panels


def _direction_labels(ax: Axes, layout: PanelLayout, *, boxed: bool) -> None:
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    style: dict[str, Any] = {"transform": ax.transAxes, "fontsize": 6.5}
    if boxed:
        style["bbox"] = box
    ax.text(0.5, 0.985, layout.top, ha="center", va="top", **style)
    ax.text(0.5, 0.015, layout.bottom, ha="center", va="bottom", **style)
    ax.text(0.012, 0.5, layout.left, ha="left", va="center", rotation=90, **style)
    ax.text(0.988, 0.5, layout.right, ha="right", va="center", rotation=270, **style)


def _sheet_title(atlas: AtlasFiles, what: str) -> str:
    meta = atlas.metadata
    res = "x".join(f"{r:g}" for r in atlas.resolution)
    return (
        f"{meta['name']} v{meta['version']} ({meta['species']}, {res} \u00b5m, "
        f"orientation '{meta['orientation']}'): {what}"
    )


def _figure(width: float, height: float, dpi: int) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, facecolor="white")


def _save(fig: Figure, path: Path, dpi: int, panels: list[dict[str, Any]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(
            tmp,
            format="png",
            dpi=dpi,
            facecolor="white",
            bbox_inches="tight",
            pad_inches=0.06,
            metadata={"Software": None, PANELS_KEY: json.dumps(panels, sort_keys=True)},
        )


def read_panels(path: str | Path) -> list[dict[str, Any]]:
    """The panel list stored in a sheet written by this module."""
    from PIL import Image

    with Image.open(path) as image:
        text = image.text.get(PANELS_KEY) if hasattr(image, "text") else None
    if text is None:
        raise AtlasFormatError(f"{path} is not a sheet written by atlasmith (no {PANELS_KEY}).")
    panels: list[dict[str, Any]] = json.loads(text)
    return panels


def write_package_preview(folder: str | Path) -> Path:
    """Write ``preview.png`` (a small section sheet, one section per plane) into an atlas folder.

    Parameters
    ----------
    folder : path
        A complete atlas folder; ``build`` calls this after writing the stacks.

    Returns
    -------
    Path
        ``folder / "preview.png"``.
    """
    target = Path(folder) / "preview.png"
    render_section_sheet(folder, target, positions=1, panel_inches=2.0, dpi=100)
    return target


# --- meshes ------------------------------------------------------------------------------


def read_obj(path: str | Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Vertices (V, 3) and triangles (F, 3, zero-based) of a Wavefront OBJ file.

    Polygons with more than three corners are split into fans; ``v/vt/vn`` face entries and
    negative (relative) indices are understood.

    Raises
    ------
    MeshError
        When the file is missing or not a readable OBJ.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise MeshError(f"cannot read mesh {file}: {err}") from err
    try:
        vertex_rows = _OBJ_VERTEX.findall(text)
        vertices = _numbers(" ".join(vertex_rows), np.float64, 3 * len(vertex_rows)).reshape(-1, 3)
        faces = _obj_faces(_OBJ_FACE.findall(text), len(vertex_rows))
    except (ValueError, IndexError) as err:
        raise MeshError(f"mesh {file} is not a valid OBJ file ({err}).") from err
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise MeshError(f"mesh {file} has faces that refer to vertices it does not have.")
    return vertices, faces


_OBJ_VERTEX = re.compile(r"^v[ \t]+([^\n]*)", re.MULTILINE)
_OBJ_FACE = re.compile(r"^f[ \t]+([^\n]*)", re.MULTILINE)


def _numbers(text: str, dtype: type[Any], count: int) -> npt.NDArray[Any]:
    """Parse exactly ``count`` whitespace-separated numbers (C speed), else ValueError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=dtype, sep=" ") if count else np.zeros(0, dtype)
        except (DeprecationWarning, ValueError) as err:
            raise ValueError(f"unreadable numbers ({err})") from err
    if values.size != count:
        raise ValueError(f"expected {count} numbers, found {values.size}")
    return values


def _obj_faces(rows: list[str], n_vertices: int) -> npt.NDArray[np.int64]:
    joined = " ".join(rows)
    if "/" not in joined:
        try:
            tri = _numbers(joined, np.int64, 3 * len(rows)).reshape(-1, 3)
        except ValueError:
            tri = _fan_faces(rows)
    else:
        tri = _fan_faces(rows)
    return np.where(tri < 0, tri + n_vertices, tri - 1)


def _fan_faces(rows: list[str]) -> npt.NDArray[np.int64]:
    """Triangles of polygon rows (any number of corners, ``v/vt/vn`` entries)."""
    corners = [[int(t.split("/")[0]) for t in row.split()] for row in rows]
    if any(len(c) < 3 for c in corners):
        raise ValueError("a face with fewer than three corners")
    tri = [[c[0], c[k], c[k + 1]] for c in corners for k in range(1, len(c) - 1)]
    return np.array(tri, dtype=np.int64).reshape(-1, 3)


def decimate(
    vertices: npt.NDArray[np.float64], faces: npt.NDArray[np.int64], max_faces: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Simplify a mesh to about ``max_faces`` triangles (unchanged when already smaller)."""
    if len(faces) <= max_faces:
        return vertices, faces
    import fast_simplification

    points32, faces32 = vertices.astype(np.float32), faces.astype(np.int32)
    reduction = 1 - max_faces / len(faces)
    points, tri = fast_simplification.simplify(points32, faces32, reduction)
    if len(tri) > 2 * max_faces:  # stalled (it happens on staircase surfaces): push harder
        points, tri = fast_simplification.simplify(points32, faces32, reduction, agg=10)
    return np.asarray(points, dtype=np.float64), np.asarray(tri, dtype=np.int64)


_VECTORS = {
    "right": (1, 0, 0),
    "left": (-1, 0, 0),
    "anterior": (0, 1, 0),
    "posterior": (0, -1, 0),
    "dorsal": (0, 0, 1),
    "ventral": (0, 0, -1),
}


def viewer_side(layout: PanelLayout) -> str:
    """Side the viewer of a mesh panel stands on, so the picture is not mirrored.

    Screen axes (right, down, into the screen) are right-handed; the panel's column and row
    directions fix which end of the slicing axis the viewer must look from.
    """
    basis = np.array([_VECTORS[layout.right], _VECTORS[layout.bottom], _VECTORS[layout.last]])
    return layout.first if np.linalg.det(basis) > 0 else layout.last


def _mesh_polygons(
    vertices: npt.NDArray[np.float64],
    faces: npt.NDArray[np.int64],
    layout: PanelLayout,
    res: tuple[float, float, float],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """2D triangles (in voxel units, image axes), their depth and their shading for one view."""
    tri = vertices[faces] / np.asarray(res)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    facing = np.abs(normals[:, layout.slice_axis]) / np.where(length > 0, length, 1)
    polygons = tri[:, :, [layout.col_axis, layout.row_axis]]
    depth = tri[:, :, layout.slice_axis].mean(axis=1)
    return polygons, depth, 0.3 + 0.6 * facing


MeshData = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]
MeshReader = Callable[[Path], MeshData]


def top_level_structures(atlas: AtlasFiles) -> list[Mapping[str, Any]]:
    """The root's children, in ``structures.json`` order."""
    root_id = int(atlas.root["id"])
    return [s for s in atlas.structures if list(s["structure_id_path"][:-1]) == [root_id]]


def render_mesh_sheet(
    folder: str | Path | AtlasFiles,
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
    atlas = folder if isinstance(folder, AtlasFiles) else load_atlas_files(folder)
    groups = {"root": [atlas.root], "top-level regions": top_level_structures(atlas)}
    meshes: dict[int, MeshData | None] = {}
    for structures in groups.values():
        meshes.update(_load_row(atlas.folder, structures, max_faces, read))
    layouts = section_layout(str(atlas.metadata["orientation"]))
    fig = _figure(panel_inches * 3, panel_inches * 2 + 0.9, dpi)
    grid = fig.add_gridspec(
        2, 3, left=0.02, right=0.98, top=0.88, bottom=0.09, hspace=0.25, wspace=0.05
    )
    panels: list[dict[str, Any]] = []
    for row, (label, structures) in enumerate(groups.items()):
        for col, plane in enumerate(PLANES):
            ax = fig.add_subplot(grid[row, col])
            drawn = _draw_meshes(ax, structures, meshes, layouts[plane], atlas)
            side = viewer_side(layouts[plane])
            ax.set_title(f"{label}: seen from {_SEEN_FROM[side]}", fontsize=8)
            panels.append(
                {**layouts[plane].to_dict(), "row": label, "structures": drawn, "viewer": side}
            )
    fig.text(0.5, 0.02, _missing_note(groups, meshes), ha="center", fontsize=8, wrap=True)
    fig.suptitle(_sheet_title(atlas, "meshes"), fontsize=10)
    _save(fig, Path(path), dpi, panels)
    return panels


def _load_row(
    folder: Path, structures: Sequence[Mapping[str, Any]], budget: int, read: MeshReader
) -> dict[int, MeshData | None]:
    """Read a row's meshes and decimate them to share ``budget`` triangles."""
    raw: dict[int, MeshData | None] = {}
    for s in structures:
        file = folder / "meshes" / f"{int(s['id'])}.obj"
        try:
            mesh = read(file) if file.is_file() else None
        except MeshError:
            mesh = None
        raw[int(s["id"])] = mesh if mesh is not None and len(mesh[1]) else None
    total = sum(len(m[1]) for m in raw.values() if m is not None) or 1
    return {
        sid: None if m is None else decimate(*m, max(200, budget * len(m[1]) // total))
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
    _direction_labels(ax, layout, boxed=False)
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
