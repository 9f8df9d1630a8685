"""Hashing files, and listing the files of a package folder (links and special files refused)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from atlasmith._types import PathLike
from atlasmith.errors import ArchiveError

__all__ = ["CHUNK", "folder_entries", "hash_files", "sha256_file"]

CHUNK = 1024 * 1024


def sha256_file(path: PathLike) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or Path
        The file to hash.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_entries(folder: Path) -> list[Path]:
    """Every file and folder below ``folder``, sorted by relative POSIX path.

    Raises
    ------
    ArchiveError
        For a symbolic link or a special file: a package holds regular files and folders only.
    """
    found = []
    for path in folder.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ArchiveError(
                f"{path} is a link or a special file: an atlas package may hold only regular "
                "files and folders. Replace it with a regular file copy."
            )
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def hash_files(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """sha256 and size of each named file; hashing runs in threads (hashlib frees the GIL)."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(lambda n: sha256_file(folder / n), names))
    return {
        name: {"sha256": digest, "size": (folder / name).stat().st_size}
        for name, digest in zip(names, digests, strict=True)
    }
