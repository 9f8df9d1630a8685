"""TIFF stacks, as BrainGlobe's v1 folders hold them: written uncompressed and contiguous so
that they are memory-mapped when read, and their pages mapped in one call before a pass."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile  # imported with the readers (not on `import atlasmith`), so opening stays fast

from atlasmith.errors import AtlasFormatError, MissingFileError

__all__ = ["map_pages", "read_stack", "write_stack"]

PAGE_BYTES = 4096
_MADV_POPULATE_READ_LINUX = 22


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


def map_pages(stack: npt.NDArray[Any]) -> None:
    """Map every page of a memory-mapped stack before a pass over most of it (once per stack).

    On Linux >= 5.14 one ``madvise(MADV_POPULATE_READ)`` maps them all (measured ~40 ms for
    300 MB, against ~0.2-0.4 s of page faults during the pass); elsewhere one value per page is
    read in order, so the kernel maps pages in batches rather than one fault at a time.
    """
    if not isinstance(stack, np.memmap) or getattr(stack, "_atlasmith_mapped", False):
        return
    mapping = getattr(stack, "_mmap", None)
    try:
        if mapping is None or not sys.platform.startswith("linux"):
            raise OSError("MADV_POPULATE_READ is Linux-only")
        mapping.madvise(getattr(mmap, "MADV_POPULATE_READ", _MADV_POPULATE_READ_LINUX))
    except (OSError, ValueError):  # older kernels: EINVAL
        step = max(1, PAGE_BYTES // stack.itemsize)
        np.asarray(stack.reshape(-1)[::step]).max(initial=0)
    stack._atlasmith_mapped = True  # type: ignore[attr-defined]
