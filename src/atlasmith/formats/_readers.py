"""What the chunk readers of every Zarr array share: the threads, the decoding slots, and the
scratch buffers of one read.

A read of many chunks (a whole stack, a structure mask, a lazily fetched atlas's pieces)
runs in one pool of threads for the process, more threads than cores so that fetches
overlap; decoding takes one of a few slots (one per core), since more decoders at once than
cores only hold more decoded chunks in memory. A read that keeps no chunk decodes each
into one of a few buffers of its own (:class:`Scratch`): fresh pages cost more than the
copy out of a warm buffer (a 25 um structure mask, 8 chunks of 16.7 MB, took half the CPU
time so, measured on 2 cores).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Scratch", "decoding", "each_in_readers", "zstd_content_size"]

#: Threads reading the chunks of one read (several per core: a lazily fetched atlas waits on
#: the network, and decoding releases the GIL).
THREADS = 8
_DECODER_COUNT = max(1, min(THREADS, os.cpu_count() or 1))
_DECODERS = threading.BoundedSemaphore(_DECODER_COUNT)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READER_NAME = "atlasmith-chunks"
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def decoding() -> threading.BoundedSemaphore:
    """The decoding slots, to hold while a chunk is decoded (``with decoding(): ...``)."""
    return _DECODERS


def each_in_readers(function: Callable[[Any], object], items: Sequence[Any]) -> None:
    """``function(item)`` for every item: in the reader threads when there are several (zstd,
    sha256 and the network of a lazily fetched atlas release the GIL); in this thread when it
    is a reader itself (a reader waiting on the pool could wait for ever)."""
    if len(items) <= 1 or threading.current_thread().name.startswith(_READER_NAME):
        for item in items:
            function(item)
        return
    for _ in _pool().map(function, items):
        pass


def _pool() -> ThreadPoolExecutor:
    """The readers, made on first use, then reused (a read of a few chunks must not pay for
    starting threads)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(THREADS, thread_name_prefix=_READER_NAME)
        return _POOL


def _forget_threads() -> None:
    """In a forked child: the parent's readers are not there, nor are the decoders or the
    lock holders of the moment it forked."""
    global _POOL, _POOL_LOCK, _DECODERS
    _POOL, _POOL_LOCK = None, threading.Lock()
    _DECODERS = threading.BoundedSemaphore(_DECODER_COUNT)


os.register_at_fork(after_in_child=_forget_threads)


class Scratch:
    """Buffers of ``nbytes`` that the chunks of one read are decoded into, one after another
    (at most one per decoding slot), dropped with the read."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self._free: list[npt.NDArray[np.uint8]] = []
        self._lock = threading.Lock()

    @contextmanager
    def buffer(self) -> Iterator[npt.NDArray[np.uint8]]:
        with self._lock:
            buffer = self._free.pop() if self._free else np.empty(self.nbytes, np.uint8)
        try:
            yield buffer
        finally:
            with self._lock:
                self._free.append(buffer)


def zstd_content_size(data: bytes) -> int | None:
    """The decompressed size a zstd frame's header states (RFC 8878, 3.1.1), or None.

    >>> from numcodecs import Zstd
    >>> zstd_content_size(Zstd().encode(bytes(70000)))
    70000
    """
    if len(data) < 6 or data[:4] != _ZSTD_MAGIC:
        return None
    descriptor = data[4]
    single_segment = descriptor >> 5 & 1
    start = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    width = (single_segment, 2, 4, 8)[descriptor >> 6]
    if width == 0 or len(data) < start + width:
        return None
    size = int.from_bytes(data[start : start + width], "little")
    return size + 256 if width == 2 else size
