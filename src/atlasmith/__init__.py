"""atlasmith: package, publish, download and query brain atlases in BrainGlobe's format.

Public names are imported on first use, so ``import atlasmith`` stays fast and does not pull
in numpy-heavy or network modules until they are needed. Type checkers see the real
definitions (the imports under ``TYPE_CHECKING``), so a misspelt name is an error for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from atlasmith._version import __version__ as __version__
from atlasmith.errors import __all__ as _ERRORS  # light: no other import

if TYPE_CHECKING:  # pragma: no cover - what type checkers read; at run time, __getattr__
    from atlasmith.atlas import (
        Atlas as Atlas,
    )
    from atlasmith.brainglobe import (
        BrainGlobeAtlas as BrainGlobeAtlas,
        fetch as fetch,
    )
    from atlasmith.build import (
        BuildResult as BuildResult,
        build_atlas as build_atlas,
    )
    from atlasmith.errors import (
        ArchiveError as ArchiveError,
        AtlasExistsError as AtlasExistsError,
        AtlasFormatError as AtlasFormatError,
        AtlasmithError as AtlasmithError,
        AtlasNotFoundError as AtlasNotFoundError,
        AuthenticationError as AuthenticationError,
        ConfigError as ConfigError,
        CoordinateError as CoordinateError,
        DownloadError as DownloadError,
        HierarchyError as HierarchyError,
        HierarchyLevelError as HierarchyLevelError,
        IntegrityError as IntegrityError,
        InvalidCoordinatesError as InvalidCoordinatesError,
        MeshError as MeshError,
        MetadataError as MetadataError,
        MissingFileError as MissingFileError,
        OfflineError as OfflineError,
        OrientationError as OrientationError,
        RepositoryError as RepositoryError,
        ScriptError as ScriptError,
        SourceError as SourceError,
        StructureNotFoundError as StructureNotFoundError,
        UnknownAtlasError as UnknownAtlasError,
        ValidationError as ValidationError,
        YankedVersionWarning as YankedVersionWarning,
    )
    from atlasmith.hierarchy import (
        Structure as Structure,
        StructureTree as StructureTree,
    )
    from atlasmith.inspection import (
        inspect_atlas as inspect_atlas,
    )
    from atlasmith.meshes import (
        MeshParameters as MeshParameters,
        generate_meshes as generate_meshes,
    )
    from atlasmith.meshes.quality import (
        MeshQuality as MeshQuality,
        quality_report as quality_report,
    )
    from atlasmith.metadata import (
        AtlasMetadata as AtlasMetadata,
    )
    from atlasmith.previews import (
        write_package_preview as write_package_preview,
    )
    from atlasmith.release import (
        release as release,
    )
    from atlasmith.repository import (
        IndexEntry as IndexEntry,
        Repository as Repository,
        RepositoryIndex as RepositoryIndex,
        open_repository as open_repository,
    )
    from atlasmith.script import (
        AtlasScript as AtlasScript,
        load_script as load_script,
    )
    from atlasmith.server import (
        serve_in_thread as serve_in_thread,
    )
    from atlasmith.sources import (
        Source as Source,
    )
    from atlasmith.validation import (
        ValidationReport as ValidationReport,
        validate_archive as validate_archive,
        validate_folder as validate_folder,
    )

# public name -> the module that defines it, by concept along the data's path
_EXPORTS: dict[str, str] = {
    # data model: an atlas and what it is made of
    "Atlas": "atlasmith.atlas",
    "AtlasMetadata": "atlasmith.metadata",
    "Structure": "atlasmith.hierarchy",
    "StructureTree": "atlasmith.hierarchy",
    # generation: script -> build -> meshes -> validation -> inspection
    "AtlasScript": "atlasmith.script",
    "Source": "atlasmith.sources",
    "load_script": "atlasmith.script",
    "BuildResult": "atlasmith.build",
    "build_atlas": "atlasmith.build",
    "MeshParameters": "atlasmith.meshes",
    "generate_meshes": "atlasmith.meshes",
    "MeshQuality": "atlasmith.meshes.quality",
    "quality_report": "atlasmith.meshes.quality",
    "ValidationReport": "atlasmith.validation",
    "validate_archive": "atlasmith.validation",
    "validate_folder": "atlasmith.validation",
    "inspect_atlas": "atlasmith.inspection",
    "write_package_preview": "atlasmith.previews",
    # distribution: repository -> server -> client
    "IndexEntry": "atlasmith.repository",
    "Repository": "atlasmith.repository",
    "RepositoryIndex": "atlasmith.repository",
    "open_repository": "atlasmith.repository",
    "release": "atlasmith.release",
    "serve_in_thread": "atlasmith.server",
    "BrainGlobeAtlas": "atlasmith.brainglobe",
    "fetch": "atlasmith.brainglobe",
}
_EXPORTS.update(dict.fromkeys(_ERRORS, "atlasmith.errors"))  # every error is public

__all__ = sorted([*_EXPORTS, "__version__"])

if not TYPE_CHECKING:  # a module __getattr__ would make every name Any to type checkers

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'atlasmith' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return __all__
