"""TIFF stacks, as BrainGlobe's v1 folders hold them: written uncompressed and contiguous so
that they are memory-mapped when read (their pages are mapped and let go by
:mod:`atlasmith._pages`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile  # imported with the readers (not on `import atlasmith`), so opening stays fast

from atlasmith._pages import PAGE_BYTES, map_pages
from atlasmith.errors import AtlasFormatError, MissingFileError

__all__ = ["PAGE_BYTES", "map_pages", "read_stack", "write_stack"]


def read_stack(path: Path) -> npt.NDArray[Any]:
    """Memory-map a TIFF stack (read-only); read it whole if it cannot be mapped.

    Raises
    ------
    MissingFileError
        When the file does not exist (a FileNotFoundError).
    AtlasFormatError
        When it is not a readable TIFF.
    """
    if not path.is_file():
        raise MissingFileError(
            f"{path} does not exist: the atlas folder {path.parent} is incomplete. Re-install "
            "or rebuild the atlas."
        )
    try:
        stack: npt.NDArray[Any] = tifffile.memmap(path, mode="r")
        return stack
    except (ValueError, OSError):
        pass  # compressed, tiled or not contiguous: read it whole instead
    try:
        return np.asarray(tifffile.imread(path))
    except Exception as err:  # tifffile raises many types on corrupt files
        raise AtlasFormatError(
            f"{path} is not a readable TIFF stack ({err}). Re-install or rebuild the atlas."
        ) from err


def write_stack(path: Path, array: npt.NDArray[Any]) -> None:
    """Write a stack as an uncompressed, contiguous TIFF (memory-mappable)."""
    tifffile.imwrite(path, np.ascontiguousarray(array))
