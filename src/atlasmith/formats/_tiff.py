"""TIFF stacks, as BrainGlobe's v1 folders hold them: written uncompressed and contiguous so
that they are memory-mapped when read (their pages are mapped and let go by
:mod:`atlasmith._pages`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile  # imported with the readers (not on `import atlasmith`), so opening stays fast

from atlasmith._pages import PAGE_BYTES, map_pages
from atlasmith.errors import AtlasFormatError, MissingFileError
from atlasmith.statistics import ROW_BLOCK_VOXELS, row_blocks

__all__ = ["PAGE_BYTES", "map_pages", "read_stack", "write_stack"]

_WRITE_BLOCK_VOXELS = ROW_BLOCK_VOXELS  # a memory-mapped stack's rows written at a time
#: Larger stacks are written as BigTIFF (tifffile's own rule for an array it is given whole:
#: a classic TIFF addresses 4 GiB, less room for its tags)
_BIGTIFF_BYTES = 2**32 - 2**25


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
    """Write a stack as an uncompressed, contiguous TIFF (memory-mappable).

    A memory-mapped stack is written a block of rows at a time, each block's pages let go
    once written (the same bytes as one write of the whole array, which mapped all of it:
    the 4.8 GB annotation of a 10 um build, the peak of its process tree once the meshes'
    slabs let theirs go)."""
    if isinstance(array, np.memmap) and array.ndim == 3 and array.dtype.isnative:
        # given planes, tifffile cannot tell the size: its rule for an array, made here
        big = array.nbytes > _BIGTIFF_BYTES
        byteorder = array.dtype.byteorder
        tifffile.imwrite(
            path,
            _planes(array),
            shape=array.shape,
            dtype=array.dtype,
            bigtiff=big,
            byteorder=byteorder,
        )
    else:
        tifffile.imwrite(path, np.ascontiguousarray(array))


def _planes(stack: npt.NDArray[Any]) -> Iterator[npt.NDArray[Any]]:
    """The planes of a memory-mapped stack along axis 0, a block of rows at a time
    (``statistics.row_blocks``: each block let go once the next is asked for)."""
    for _, block in row_blocks(stack, _WRITE_BLOCK_VOXELS):
        yield from block
