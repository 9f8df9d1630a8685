"""``manifest.json``: the sha256 and size of every file of a package, and how it was built."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atlasmith._fs import atomic_write
from atlasmith._types import PathLike
from atlasmith._version import __version__
from atlasmith.errors import AtlasFormatError
from atlasmith.package._hashes import folder_entries, hash_files

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "read_manifest", "verify_folder", "write_manifest"]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "atlasmith-manifest/1"


def _package_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every file in ``folder`` except the manifest, sorted."""
    names = (p.relative_to(folder).as_posix() for p in folder_entries(folder) if p.is_file())
    return [name for name in names if name != MANIFEST_NAME]


def write_manifest(folder: PathLike, build: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``folder/manifest.json`` (per-file sha256 and size plus build information).

    The file is byte-reproducible: keys sorted, two-space indent, trailing newline, and it is
    written to a temporary file first and renamed into place.

    Parameters
    ----------
    folder : str or Path
        The atlas folder (``NAME_RESum_vM.m``).
    build : Mapping
        JSON-ready build information (script, sources with sha256, parameters).

    Returns
    -------
    dict
        The manifest as written.
    """
    root = Path(folder)
    if not root.is_dir():
        raise AtlasFormatError(f"Cannot write a manifest: {root} is not a folder.")
    manifest = {
        "format": MANIFEST_FORMAT,
        "atlas": root.name,
        "tool": {"name": "atlasmith", "version": __version__},
        "build": dict(build),
        "files": hash_files(root, _package_files(root)),
    }
    text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    atomic_write(root / MANIFEST_NAME, text.encode())
    return manifest


def read_manifest(folder: PathLike) -> dict[str, Any] | None:
    """Return the parsed ``manifest.json`` of ``folder``, or None when it has none.

    Raises
    ------
    AtlasFormatError
        When the manifest exists but is not a JSON object with a ``files`` table.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AtlasFormatError(
            f"{path} is not valid JSON ({err}). Reinstall the atlas to restore it."
        ) from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise AtlasFormatError(
            f"{path} has no 'files' table (format {MANIFEST_FORMAT} expected). "
            "Reinstall the atlas to restore it."
        )
    return manifest


def verify_folder(folder: PathLike) -> list[str]:
    """Re-hash every file of an atlas folder against its ``manifest.json``.

    Parameters
    ----------
    folder : str or Path
        An atlas folder.

    Returns
    -------
    list of str
        One sentence per problem (no manifest, missing, extra, resized or changed files);
        empty when the folder matches its manifest exactly.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    if manifest is None:
        return [
            f"{root} has no {MANIFEST_NAME}: it was not installed by atlasmith (or was "
            "installed by another tool such as BrainGlobe), so its files cannot be checked."
        ]
    expected: dict[str, Any] = manifest["files"]
    present = _package_files(root)
    problems = [f"missing file: {name}" for name in sorted(set(expected) - set(present))]
    problems += [
        f"extra file not in the manifest: {name}" for name in present if name not in expected
    ]
    common = [name for name in present if name in expected]
    actual = hash_files(root, common)
    for name in common:
        want, got = expected[name], actual[name]
        if want.get("size") != got["size"]:
            problems.append(
                f"changed size: {name} (expected {want.get('size')}, got {got['size']})"
            )
        elif want.get("sha256") != got["sha256"]:
            problems.append(
                f"changed content: {name} "
                f"(sha256 expected {want.get('sha256')}, got {got['sha256']})"
            )
    return problems
