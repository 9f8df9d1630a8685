"""atlasmith: package, publish, download and query brain atlases in BrainGlobe's format.

Public names are imported lazily, so ``import atlasmith`` stays fast and does not pull in
numpy-heavy or network modules until they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
# (each issue adds its names here when its module lands)
_EXPORTS: dict[str, str] = {
    # issue 2: data model and reader
    "Atlas": "atlasmith.atlas",
    "AtlasMetadata": "atlasmith.metadata",
    "Structure": "atlasmith.hierarchy",
    "StructureTree": "atlasmith.hierarchy",
    # issue 3: generation
    "AtlasScript": "atlasmith.script",
    "BuildResult": "atlasmith.build",
    "Source": "atlasmith.sources",
    "ValidationReport": "atlasmith.validation",
    "build_atlas": "atlasmith.build",
    "load_script": "atlasmith.script",
    "validate_archive": "atlasmith.validation",
    "validate_folder": "atlasmith.validation",
    # issue 4: meshes
    "MeshParameters": "atlasmith.meshes",
    "MeshQuality": "atlasmith.mesh_quality",
    "generate_meshes": "atlasmith.meshes",
    "quality_report": "atlasmith.mesh_quality",
    # issue 5: repository, server, releases
    "IndexEntry": "atlasmith.repository",
    "Repository": "atlasmith.repository",
    "RepositoryIndex": "atlasmith.repository",
    "open_repository": "atlasmith.repository",
    "release": "atlasmith.release",
    "serve_in_thread": "atlasmith.server",
    # issue 6: client and cache
    "BrainGlobeAtlas": "atlasmith.cache",
    "fetch": "atlasmith.cache",
    # issue 7: inspection and previews
    "inspect_atlas": "atlasmith.inspection",
    "write_package_preview": "atlasmith.previews",
}
_ERRORS = importlib.import_module("atlasmith.errors").__all__
_EXPORTS.update(dict.fromkeys(_ERRORS, "atlasmith.errors"))

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.errors import *  # noqa: F403


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'atlasmith' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
