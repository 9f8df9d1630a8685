"""Names and versions: of atlases, their folders and archives; parsed, formatted and checked.

BrainGlobe's naming, which every other part of atlasmith follows:

- a *base name* is ``author_species`` (``allen_mouse``): the ``name`` in ``metadata.json`` and
  the ``ATLAS_NAME`` of an atlas script;
- an *atlas name* adds the resolution on axis 0 (``allen_mouse_25um``): what users ask for;
- a *folder name* adds the data version (``allen_mouse_25um_v1.2``), and the *archive name*
  is the folder name plus ``.tar.gz``;
- a *version* is ``"<major>.<minor>"`` and compares numerically (1.10 > 1.9).
"""

from __future__ import annotations

import math
import re

from atlasmith.errors import ArchiveError, MetadataError, ScriptError, UnknownAtlasError

__all__ = [
    "ARCHIVE_SUFFIX",
    "archive_name",
    "atlas_name",
    "atlas_name_from_repr",
    "check_atlas_name",
    "check_base_name",
    "folder_name",
    "format_resolution",
    "is_atlas_name",
    "is_version",
    "parse_atlas_name",
    "parse_version",
    "split_archive_name",
    "split_folder_name",
]

ARCHIVE_SUFFIX = ".tar.gz"
_VERSION = r"[0-9]+\.[0-9]+"
_VERSION_RE = re.compile(rf"^{_VERSION}$")
_RESOLUTION = r"[0-9]+(?:\.[0-9]+)?"
_ATLAS = rf"[a-z0-9][a-z0-9_.-]*_{_RESOLUTION}um"
_ATLAS_RE = re.compile(rf"^{_ATLAS}$")
_FOLDER_RE = re.compile(rf"^(?P<atlas>{_ATLAS})_v(?P<version>{_VERSION})$")
_ARCHIVE_RE = re.compile(rf"^(?P<atlas>{_ATLAS})_v(?P<version>{_VERSION})\.tar\.gz$")
_ANY_NAME_RE = re.compile(rf"^(?P<name>.+)_(?P<res>{_RESOLUTION})um(?:_v(?P<ver>{_VERSION}))?$")
_BASE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*(_[a-z0-9.-]+)+$")
_RES_SUFFIX_RE = re.compile(r"_\d+(\.\d+)?(nm|um|mm)$")


# --- versions ----------------------------------------------------------------------------


def is_version(text: object) -> bool:
    """Whether ``text`` is a data version ``"<major>.<minor>"``.

    >>> is_version("1.2"), is_version("1.2.3"), is_version(1.2)
    (True, False, False)
    """
    return isinstance(text, str) and _VERSION_RE.match(text) is not None


def parse_version(version: str) -> tuple[int, int]:
    """Turn ``"1.10"`` into ``(1, 10)`` so versions compare numerically.

    >>> parse_version("1.10") > parse_version("1.9")
    True

    Raises
    ------
    MetadataError
        When ``version`` is not ``"<major>.<minor>"``.
    """
    if not is_version(version):
        raise MetadataError(
            f"{version!r} is not an atlas data version: expected '<major>.<minor>', e.g. '1.2'."
        )
    major, minor = version.split(".")
    return int(major), int(minor)


# --- atlas names -----------------------------------------------------------------------------


def format_resolution(um: float) -> str:
    """Format a resolution in micrometres the way atlas names show it.

    >>> format_resolution(100.0), format_resolution(31.5), format_resolution(2.542)
    ('100', '31.5', '2.542')
    """
    value = float(um)
    if not math.isfinite(value) or value <= 0:
        raise MetadataError(
            f"resolution must be a positive finite number of micrometres, got {um!r}."
        )
    return str(int(value)) if value.is_integer() else repr(value)


def atlas_name(base: str, resolution: float | str) -> str:
    """``("allen_mouse", 25.0)`` -> ``"allen_mouse_25um"``."""
    res = resolution if isinstance(resolution, str) else format_resolution(resolution)
    return f"{base}_{res}um"


def folder_name(atlas: str, version: str) -> str:
    """``("allen_mouse_25um", "1.2")`` -> ``"allen_mouse_25um_v1.2"``."""
    return f"{atlas}_v{version}"


def archive_name(atlas: str, version: str) -> str:
    """``("allen_mouse_25um", "1.2")`` -> ``"allen_mouse_25um_v1.2.tar.gz"``."""
    return folder_name(atlas, version) + ARCHIVE_SUFFIX


def atlas_name_from_repr(
    name: str,
    resolution: float | str,
    major: int | str | None = None,
    minor: int | str | None = None,
) -> str:
    """BrainGlobe's function: an atlas name, or a folder name when a version is given.

    >>> atlas_name_from_repr("allen_mouse", 25.0, 1, 2)
    'allen_mouse_25um_v1.2'
    """
    atlas = atlas_name(name, resolution)
    if major is None and minor is None:
        return atlas
    return folder_name(atlas, f"{major}.{minor}")


def parse_atlas_name(text: str) -> tuple[str, float, str | None]:
    """Split an atlas or folder name into (base name, resolution in um, version or None).

    >>> parse_atlas_name("allen_mouse_100um_v1.2")
    ('allen_mouse', 100.0, '1.2')
    >>> parse_atlas_name("kim_dev_mouse_e11-5_mri-adc_31.5um")
    ('kim_dev_mouse_e11-5_mri-adc', 31.5, None)
    """
    match = _ANY_NAME_RE.match(text)
    if match is None:
        raise MetadataError(
            f"{text!r} is not an atlas name: expected '<author>_<species>_<res>um' "
            "optionally followed by '_v<major>.<minor>', e.g. 'allen_mouse_25um' or "
            "'allen_mouse_25um_v1.2'."
        )
    return match["name"], float(match["res"]), match["ver"]


def is_atlas_name(text: object) -> bool:
    """Whether ``text`` is an atlas name with its resolution (``allen_mouse_25um``)."""
    return isinstance(text, str) and _ATLAS_RE.match(text) is not None


def check_atlas_name(name: object) -> str:
    """Return ``name`` when it is an atlas name with its resolution; UnknownAtlasError else.

    Atlas names become file names in caches and repositories, so only lowercase letters,
    digits and ``_ . -`` are allowed (never ``/`` or ``..``).

    >>> check_atlas_name("kim_dev_mouse_e11-5_mri-adc_31.5um")
    'kim_dev_mouse_e11-5_mri-adc_31.5um'
    """
    if not is_atlas_name(name) or ".." in str(name):
        raise UnknownAtlasError(
            f"{name!r} is not a valid atlas name: expected '<author>_<species>_<res>um' in "
            "lowercase letters, digits and _ . -, like 'allen_mouse_25um'. Run "
            "`atlasmith list` to see the atlases."
        )
    return str(name)


def check_base_name(name: object, where: str = "ATLAS_NAME") -> str:
    """Return ``name`` when it is a valid ``author_species`` base name, else raise ScriptError.

    >>> check_base_name("allen_mouse")
    'allen_mouse'
    """
    if not isinstance(name, str) or not _BASE_RE.match(name) or _RES_SUFFIX_RE.search(name):
        raise ScriptError(
            f"{where} must be 'author_species' (at least two '_'-separated parts of lowercase "
            f"letters, digits, '.' or '-', without a resolution suffix), e.g. 'allen_mouse'; "
            f"got {name!r}."
        )
    return name


# --- folders and archives --------------------------------------------------------------------


def split_folder_name(folder: str) -> tuple[str, str] | None:
    """``"allen_mouse_25um_v1.2"`` -> ``("allen_mouse_25um", "1.2")``; None if not an atlas.

    >>> split_folder_name("allen_mouse_25um_v1.2"), split_folder_name("notes")
    (('allen_mouse_25um', '1.2'), None)
    """
    match = _FOLDER_RE.match(folder)
    return None if match is None else (match["atlas"], match["version"])


def split_archive_name(file_name: str) -> tuple[str, str]:
    """``"allen_mouse_100um_v1.2.tar.gz"`` -> ``("allen_mouse_100um", "1.2")``.

    >>> split_archive_name("allen_mouse_100um_v1.2.tar.gz")
    ('allen_mouse_100um', '1.2')

    Raises
    ------
    ArchiveError
        When ``file_name`` is not an atlas archive name.
    """
    match = _ARCHIVE_RE.match(file_name)
    if match is None:
        raise ArchiveError(
            f"{file_name!r} is not an atlas archive name: expected "
            "'<author>_<species>_<res>um_v<major>.<minor>.tar.gz', e.g. "
            "'allen_mouse_25um_v1.2.tar.gz' (as `atlasmith build` writes it)."
        )
    return match["atlas"], match["version"]
