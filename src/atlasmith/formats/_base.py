"""What every atlas format gives its readers: metadata, structures, stacks and meshes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._types import Float64Array, IntArray
from atlasmith.hierarchy import StructureTree
from atlasmith.metadata import AtlasMetadata

__all__ = ["AtlasFiles", "load_mesh_file", "read_json", "symmetric_hemispheres"]

#: Hemisphere values (BrainGlobe's): left 1, right 2.
LEFT, RIGHT = 1, 2
_FRONTAL_AXIS = 2  # right -> left in "asr"


def read_json(path: Path, advice: str) -> Any:
    """A JSON file of an atlas: MissingFileError ("<path> does not exist: <advice>") when it
    is absent, AtlasFormatError when it is not JSON."""
    import json

    from atlasmith.errors import AtlasFormatError, MissingFileError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise MissingFileError(f"{path} does not exist: {advice}") from err
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AtlasFormatError(
            f"{path} is not valid JSON ({err}): the file is corrupt. Re-install or rebuild the "
            "atlas."
        ) from err


def load_mesh_file(path: Path, label: object, shown: Path | None = None) -> Any:
    """A mesh file as a ``meshio.Mesh``; MeshError naming ``label`` and the file (``shown``
    when given: the path users know) when it is missing or unreadable."""
    import meshio

    from atlasmith.errors import MeshError

    try:
        return meshio.read(path)
    except (TypeError, meshio.ReadError) as err:
        raise MeshError(
            f"No valid mesh for region: {label} (file {shown or path} is missing or "
            "unreadable; the atlas may have no mesh for this structure)."
        ) from err


def symmetric_hemispheres(shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    """BrainGlobe's hemispheres of a symmetric atlas, as a read-only broadcast view (no
    volume allocated): along the right-left axis, indices ``>= round(n / 2)`` (Python
    rounding) are left (1), the others right (2)."""
    n = shape[_FRONTAL_AXIS]
    line = np.full(n, RIGHT, dtype=np.uint8)
    line[round(n / 2) :] = LEFT
    view_shape = [1, 1, 1]
    view_shape[_FRONTAL_AXIS] = n
    return np.broadcast_to(line.reshape(view_shape), shape)


class AtlasFiles(ABC):
    """The files of one atlas, read lazily: the one interface of every atlas format.

    ``Atlas``, the previews, the inspection, validation and the mesh engine read atlases
    through it, whatever the format on disk. Subclasses read the raw metadata and structure
    list, open stacks by name and find mesh files; parsing (:class:`AtlasMetadata`,
    :class:`StructureTree`) happens here, once, on first use, so a reader that needs only
    the metadata never reads a stack.
    """

    #: Where the atlas is (a folder).
    path: Path
    #: The format's name, e.g. ``"brainglobe-v1"``.
    format_name: str

    @property
    @abstractmethod
    def metadata_dict(self) -> dict[str, Any]:
        """The metadata as stored (BrainGlobe's keys); MissingFileError, AtlasFormatError."""

    @property
    @abstractmethod
    def structures_list(self) -> list[dict[str, Any]]:
        """The structures as stored (BrainGlobe's dicts), in file order."""

    @abstractmethod
    def stack(self, name: str) -> npt.NDArray[Any]:
        """A stack by name: ``reference``, ``annotation``, ``hemispheres`` or an additional
        reference; read-only, memory-mapped where the format allows."""

    @abstractmethod
    def mesh_path(self, structure_id: int) -> Path:
        """Where the mesh of a structure is (whether or not it exists)."""

    @abstractmethod
    def mesh_files(self) -> dict[int, Path]:
        """Every mesh file there is, by structure id."""

    def read_mesh(self, structure_id: int) -> tuple[Float64Array, IntArray]:
        """A structure's mesh: points in micrometres on the "asr" axes, and triangles
        (MeshError, or IntegrityError for a damaged v3 fragment)."""
        from atlasmith.meshes.obj import read_obj

        return read_obj(self.mesh_path(structure_id))

    def load_mesh(self, structure_id: int) -> Any:
        """A structure's mesh as a ``meshio.Mesh`` (micrometres, "asr"); MeshError when it
        is missing or unreadable."""
        return load_mesh_file(self.mesh_path(structure_id), structure_id)

    def misnamed_mesh_files(self) -> list[Path]:
        """Mesh files whose name is not a structure id (none, unless a format names files)."""
        return []

    def close(self) -> None:  # noqa: B027 - a format that holds nothing has nothing to do
        """Let go of what the reader holds (a pinned folder); nothing by default."""

    @cached_property
    def metadata(self) -> AtlasMetadata:
        """The parsed, validated metadata (MetadataError when invalid)."""
        return AtlasMetadata.from_dict(self.metadata_dict)

    @cached_property
    def tree(self) -> StructureTree:
        """The validated structure hierarchy (HierarchyError when the list breaks a rule)."""
        return StructureTree.from_list(self.structures_list)

    @cached_property
    def reference(self) -> npt.NDArray[Any]:
        """The reference stack."""
        return self.stack("reference")

    @cached_property
    def annotation(self) -> npt.NDArray[Any]:
        """The label stack (0 = no structure)."""
        return self.stack("annotation")

    @property
    def resolution(self) -> tuple[float, float, float]:
        """Voxel size in micrometres, "asr" order."""
        return self.metadata.resolution

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
