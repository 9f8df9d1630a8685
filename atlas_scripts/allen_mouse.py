"""Allen Mouse Brain Atlas (CCFv3, 2017 annotation) at 100, 50 and 25 um.

Build with ``atlasmith build atlas_scripts/allen_mouse.py`` (100 um, from the project's own
data) or ``--resolution 50`` / ``--resolution 25 --source-dir ../shared/data`` (Allen's
official 25 um annotation, ``allen_ccf2017_25um/annotation_25.nrrd``).

- Annotation: Allen's official 2017 annotation at 25 um; 50 um takes every 2nd voxel of it,
  100 um is the project's ``data/allen_mouse_100um/annotation_100um.nrrd`` (every 4th voxel of
  the same file, see its PROVENANCE.md).
- Reference: the real 100 um CCFv3 average template; for 50 and 25 um it is interpolated
  (linear, voxel areas aligned: ``scipy.ndimage.zoom(..., grid_mode=True)``), as the finer
  templates are not part of the project's data.
- Structures: BrainGlobe's 840-structure Allen list; meshes are generated from the annotation.
- The CCF volumes are stored anterior->posterior, superior->inferior, right->left: "asr".
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from atlasmith.sources import Source

__version__ = 2
ATLAS_NAME = "allen_mouse"
SPECIES = "Mus musculus"
ATLAS_LINK = "http://www.brain-map.org"
CITATION = "Wang et al 2020, https://doi.org/10.1016/j.cell.2020.04.007"
ATLAS_PACKAGER = "atlasmith project, after BrainGlobe's allen_mouse.py (Federico Claudi)"
ORIENTATION = "asr"
ROOT_ID = 997
RES_UM = 100
RESOLUTIONS = [100, 50, 25]
LICENSE = "Allen Institute Terms of Use (research and non-commercial use with attribution)"

SOURCES = {
    "annotation_100": Source(
        "allen_mouse_100um/annotation_100um.nrrd",
        sha256="c11678acc9d614e3bd152d2d811086d98bca7d18234c32df70fab5d286f39da7",
    ),
    "annotation_25": Source(
        "allen_ccf2017_25um/annotation_25.nrrd",
        sha256="c620cbcc562183e4dcd40250d440130501781f74b41de35b1c1bdabace290c42",
        url="https://download.alleninstitute.org/informatics-archive/current-release/"
        "mouse_ccf/annotation/ccf_2017/annotation_25.nrrd",
    ),
    "reference_100": Source(
        "allen_mouse_100um/reference.tiff",
        sha256="8137e914edfecd29f97310937d080c8c1e54909dc885108b4643820e9c2ae6d3",
    ),
    "structures": Source(
        "allen_mouse_100um/structures.json",
        sha256="7157e6130b354f6bebc21aa79f882274cbbe253ac916d97123805af3b4ff8abd",
    ),
}


def _factor(ctx: Any) -> int:
    """Upsampling factor from 100 um."""
    return int(round(100 / ctx.resolution_um))


def load_reference(ctx: Any) -> np.ndarray:
    import tifffile
    from scipy import ndimage

    reference = tifffile.imread(ctx.source("reference_100"))
    factor = _factor(ctx)
    if factor == 1:
        return reference
    return ndimage.zoom(reference, factor, order=1, grid_mode=True, mode="nearest")


def load_annotation(ctx: Any) -> np.ndarray:
    import nrrd

    if _factor(ctx) == 1:
        annotation, _ = nrrd.read(str(ctx.source("annotation_100")))
        return annotation
    annotation, _ = nrrd.read(str(ctx.source("annotation_25")))
    step = 4 // _factor(ctx)  # 25 um: every voxel, 50 um: every 2nd
    return annotation[::step, ::step, ::step]


def load_structures(ctx: Any) -> list[dict[str, Any]]:
    with open(ctx.source("structures"), encoding="utf-8") as handle:
        structures: list[dict[str, Any]] = json.load(handle)
    return structures
