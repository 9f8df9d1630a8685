"""What every atlas format gives its readers: metadata, structures, stacks and meshes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy.typing as npt

from atlasmith.hierarchy import StructureTree
from atlasmith.metadata import AtlasMetadata

__all__ = ["AtlasFiles"]


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

    def misnamed_mesh_files(self) -> list[Path]:
        """Mesh files whose name is not a structure id (none, unless a format names files)."""
        return []

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
