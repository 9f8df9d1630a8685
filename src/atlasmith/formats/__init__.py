"""Atlas formats: the files that hold an atlas, one implementation per format behind one
interface (:class:`AtlasFiles`).

BrainGlobe's v1.2 folder (:class:`V1Folder`), which brainglobe-atlasapi up to 2.3.1 and the
tools pinned to it read, and BrainGlobe 3's components (:class:`V3Atlas`, written by
:class:`V3Writer`), which atlasapi 3.x reads. Every reader of an atlas (``Atlas``, previews,
inspection, validation, the mesh engine, conversion) goes through :func:`open_atlas_files`,
so a format is one implementation here, not a change to each of them.
"""

from __future__ import annotations

from pathlib import Path

from atlasmith._types import PathLike
from atlasmith.errors import MissingFileError
from atlasmith.formats._base import (
    AtlasFiles,
    load_mesh_file,
    read_json,
    symmetric_hemispheres,
)
from atlasmith.formats._precomputed import encode_mesh
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
from atlasmith.formats._v3 import V3_ROOT, V3Atlas, V3Layout, find_manifest, is_v3_version
from atlasmith.formats._v3_writer import (
    V3Writer,
    check_v3_free,
    install_v3,
    merge_last_versions,
    place_v3,
    v3_version,
    write_v3,
)
from atlasmith.formats._zarr import ZarrArray

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
    "V3Atlas",
    "V3Layout",
    "V3Writer",
    "V3_ROOT",
    "ZarrArray",
    "check_v3_free",
    "install_v3",
    "encode_mesh",
    "find_manifest",
    "is_v3_version",
    "load_mesh_file",
    "read_json",
    "merge_last_versions",
    "place_v3",
    "symmetric_hemispheres",
    "v3_version",
    "write_v3",
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
    """The atlas at ``path``, in whichever format it is stored (a v1.2 folder, or a
    BrainGlobe 3 manifest or its version folder).

    Raises
    ------
    MissingFileError
        When ``path`` is not a folder (a FileNotFoundError). A folder that holds no atlas
        raises it when its first file is read.
    """
    if isinstance(path, AtlasFiles):
        return path
    folder = Path(path)
    if find_manifest(folder) is not None:
        return V3Atlas(folder)
    if not folder.is_dir():
        raise MissingFileError(
            f"{folder} is not a folder: give the atlas folder (e.g. "
            "~/.brainglobe/allen_mouse_25um_v1.2) or a BrainGlobe 3 atlas's manifest (e.g. "
            ".../brainglobe-atlasapi/atlases/allen_mouse_25um/3_2/manifest.json)."
        )
    # v1 is the fallback: a folder of no format reports the first v1 file it lacks; pinned,
    # so that an update replacing this version does not pull files from under the reader
    return V1Folder(folder, pin=True)
