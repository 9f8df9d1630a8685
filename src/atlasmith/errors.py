"""Every exception atlasmith raises.

The tree::

    AtlasmithError
    ├── StructureNotFoundError      (KeyError)      unknown structure id or acronym
    ├── CoordinateError             (IndexError)    a point outside the atlas volume
    │   └── InvalidCoordinatesError (+ ValueError)  coordinates that are not 3 finite numbers
    ├── HierarchyLevelError         (IndexError, ValueError) a hierarchy level a structure lacks
    ├── HierarchyError              (ValueError)    a structure list that breaks the tree rules
    ├── MetadataError               (ValueError)    metadata.json / script constants that are wrong
    ├── OrientationError            (ValueError)    an invalid anatomical orientation string
    ├── AtlasFormatError            (ValueError)    an atlas folder that is not a valid package
    │   └── MissingFileError        (+ FileNotFoundError) a file the atlas folder lacks
    ├── MeshError                   (meshio.ReadError) a missing or unreadable mesh
    ├── ValidationError             (ValueError)    a package that fails validation (with a report)
    ├── ScriptError                 (ValueError)    an atlas script that cannot be used
    ├── SourceError                 (ValueError)    a source file missing or with the wrong hash
    ├── AtlasExistsError            (FileExistsError) output or version that already exists
    ├── ArchiveError                (ValueError)    an unsafe, corrupt or invalid archive
    ├── IntegrityError              (ValueError)    a hash that does not match
    ├── AtlasNotFoundError          (LookupError)   an atlas name or version the repository lacks
    │   └── UnknownAtlasError       (ValueError)    a name that is not an atlas at all
    ├── RepositoryError             (OSError)       a repository that cannot be read or written
    │   └── AuthenticationError                     missing or wrong upload token
    ├── DownloadError               (ConnectionError) a download that failed after retries
    ├── OfflineError                (ConnectionError) a download needed while offline
    └── ConfigError                 (ValueError)    an invalid configuration file or variable

    YankedVersionWarning            (UserWarning)   a yanked version installed or kept

Where BrainGlobe raises a builtin exception, the atlasmith error is an instance of the same
builtin, so ``except KeyError`` keeps working when code moves from BrainGlobe to atlasmith.
Messages say what failed, where, what was expected and what to do next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ArchiveError",
    "AtlasExistsError",
    "AtlasFormatError",
    "AtlasNotFoundError",
    "AtlasmithError",
    "AuthenticationError",
    "ConfigError",
    "CoordinateError",
    "DiskFullError",
    "DownloadError",
    "HierarchyError",
    "HierarchyLevelError",
    "IntegrityError",
    "InvalidCoordinatesError",
    "MeshError",
    "MetadataError",
    "MissingFileError",
    "OfflineError",
    "OrientationError",
    "RepositoryError",
    "ScriptError",
    "SourceError",
    "StructureNotFoundError",
    "UnknownAtlasError",
    "ValidationError",
    "YankedVersionWarning",
]


_ENOSPC = 28  # errno.ENOSPC on every system atlasmith runs on


class AtlasmithError(Exception):
    """Base class of every error raised by atlasmith."""


class StructureNotFoundError(AtlasmithError, KeyError):
    """Raised when a structure id or acronym is not in the atlas."""

    def __str__(self) -> str:
        # KeyError quotes its message with repr(); show the sentence as written.
        return str(self.args[0]) if self.args else ""


class CoordinateError(AtlasmithError, IndexError):
    """Raised when a coordinate falls outside the atlas volume (or is negative)."""


class InvalidCoordinatesError(CoordinateError, ValueError):
    """Raised when coordinates are not three finite numbers per point (BrainGlobe: ValueError)."""


class HierarchyLevelError(AtlasmithError, IndexError, ValueError):
    """Raised when a hierarchy level is invalid or deeper than a structure's path.

    BrainGlobe raises IndexError (``structure_from_coords``) or ValueError
    (``get_structures_at_hierarchy_level``) for this; this error is both.
    """


class HierarchyError(AtlasmithError, ValueError):
    """Raised when a structure list breaks a rule of the structure tree."""


class MetadataError(AtlasmithError, ValueError):
    """Raised when atlas metadata is missing a key or has a wrong value."""


class OrientationError(AtlasmithError, ValueError):
    """Raised when an anatomical orientation string is not valid."""


class AtlasFormatError(AtlasmithError, ValueError):
    """Raised when a folder is not a readable BrainGlobe-format atlas."""


class MissingFileError(AtlasFormatError, FileNotFoundError):
    """Raised when an atlas folder lacks a file it needs (BrainGlobe: FileNotFoundError)."""


_MESH_ERROR_DOC = "Raised when a structure's mesh file is missing or cannot be read."

if TYPE_CHECKING:  # pragma: no cover
    from meshio import ReadError as _MeshioReadError

    class MeshError(AtlasmithError, _MeshioReadError):  # type: ignore[misc]
        """Raised when a structure's mesh file is missing or cannot be read."""


if not TYPE_CHECKING:  # a module __getattr__ would make every name Any to type checkers

    def __getattr__(name: str) -> Any:
        # MeshError subclasses meshio's ReadError; it is created on first use so that
        # importing atlasmith (and atlasmith.errors) does not import meshio (~0.1 s).
        if name != "MeshError":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from meshio import ReadError

        cls = type("MeshError", (AtlasmithError, ReadError), {"__doc__": _MESH_ERROR_DOC})
        cls.__module__ = __name__
        globals()["MeshError"] = cls
        return cls


class ValidationError(AtlasmithError, ValueError):
    """Raised when a package fails validation; ``report`` holds every check's result."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class ScriptError(AtlasmithError, ValueError):
    """Raised when an atlas script is missing a constant or a loader, or a loader fails."""


class SourceError(AtlasmithError, ValueError):
    """Raised when a declared source file is missing or its sha256 does not match."""


class AtlasExistsError(AtlasmithError, FileExistsError):
    """Raised when an output folder, archive or published version already exists."""


class ArchiveError(AtlasmithError, ValueError):
    """Raised when an archive is corrupt, unsafe to extract or not a valid atlas package."""


class IntegrityError(AtlasmithError, ValueError):
    """Raised when a file's sha256 or size differs from the one recorded for it."""


class AtlasNotFoundError(AtlasmithError, LookupError):
    """Raised when an atlas name or version is not available."""


class UnknownAtlasError(AtlasNotFoundError, ValueError):
    """Raised for an atlas name the repository does not know, or that is not a name at all.

    Also a ValueError, as BrainGlobe 2.3.1 raises ``ValueError("... is not a valid atlas
    name!")``, so that ``except ValueError`` keeps working.
    """


class RepositoryError(AtlasmithError, OSError):
    """Raised when a repository cannot be read or written."""


class AuthenticationError(RepositoryError):
    """Raised when an upload has no token or a token that is not accepted."""


class DiskFullError(AtlasmithError, OSError):
    """Raised when a disk has no room for what must be written (``errno`` is ENOSPC)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = _ENOSPC


class DownloadError(AtlasmithError, ConnectionError):
    """Raised when a download fails after its retries."""


class OfflineError(AtlasmithError, ConnectionError):
    """Raised when an action needs the network while offline mode is on."""


class ConfigError(AtlasmithError, ValueError):
    """Raised when the configuration file or an environment variable is invalid."""


class YankedVersionWarning(UserWarning):
    """Warned when a yanked version is installed (it was asked for exactly) or kept by an
    update (no newer version is published); the message carries the publisher's reason.

    As pip does for a yanked release (PEP 592): installable when named exactly, never chosen
    on its own. ``warnings.simplefilter("error", YankedVersionWarning)`` makes it an error.
    """
