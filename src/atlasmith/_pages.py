"""Pages of memory-mapped stacks: mapped in one call before they are read, let go after.

Reading a memory-mapped stack maps each page into the process on first touch (a page fault
each, or each few pages) and leaves it mapped, so a pass over a stack costs a fault per page
and leaves the process's resident memory as large as the file (4.8 GB for a 10 um Allen
annotation), although the data are in the page cache anyway. ``MADV_POPULATE_READ`` maps a
range in one call; ``MADV_DONTNEED`` unmaps it once read (the page cache keeps the data, and a
later read maps it again), so a pass a block of rows at a time holds one block.
"""

from __future__ import annotations

import contextlib
import mmap
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "PAGE_BYTES",
    "ReleasingReads",
    "gather",
    "map_pages",
    "map_rows",
    "prefetch_rows",
    "release_rows",
    "releasing_reads",
]

PAGE_BYTES = 4096
_MADV_POPULATE_READ_LINUX = 22
# Mappings whose pages may be dropped: read-only or shared (a dropped dirty page of a shared
# mapping stays dirty in the page cache); never copy-on-write ("c"), whose changes it loses.
_RELEASABLE_MODES = ("r", "r+", "w+")
_GATHER_BLOCK_BYTES = 1 << 26  # a block of rows read by gather (64 MiB)
# Blocks read ahead (asynchronously) by gather: measured on a 2-core VM, 1M points in a 4.8 GB
# annotation out of the page cache, 4.0 s with 4 ahead (the disk's sequential speed), 9.8 s
# with none; it holds at most 5 blocks mapped (320 MB).
_AHEAD = 4
# Fault-around maps 16 pages (64 KiB) per fault: with one point per 16 pages or more, a block
# is read nearly whole anyway, so it is read ahead whole.
_DENSE_PAGES = 16


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


def map_rows(stack: npt.NDArray[Any], start: int, stop: int) -> None:
    """Map the pages of rows ``start:stop`` (along axis 0) of a memory-mapped stack in one
    call (Linux >= 5.14; elsewhere, and for other arrays, nothing: reading faults them in)."""
    found = _row_bytes(stack, start, stop)
    if found is None or not sys.platform.startswith("linux"):
        return
    advice = getattr(mmap, "MADV_POPULATE_READ", _MADV_POPULATE_READ_LINUX)
    with contextlib.suppress(OSError, ValueError):  # older kernels: EINVAL
        found[0].madvise(advice, found[1], found[2])


def release_rows(stack: npt.NDArray[Any], start: int, stop: int) -> None:
    """Unmap the pages of rows ``start:stop`` of a memory-mapped stack from this process (its
    contents stay valid: a later read maps them again). Nothing for other arrays."""
    found = _row_bytes(stack, start, stop)
    if found is None or getattr(stack, "mode", None) not in _RELEASABLE_MODES:
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no madvise (Windows)
        found[0].madvise(mmap.MADV_DONTNEED, found[1], found[2])
    if hasattr(stack, "_atlasmith_mapped"):
        stack._atlasmith_mapped = False


def prefetch_rows(stack: npt.NDArray[Any], start: int, stop: int) -> None:
    """Ask the kernel to read rows ``start:stop`` of a memory-mapped stack into the page cache
    in the background (``MADV_WILLNEED``), so that a pass finds them there. Nothing for other
    arrays."""
    found = _row_bytes(stack, start, stop)
    if found is None:
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):
        found[0].madvise(mmap.MADV_WILLNEED, found[1], found[2])


def gather(stack: npt.NDArray[Any], flat: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    """``stack.reshape(-1).take(flat)`` for a memory-mapped stack, a block of rows at a time.

    The points are grouped by block (a stable radix sort of their block numbers); each block
    is taken, then its pages are let go, with the next blocks that hold many points read
    ahead. So 1M random points in a 4.8 GB annotation keep one block mapped (measured HWM
    145 MB, against 4.7 GB for one ``take``), and out of the page cache they read it at the
    disk's sequential speed (4.0 s, against 5.6-6.7 s of faults in random order).
    """
    flat_stack = stack.reshape(-1)
    rows = max(1, _GATHER_BLOCK_BYTES // max(1, stack[0].nbytes))
    block_voxels = rows * stack[0].size
    n_blocks = -(-len(stack) // rows)
    blocks = (flat // block_voxels).astype(np.uint16 if n_blocks <= 1 << 16 else np.uint32)
    order = np.argsort(blocks, kind="stable")
    counts = np.bincount(blocks, minlength=n_blocks)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    dense = counts * _DENSE_PAGES * PAGE_BYTES >= block_voxels * stack.itemsize
    out = np.empty(flat.size, dtype=stack.dtype)
    for first in np.flatnonzero(dense[:_AHEAD]).tolist():
        prefetch_rows(stack, first * rows, (first + 1) * rows)
    for block in range(n_blocks):
        ahead = block + _AHEAD
        if ahead < n_blocks and dense[ahead]:
            prefetch_rows(stack, ahead * rows, (ahead + 1) * rows)
        if not counts[block]:
            continue
        picked = order[bounds[block] : bounds[block + 1]]
        out[picked] = flat_stack.take(flat[picked])
        release_rows(stack, block * rows, (block + 1) * rows)
    return out


def _row_bytes(stack: npt.NDArray[Any], start: int, stop: int) -> tuple[mmap.mmap, int, int] | None:
    """The mapping behind a C-contiguous memory-mapped stack (or a view of one) and the
    page-aligned byte range of its rows ``start:stop`` in it; None for other arrays."""
    mapping = getattr(stack, "_mmap", None)
    if not isinstance(mapping, mmap.mmap) or not stack.flags.c_contiguous or stack.ndim == 0:
        return None
    stop = min(stop, len(stack))
    if stop <= start:
        return None
    try:  # the mapping's address (numpy maps from a page boundary below the file offset)
        origin = np.frombuffer(mapping, dtype=np.uint8, count=1).ctypes.data
    except ValueError:  # closed
        return None
    row = stack.strides[0] if stack.ndim > 1 else stack.itemsize
    first = stack.ctypes.data - origin + start * row
    last = min(stack.ctypes.data - origin + stop * row, len(mapping))
    first -= first % mmap.PAGESIZE
    return mapping, first, last - first


class ReleasingReads:
    """A memory-mapped stack for readers that slice it by rows (the BrainGlobe 3 writer):
    each read returns a copy and lets go of its rows' pages once it reaches the end of them
    (a read of whole rows, or the last of a row range's chunks in C order). A pass over it
    then holds what it is reading, not the whole file (7.2 GB for the 10 um Allen inputs).
    Rows another thread still reads are mapped again by that read: only time is lost."""

    def __init__(self, stack: npt.NDArray[Any]) -> None:
        self.stack = stack
        self.shape: tuple[int, ...] = stack.shape
        self.dtype = stack.dtype
        self.ndim = stack.ndim

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        out = np.array(self.stack[key])  # a copy: the pages read may be let go now
        rows = _rows_ended(key, self.shape)
        if rows is not None:
            release_rows(self.stack, *rows)
        return out


def releasing_reads(stack: Any) -> Any:
    """``stack`` as :class:`ReleasingReads` when it is a memory-mapped stack that can let go
    of its pages; as it is otherwise (an array in memory has no pages to let go)."""
    if _row_bytes(stack, 0, 1) is None or getattr(stack, "mode", None) not in _RELEASABLE_MODES:
        return stack
    return ReleasingReads(stack)


def _rows_ended(key: Any, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The rows ``start, stop`` of a read whose slices reach the end of every other axis;
    None for any other key (an integer row, a step, a read that stops short)."""
    parts = key if isinstance(key, tuple) else (key,)
    if not parts or not all(isinstance(p, slice) and p.step in (None, 1) for p in parts):
        return None
    for part, length in zip(parts[1:], shape[1:], strict=False):
        if part.indices(length)[1] < length:
            return None
    start, stop, _ = parts[0].indices(shape[0])
    return (start, stop) if stop > start else None
