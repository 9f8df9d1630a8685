"""Run inside BrainGlobe 3.0.2's own virtual environment (never imports atlasmith): package a
v1.2 atlas folder's data with BrainGlobe 3's own ``wrapup_atlas_from_data``.

Usage: python package.py V1_FOLDER WORKING_DIR

Only its network check of ``atlas_link`` (``requests.get``) is replaced, as these machines are
offline; everything else is BrainGlobe's code as released.
"""

import json
import sys
from pathlib import Path

import requests
import tifffile


def _offline_get(*args: object, **kwargs: object) -> None:
    return None


requests.get = _offline_get  # the packager's link check, done after all the work

from brainglobe_atlasapi.atlas_generation.wrapup import wrapup_atlas_from_data  # noqa: E402


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    meta = json.loads((source / "metadata.json").read_text())
    structures = json.loads((source / "structures.json").read_text())
    root = next(s["id"] for s in structures if len(s["structure_id_path"]) == 1)
    hemispheres = source / "hemispheres.tiff"
    wrapup_atlas_from_data(
        atlas_name=meta["name"],
        atlas_minor_version=meta["version"].split(".")[1],
        citation=meta["citation"],
        atlas_link=meta["atlas_link"],
        species=meta["species"],
        resolution=tuple(_number(r) for r in meta["resolution"]),
        orientation="asr",
        root_id=root,
        reference_stack=tifffile.imread(source / "reference.tiff"),
        annotation_stack=tifffile.imread(source / "annotation.tiff"),
        structures_list=structures,
        meshes_dict={int(p.stem): p for p in (source / "meshes").glob("*.obj")},
        working_dir=out,
        atlas_packager=meta.get("atlas_packager"),
        hemispheres_stack=tifffile.imread(hemispheres) if hemispheres.exists() else None,
    )


if __name__ == "__main__":
    main()
