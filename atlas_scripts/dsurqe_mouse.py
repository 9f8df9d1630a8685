"""DSURQE mouse MRI atlas (Dorr, Steadman, Ullmann, Richards, Qiu, Egan), in CCFv3 space, 200 um.

Labels and reference (the DSURQE MRI average) are MINC2 volumes read with nibabel (h5py); the
label table ``DSURQE_40micron_R_mapping_long.csv`` gives each label's tissue type (grey matter,
white matter, cerebrospinal fluid) and, for many, a region group (e.g. "Hippocampal region").

Packaging choices
-----------------
- Hierarchy: root -> tissue type -> region group (when the table gives one) -> region; regions
  with no tissue type hang from the root (or from their group). Group ids start at 1000, above
  every DSURQE label (max 356); the root is 999.
- DSURQE gives the left and right copy of a region different labels ("right amygdala" = 51,
  "left amygdala" = 151). BrainGlobe's rule is one id per region for both hemispheres, so each
  pair is merged into one structure (named without the side, with the lower of the two labels
  as its id), and the side is kept in a hemispheres stack: from the label's side where it has
  one, from the sign of the CCF x coordinate elsewhere (the midline falls between voxels).
- The reference is a float MRI intensity; atlasmith rescales it into uint16 when packaging.
- The MINC arrays are (inferior->superior, posterior->anterior, left->right): ORIENTATION "ipl".
"""

from __future__ import annotations

import colorsys
import csv
from typing import Any

import numpy as np

from atlasmith.sources import Source

__version__ = 0
ATLAS_NAME = "dsurqe_mouse"
SPECIES = "Mus musculus"
ATLAS_LINK = "https://www.mouseimaging.ca/research/mouse_atlas.html"
CITATION = "Dorr et al. 2008, https://doi.org/10.1016/j.neuroimage.2008.03.037"
ATLAS_PACKAGER = "atlasmith project"
ORIENTATION = "ipl"
ROOT_ID = 999
RES_UM = 200
LICENSE = "DSURQE: distributed publicly by the Mouse Imaging Centre (Toronto) for research."

SOURCES = {
    "labels": Source(
        "mouse_dsurqe_ccf_200um/DSURQE_CCFv3_labels_200um.mnc",
        sha256="d9ede8173d2275cf9c4aae1cffa560129a4b4539f90c070484f2e5f54c49b7b9",
    ),
    "average": Source(
        "mouse_dsurqe_ccf_200um/DSURQE_CCFv3_average_200um.mnc",
        sha256="228524d70ba18a213ff921d617eb192d4603f11c954ccc19e52e348df99422f7",
    ),
    "table": Source(
        "mouse_dsurqe_ccf_200um/DSURQE_40micron_R_mapping_long.csv",
        sha256="ce39e56ed4bc84a5ea8c3211b3abec56626e67596d08a5d646c6ab1bb3cdde40",
    ),
}
_TISSUES = {"GM": "grey matter", "WM": "white matter", "CSF": "cerebrospinal fluid"}
_SIDES = {"left": 1, "right": 2}
_GROUP_BASE = 1000


def _rows(ctx: Any) -> list[dict[str, str]]:
    """The label table without the background row ('Nothing', label 0)."""
    with open(ctx.source("table"), encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["Label"]) != 0]


def _region(row: dict[str, str]) -> str:
    name = row["Structure"].strip()
    side = row["Hemisphere"]
    return name.removeprefix(f"{side} ") if side in _SIDES else name


def _merged_ids(rows: list[dict[str, str]]) -> dict[str, int]:
    """Region name -> id (the lowest label of its copies)."""
    ids: dict[str, int] = {}
    for row in rows:
        region, label = _region(row), int(row["Label"])
        ids[region] = min(ids.get(region, label), label)
    return ids


def _volume(ctx: Any, key: str) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(ctx.source(key)).dataobj)


def load_reference(ctx: Any) -> np.ndarray:
    return _volume(ctx, "average")


def load_annotation(ctx: Any) -> np.ndarray:
    labels = np.rint(_volume(ctx, "labels")).astype(np.int64)
    rows = _rows(ctx)
    merged = _merged_ids(rows)
    lut = np.zeros(labels.max() + 1, dtype=np.uint32)
    for row in rows:
        lut[int(row["Label"])] = merged[_region(row)]
    return lut[labels]


def load_hemispheres(ctx: Any) -> np.ndarray:
    import nibabel as nib

    image = nib.load(ctx.source("labels"))
    labels = np.rint(np.asarray(image.dataobj)).astype(np.int64)
    side = np.zeros(labels.max() + 1, dtype=np.uint8)
    for row in _rows(ctx):
        side[int(row["Label"])] = _SIDES.get(row["Hemisphere"], 0)
    x = image.affine[0, 2] * np.arange(labels.shape[2]) + image.affine[0, 3]  # CCF x, mm
    by_position = np.where(x < 0, 1, np.where(x > 0, 2, 0)).astype(np.uint8)
    hemispheres = side[labels]
    return np.where(hemispheres == 0, by_position[None, None, :], hemispheres)


def _colour(index: int) -> list[int]:
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.5, 0.9)
    return [round(r * 255), round(g * 255), round(b * 255)]


def _node(acronym: str, sid: int, name: str, path: list[int], index: int) -> dict[str, Any]:
    colour = [255, 255, 255] if sid == ROOT_ID else _colour(index)
    return {
        "acronym": acronym,
        "id": sid,
        "name": name,
        "structure_id_path": path,
        "rgb_triplet": colour,
    }


def load_structures(ctx: Any) -> list[dict[str, Any]]:
    rows = _rows(ctx)
    nodes = [_node("root", ROOT_ID, "root", [ROOT_ID], 0)]
    paths: dict[tuple[str, ...], list[int]] = {(): [ROOT_ID]}

    def group(key: tuple[str, ...], acronym: str, name: str) -> list[int]:
        if key not in paths:
            sid = _GROUP_BASE + len(paths) - 1
            paths[key] = [*paths[key[:-1]], sid]
            nodes.append(_node(acronym, sid, name, paths[key], len(nodes)))
        return paths[key]

    seen: set[str] = set()
    merged = _merged_ids(rows)
    for row in sorted(rows, key=lambda r: (r["tissue type"], r["hierarchy"], _region(r))):
        region = _region(row)
        if region in seen:
            continue
        seen.add(region)
        tissue, family = row["tissue type"], row["hierarchy"]
        key: tuple[str, ...] = ()
        if tissue in _TISSUES:
            key = (tissue,)
            group(key, tissue, _TISSUES[tissue])
        if family != "NA":
            key = (*key, family)
            group(key, family, family)
        sid = merged[region]
        nodes.append(_node(region, sid, region, [*paths[key], sid], len(nodes)))
    return nodes
