"""What every preview sheet shares: how each anatomical plane is laid out and labelled, the
figure itself (matplotlib Agg, written atomically with its panel list), and opening an atlas
for drawing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from atlasmith._fs import atomic_file
from atlasmith._types import PathLike
from atlasmith.errors import AtlasFormatError
from atlasmith.formats import AtlasFiles, open_atlas_files

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
PLANE_TITLES = {"frontal": "frontal (coronal)", "sagittal": "sagittal", "horizontal": "horizontal"}
SEEN_FROM = {
    "anterior": "the front (anterior)",
    "posterior": "behind (posterior)",
    "dorsal": "above (dorsal)",
    "ventral": "below (ventral)",
    "left": "the left",
    "right": "the right",
}


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


def direction_labels(ax: Axes, layout: PanelLayout, *, boxed: bool) -> None:
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    style: dict[str, Any] = {"transform": ax.transAxes, "fontsize": 6.5}
    if boxed:
        style["bbox"] = box
    ax.text(0.5, 0.985, layout.top, ha="center", va="top", **style)
    ax.text(0.5, 0.015, layout.bottom, ha="center", va="bottom", **style)
    ax.text(0.012, 0.5, layout.left, ha="left", va="center", rotation=90, **style)
    ax.text(0.988, 0.5, layout.right, ha="right", va="center", rotation=270, **style)


def sheet_title(atlas: AtlasFiles, what: str) -> str:
    meta = atlas.metadata_dict
    res = "x".join(f"{r:g}" for r in atlas.resolution)
    return (
        f"{meta['name']} v{meta['version']} ({meta['species']}, {res} \u00b5m, "
        f"orientation '{meta['orientation']}'): {what}"
    )


def new_figure(width: float, height: float, dpi: int) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, facecolor="white")


def save_figure(fig: Figure, path: Path, dpi: int, panels: list[dict[str, Any]]) -> None:
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


# --- the atlas being drawn -------------------------------------------------------------------


def load_atlas_files(folder: PathLike | AtlasFiles) -> AtlasFiles:
    """Open an atlas for drawing and check what the sheets need: valid metadata, a non-empty
    structure list, and reference and annotation stacks of one 3-D shape.

    The structure tree is not validated: a broken atlas can still be drawn and inspected.

    Raises
    ------
    AtlasFormatError
        When a file is missing or unreadable, or the stacks' shapes differ (MetadataError for
        invalid metadata).
    """
    atlas = open_atlas_files(folder)
    atlas.metadata  # noqa: B018 (parses and validates)
    if not atlas.structures_list:
        raise AtlasFormatError(f"{atlas.path}: the structure list is empty.")
    reference, annotation = atlas.reference, atlas.annotation
    if reference.shape != annotation.shape or reference.ndim != 3:
        raise AtlasFormatError(
            f"reference {reference.shape} and annotation {annotation.shape} in {atlas.path} "
            "must be 3D stacks of the same shape. Rebuild the atlas."
        )
    return atlas


def root_structure(atlas: AtlasFiles) -> Mapping[str, Any]:
    """The root structure (acronym "root", else the one with a path of length 1)."""
    structures = atlas.structures_list
    for structure in structures:
        if structure["acronym"] == "root":
            return structure
    return next(s for s in structures if len(s["structure_id_path"]) == 1)


def top_level_structures(atlas: AtlasFiles) -> list[Mapping[str, Any]]:
    """The root's children, in ``structures.json`` order."""
    root_id = int(root_structure(atlas)["id"])
    return [s for s in atlas.structures_list if list(s["structure_id_path"][:-1]) == [root_id]]
