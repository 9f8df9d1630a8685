"""Section sheets: frontal, sagittal and horizontal sections of the reference with the
annotation drawn over it in each structure's colour and outlined, labelled with anatomical
directions from the metadata orientation and with slice indices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasmith._types import PathLike
from atlasmith.formats import PREVIEW, AtlasFiles
from atlasmith.previews._layout import (
    OVERLAY_ALPHA,
    PLANE_TITLES,
    PLANES,
    UNKNOWN_RGB,
    PanelLayout,
    direction_labels,
    load_atlas_files,
    new_figure,
    save_figure,
    section_layout,
    sheet_title,
)
from atlasmith.statistics import plane, sample_every

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["render_section_sheet", "sheet_checklist", "write_package_preview"]

_PANEL_PX = 260  # longest side of a section panel raster, in pixels


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


def slice_positions(annotation: npt.NDArray[Any], axis: int, count: int) -> list[int]:
    """``count`` slice indices spread over the annotated extent of ``axis`` (inner 80 %)."""
    step = max(1, round((annotation.size / 4e6) ** (1 / 3)))
    sample = sample_every(annotation, step)
    other = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero(sample.any(axis=other)) * step
    size = annotation.shape[axis]
    lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, size - 1)
    margin = 0.1 * (hi - lo)
    raw = np.linspace(lo + margin, hi - margin, count) if count > 1 else [(lo + hi) / 2]
    return sorted({int(min(size - 1, max(0, round(p)))) for p in raw})


def _intensity_range(reference: npt.NDArray[Any]) -> tuple[float, float]:
    step = max(1, round((reference.size / 2e6) ** (1 / 3)))
    sample = sample_every(reference, step).astype(np.float64)
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
    section = plane(stack, layout.slice_axis, index)
    rest = [a for a in range(3) if a != layout.slice_axis]
    return np.asarray(section if rest.index(layout.row_axis) == 0 else section.T)


def _upsample(image: npt.NDArray[Any], scale: int) -> npt.NDArray[Any]:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _outlines(labels: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def render_section_sheet(
    folder: PathLike | AtlasFiles,
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
        An atlas (a v1.2 folder, or one opened with :func:`atlasmith.formats.open_atlas_files`).
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
    atlas = load_atlas_files(folder)
    layouts = section_layout(atlas.metadata.orientation)
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
    fig = new_figure(panel_inches * columns, height, dpi)
    fig.suptitle(sheet_title(atlas, "sections"), fontsize=9 if positions > 1 else 7)
    panels = _draw_sections(fig, atlas, grid, columns, ratios)
    save_figure(fig, Path(path), dpi, panels)
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
    lut, window = colour_lut(atlas.structures_list), _intensity_range(atlas.reference)
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
                f"{PLANE_TITLES[layout.plane]} {index}/{size - 1}\n"
                f"index: {layout.first} \u2192 {layout.last}",
                fontsize=7,
                pad=2,
            )
            direction_labels(ax, layout, boxed=True)
            panels.append({**layout.to_dict(), "index": index, "size": size})
    return panels


def write_package_preview(folder: PathLike) -> Path:
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
    target = Path(folder) / PREVIEW
    render_section_sheet(folder, target, positions=1, panel_inches=2.0, dpi=100)
    return target


def sheet_checklist(
    sheet: Path | None, symmetric: bool | None, manifest: Path | None = None
) -> str:
    """What a packager should look for on a build's section sheet, and where it is.

    ``sheet``: the package's ``preview.png`` (None when only BrainGlobe 3 was written; then
    ``manifest`` says what to convert to get one). ``symmetric``: from the metadata (None:
    unknown). The checks cannot tell an upside-down atlas from the data, nor that a
    symmetric one is not mirrored left to right: only a person looking at the sheet can.
    """
    if sheet is None:
        source = manifest if manifest is not None else "MANIFEST"
        where = (
            f"--format v3 alone keeps none; `atlasmith convert {source} --to v1 --out DIR` "
            f"writes one (DIR/<atlas folder>/{PREVIEW})"
        )
    else:
        where = str(sheet)
    if symmetric is False:
        sides = (
            "the build checked that hemisphere 1 lies on the side labelled left; make sure "
            "1 is the brain's left in your sources"
        )
    else:
        sides = (
            "the midline runs down the middle of the frontal and horizontal panels (readers "
            "split a symmetric atlas into hemispheres there)"
        )
    return "\n".join(
        [
            f"Look at the section sheet before you share the atlas: {where}",
            "  - up and front: the words at each panel's edges (dorsal, anterior, left...) say "
            "where the atlas claims that side is; the brain must agree. Upside down or back "
            "to front means ORIENTATION is wrong (no check can tell up from down).",
            f"  - left and right: {sides}.",
            "  - labels: the coloured regions lie on the brain in the reference, their "
            "outlines along its edges; a shifted, stretched or mirrored overlay means the "
            "annotation and the reference do not match.",
        ]
    )
