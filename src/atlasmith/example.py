"""The bundled real example atlas (Allen mouse CCFv3 at 100 um, data/allen_mouse_100um)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from atlasmith.errors import AtlasFormatError

EXAMPLE_NAME = "allen_mouse_100um_v1.2"


def bundled_data_dir() -> Path:
    """Folder of the bundled example data (present in a source checkout)."""
    folder = Path(__file__).resolve().parents[2] / "data" / "allen_mouse_100um"
    if not (folder / "reference.tiff").is_file():
        raise AtlasFormatError(
            f"The bundled example data is not at {folder}: it ships with the source checkout. "
            "Clone the atlasmith repository and install it with `pip install -e .`."
        )
    return folder


def write_example_atlas(parent: Path) -> Path:
    """Write the bundled example as a BrainGlobe v1.2 atlas folder under ``parent``.

    The reference, structures, metadata and three meshes are BrainGlobe's own files; the
    annotation is Allen's official 25 um annotation subsampled to 100 um, written as an
    uncompressed uint32 TIFF. Returns the folder ``parent/allen_mouse_100um_v1.2``.
    """
    import nrrd
    import numpy as np
    import tifffile

    source = bundled_data_dir()
    folder = Path(parent) / EXAMPLE_NAME
    folder.mkdir(parents=True)
    copied = ("reference.tiff", "structures.json", "structures.csv", "metadata.json", "README.txt")
    for name in copied:
        shutil.copyfile(source / name, folder / name)
    shutil.copytree(source / "meshes", folder / "meshes")
    annotation, _ = nrrd.read(str(source / "annotation_100um.nrrd"))
    tifffile.imwrite(folder / "annotation.tiff", np.ascontiguousarray(annotation, dtype=np.uint32))
    shape = json.loads((source / "metadata.json").read_text())["shape"]
    if list(annotation.shape) != shape:
        raise AtlasFormatError(f"bundled annotation has shape {annotation.shape}, expected {shape}")
    return folder
