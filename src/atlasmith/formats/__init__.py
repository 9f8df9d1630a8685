"""Atlas formats: the files that hold an atlas, one implementation per format behind one
interface (:class:`AtlasFiles`).

Today: BrainGlobe's v1.2 folder (:class:`V1Folder`), which brainglobe-atlasapi up to 2.3.1
and the tools pinned to it read. Every reader of an atlas (``Atlas``, previews, inspection,
validation, the mesh engine) goes through :func:`open_atlas_files`, so a new format is one
more implementation here, not a change to each of them.
"""

from __future__ import annotations

from pathlib import Path

from atlasmith._types import PathLike
from atlasmith.errors import MissingFileError
from atlasmith.formats._base import AtlasFiles
from atlasmith.formats._tiff import PAGE_BYTES, map_pages, read_stack, write_stack
from atlasmith.formats._v1 import (
    MESHES,
    METADATA,
    PREVIEW,
    README,
    REQUIRED_STACKS,
    STRUCTURES,
    STRUCTURES_CSV,
    V1Folder,
    readme_text,
    stack_file,
    structures_csv,
    write_folder,
)

__all__ = [
    "MESHES",
    "PAGE_BYTES",
    "METADATA",
    "PREVIEW",
    "README",
    "REQUIRED_STACKS",
    "STRUCTURES",
    "STRUCTURES_CSV",
    "AtlasFiles",
    "V1Folder",
    "map_pages",
    "open_atlas_files",
    "read_stack",
    "readme_text",
    "stack_file",
    "structures_csv",
    "write_folder",
    "write_stack",
]


def open_atlas_files(path: PathLike | AtlasFiles) -> AtlasFiles:
    """The atlas at ``path``, in whichever format it is stored.

    Raises
    ------
    MissingFileError
        When ``path`` is not a folder (a FileNotFoundError). A folder that holds no atlas
        raises it when its first file is read.
    """
    if isinstance(path, AtlasFiles):
        return path
    folder = Path(path)
    if not folder.is_dir():
        raise MissingFileError(
            f"{folder} is not a folder: give the atlas folder (e.g. "
            "~/.brainglobe/allen_mouse_25um_v1.2)."
        )
    # v1 is the fallback: a folder of no format reports the first v1 file it lacks
    return V1Folder(folder)
