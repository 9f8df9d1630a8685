"""AAL (Automated Anatomical Labelling) human atlas in MNI space, 1 mm.

Labels: AAL (Tzourio-Mazoyer et al. 2002), 116 regions on a (181, 217, 181) 1 mm grid.
Reference: the MNI ICBM152 2009a symmetric T1 template, resampled onto the label grid through
the two NIfTI affines (world coordinates in mm; linear interpolation).

Packaging choices
-----------------
- AAL's list is flat. As the BrainGlobe guide asks, a ``root`` (id 999, not an AAL label) is
  added and every region is its child.
- AAL gives the left and right copy of a region different labels (``Precentral_L`` = 1,
  ``Precentral_R`` = 2). BrainGlobe's rule is one id per region for both hemispheres (readers
  answer "which region" and "which hemisphere" separately), so the pair is merged into one
  structure ``Precentral`` with the left label's id, and the side is kept in a hemispheres
  stack: 1 (left) / 2 (right) from the original labels where a voxel has a sided label, from
  the sign of the MNI x coordinate elsewhere (x < 0 left, x > 0 right, 0 on the midline plane).
  Nothing of AAL is lost and the atlas is asymmetric, as the real labels are.
- The NIfTI arrays are in RAS voxel order: index 0 at the left, posterior, inferior side:
  ORIENTATION "lpi".
"""

from __future__ import annotations

import colorsys
import functools
from pathlib import Path
from typing import Any

import numpy as np

from atlasmith.sources import Source

__version__ = 0
ATLAS_NAME = "aal_human"
SPECIES = "Homo sapiens"
ATLAS_LINK = "https://www.gin.cnrs.fr/en/tools/aal/"
CITATION = "Tzourio-Mazoyer et al. 2002, https://doi.org/10.1006/nimg.2001.0978"
ATLAS_PACKAGER = "atlasmith project"
ORIENTATION = "lpi"
ROOT_ID = 999
RES_UM = 1000
LICENSE = (
    "AAL: free for research (GIN Bordeaux). MNI ICBM152 2009a template: Copyright (C) 1993-2009 "
    "Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill "
    "University; may be used, copied and distributed freely with this notice."
)

SOURCES = {
    "labels": Source(
        "human_aal_mni/AAL.nii.gz",
        sha256="50188d75f24ad043975a8e4c2f255c4c743d7488407b054f722a44ee73846f9f",
    ),
    "names": Source(
        "human_aal_mni/AAL.txt",
        sha256="9dd37ab0b2279fb04c94d18715563fb98020fc1a7eea4419029cede13cd37bff",
    ),
    "template": Source(
        "mni_icbm152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        sha256="421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
    ),
}
_SIDES = {"_L": 1, "_R": 2}


def _label_table(ctx: Any) -> list[tuple[int, str]]:
    """(label, AAL name) pairs, in file order."""
    lines = ctx.source("names").read_text(encoding="utf-8").splitlines()
    return [(int(i), name.strip()) for i, name in (line.split("\t") for line in lines if line)]


def _split(name: str) -> tuple[str, int]:
    """Region name without its side suffix, and the side (0 none, 1 left, 2 right)."""
    for suffix, side in _SIDES.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], side
    return name, 0


def _regions(ctx: Any) -> dict[str, int]:
    """Region name -> merged id (the lowest label of its copies)."""
    merged: dict[str, int] = {}
    for label, name in _label_table(ctx):
        region, _ = _split(name)
        merged[region] = min(merged.get(region, label), label)
    return merged


@functools.lru_cache(maxsize=2)
def _read_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(path)
    return np.asarray(image.dataobj).astype(np.int64), image.affine


def _labels(ctx: Any) -> tuple[np.ndarray, np.ndarray]:
    return _read_labels(ctx.source("labels"))


def load_annotation(ctx: Any) -> np.ndarray:
    labels, _ = _labels(ctx)
    regions = _regions(ctx)
    lut = np.zeros(labels.max() + 1, dtype=np.uint32)
    for label, name in _label_table(ctx):
        lut[label] = regions[_split(name)[0]]
    return lut[labels]


def load_hemispheres(ctx: Any) -> np.ndarray:
    labels, affine = _labels(ctx)
    side = np.zeros(labels.max() + 1, dtype=np.uint8)
    for label, name in _label_table(ctx):
        side[label] = _split(name)[1]
    x = affine[0, 0] * np.arange(labels.shape[0]) + affine[0, 3]  # RAS: x < 0 is left
    by_position = np.where(x < 0, 1, np.where(x > 0, 2, 0)).astype(np.uint8)
    hemispheres = side[labels]
    return np.where(hemispheres == 0, by_position[:, None, None], hemispheres)


def load_reference(ctx: Any) -> np.ndarray:
    import nibabel as nib
    from scipy import ndimage

    labels, label_affine = _labels(ctx)
    template = nib.load(ctx.source("template"))
    to_template = np.linalg.inv(template.affine) @ label_affine  # label voxel -> template voxel
    data = np.asarray(template.dataobj, dtype=np.float32)
    matrix = to_template[:3, :3]
    if np.allclose(matrix, np.diag(np.diag(matrix))):
        matrix = np.diag(matrix)  # axis-aligned grids: scipy's faster diagonal path, same result
    values = ndimage.affine_transform(
        data, matrix, to_template[:3, 3], output_shape=labels.shape, order=1
    )
    return np.rint(values).astype(np.uint16)


def _colour(index: int) -> list[int]:
    """A distinct, deterministic colour per region (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.55, 0.9)
    return [round(r * 255), round(g * 255), round(b * 255)]


def load_structures(ctx: Any) -> list[dict[str, Any]]:
    root = {
        "acronym": "root",
        "id": ROOT_ID,
        "name": "root",
        "structure_id_path": [ROOT_ID],
        "rgb_triplet": [255, 255, 255],
    }
    regions = sorted(_regions(ctx).items(), key=lambda item: item[1])
    return [root] + [
        {
            "acronym": region,
            "id": sid,
            "name": region.replace("_", " "),
            "structure_id_path": [ROOT_ID, sid],
            "rgb_triplet": _colour(i),
        }
        for i, (region, sid) in enumerate(regions)
    ]
