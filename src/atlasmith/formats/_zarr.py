"""Zarr v3 arrays as BrainGlobe 3 stores its stacks (OME-Zarr 0.5): written a chunk at a time,
read a chunk at a time, every chunk checked.

Written: ``bytes`` (little endian) then ``zstd`` with its frame checksum on, so that
BrainGlobe's reader (zarr-python) rejects a damaged chunk too; JSON in a fixed layout and
chunks that are all fill value left out, so the same array gives the same files every time.

Read: :class:`ZarrArray` decodes ``bytes`` (+ ``zstd`` or ``gzip``) chunks itself, hands each
chunk file's bytes to a ``check`` function first (the v3 reader passes one that compares the
sha256 listed in the atlas manifest, and knows which chunks must exist), and keeps decoded
chunks in a bounded cache. Indexing reads only the chunks a selection touches.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith.errors import AtlasFormatError
from atlasmith.formats import _readers
from atlasmith.formats._base import read_json
from atlasmith.formats._readers import Scratch, each_in_readers, zstd_content_size

__all__ = [
    "ZarrArray",
    "Sink",
    "ZarrWriter",
    "chunk_key",
    "write_group",
]

ZSTD_LEVEL = 3
#: Decoded chunks kept per array (bytes); a 25 um annotation is 308 MB decoded.
CACHE_BYTES = 512 * 1024**2
#: Gathers of at least this many points per chunk decode the whole array once (when it fits
#: CACHE_BYTES): random points that many touch nearly every chunk anyway.
_DENSE_POINTS_PER_CHUNK = 4
#: ``check(relative path, data or None when missing)`` -> data to decode or None for a chunk
#: that is absent on purpose (all fill value); raises on a missing or damaged chunk.
ChunkCheck = Callable[[str, bytes | None], bytes | None]
#: ``put(relative path, data)``: where a writer's files go.
Sink = Callable[[str, bytes], None]


def chunk_key(index: Sequence[int]) -> str:
    """``(1, 0, 2)`` -> ``"c/1/0/2"`` (the default key encoding, ``/`` separated)."""
    return "c/" + "/".join(str(int(i)) for i in index)


def _dump(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def write_group(put: Sink, prefix: str, attributes: Mapping[str, Any]) -> None:
    """A Zarr v3 group: ``prefix/zarr.json`` with ``attributes``."""
    document = {"attributes": dict(attributes), "zarr_format": 3, "node_type": "group"}
    put(f"{prefix}/zarr.json", _dump(document))


def _codecs(dtype: np.dtype[Any], level: int) -> list[dict[str, Any]]:
    first: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        first["configuration"] = {"endian": "little"}
    return [first, {"name": "zstd", "configuration": {"level": level, "checksum": True}}]


class ZarrWriter:
    """Writes one Zarr v3 array chunk by chunk (chunks of fill value are left out).

    Parameters
    ----------
    put : callable
        ``put(relative path, bytes)``: where files go (the v3 writer's tree, which records
        each file's sha256 as it writes it).
    prefix : str
        The array's folder, relative (``.../s0``).
    shape, chunks : sequence of int
        Array and chunk shapes.
    dtype : numpy dtype
    dimension_names : sequence of str, optional
    """

    def __init__(
        self,
        put: Sink,
        prefix: str,
        shape: Sequence[int],
        chunks: Sequence[int],
        dtype: npt.DTypeLike,
        dimension_names: Sequence[str] | None = None,
        level: int = ZSTD_LEVEL,
    ) -> None:
        from numcodecs import Zstd

        self.put = put
        self.prefix = prefix
        self.shape = tuple(int(s) for s in shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self._codec = Zstd(level=level, checksum=True)
        metadata: dict[str, Any] = {
            "shape": list(self.shape),
            "data_type": self.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(self.chunks)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": _codecs(self.dtype, level),
            "attributes": {},
        }
        if dimension_names is not None:
            metadata["dimension_names"] = list(dimension_names)
        metadata.update(zarr_format=3, node_type="array", storage_transformers=[])
        put(f"{prefix}/zarr.json", _dump(metadata))

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks along each axis."""
        return tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunks, strict=True))

    def region(self, index: Sequence[int]) -> tuple[slice, ...]:
        """The part of the array a chunk covers."""
        return tuple(
            slice(i * c, min((i + 1) * c, s))
            for i, c, s in zip(index, self.chunks, self.shape, strict=True)
        )

    def write_chunk(
        self, index: Sequence[int], data: npt.NDArray[Any], keep_empty: bool = False
    ) -> bool:
        """Write the chunk at grid ``index`` from ``data`` (its region of the array; padded
        with the fill value at the array's edges). An all-fill chunk is left out (False)
        unless ``keep_empty``."""
        if not keep_empty and not data.any():
            return False
        if data.shape == self.chunks and data.dtype == self.dtype:
            block = np.ascontiguousarray(data)
        else:
            block = np.zeros(self.chunks, dtype=self.dtype)
            block[tuple(slice(0, n) for n in data.shape)] = data
        self.put(f"{self.prefix}/{chunk_key(index)}", self._codec.encode(block))
        return True

    def write_all(self, array: npt.NDArray[Any]) -> None:
        """Write every chunk of a whole array (a memory-mapped one is read chunk by chunk)."""
        for index in product(*(range(n) for n in self.grid)):
            self.write_chunk(index, np.asarray(array[self.region(index)]))


class ZarrArray:
    """A Zarr v3 array on disk, read lazily chunk by chunk (numpy-like, read-only).

    Supports ``shape``, ``dtype``, ``ndim``, ``size``, basic indexing (ints and slices, with
    steps), ``values_at`` (a gather of N points, chunk by chunk) and ``np.asarray`` (the
    whole array, on request only).
    """

    def __init__(
        self,
        path: Path,
        check: ChunkCheck | None = None,
        relative_to: Path | None = None,
        cache_bytes: int = CACHE_BYTES,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = path
        metadata = _read_metadata(path) if metadata is None else _checked_metadata(path, metadata)
        self.shape: tuple[int, ...] = tuple(int(s) for s in metadata["shape"])
        self.chunks: tuple[int, ...] = tuple(
            int(c) for c in metadata["chunk_grid"]["configuration"]["chunk_shape"]
        )
        self._decode, self._stored_dtype = _decoder(path, metadata)
        self._zstd = [c.get("name") for c in metadata.get("codecs", [])][1:] == ["zstd"]
        self.dtype: np.dtype[Any] = self._stored_dtype.newbyteorder("=")
        self.fill_value = metadata.get("fill_value", 0) or 0
        self._check = check
        self._relative_to = relative_to
        self._cache: OrderedDict[tuple[int, ...], npt.NDArray[Any]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cache_lock = threading.Lock()  # reads place chunks from several threads
        self._dense: npt.NDArray[Any] | None = None

    # --- numpy-like surface --------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ZarrArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        selection, squeeze = _normalise(key, self.shape)
        starts = [s.start for s in selection]
        stops = [s.stop for s in selection]
        steps = [s.step for s in selection]
        covering = [
            slice(start, start + (stop - start - 1) // step * step + 1 if stop > start else start)
            for start, stop, step in zip(starts, stops, steps, strict=True)
        ]
        dense = self._read_box([c.start for c in covering], [c.stop for c in covering])
        out = dense[tuple(slice(None, None, step) for step in steps)]
        return out[squeeze] if squeeze else out

    def take(self, flat: npt.NDArray[np.integer[Any]]) -> npt.NDArray[Any]:
        """Values at flat (C-order) indices, as ``ndarray.reshape(-1).take`` gives them."""
        flat = np.asarray(flat, dtype=np.intp).reshape(-1)
        if self._gathers_densely(len(flat)):
            gathered: npt.NDArray[Any] = self.dense().reshape(-1).take(flat)
            return gathered
        return self.values_at(np.column_stack(np.unravel_index(flat, self.shape)))

    def _gathers_densely(self, n_points: int) -> bool:
        chunks = math.prod(self.grid)
        return self._dense is not None or (
            n_points >= _DENSE_POINTS_PER_CHUNK * chunks and self.nbytes <= self._cache_bytes
        )

    def values_at(self, points: npt.NDArray[np.integer[Any]]) -> npt.NDArray[Any]:
        """Values at N points (an (N, ndim) array of valid indices).

        Many points on an array that fits the cache budget: the array is decoded once
        (:meth:`dense`) and gathered from like a memory-mapped stack. Otherwise the points
        are grouped by chunk (a radix sort of their chunk numbers) and each chunk that holds
        one is read once.
        """
        points = np.asarray(points, dtype=np.int64).reshape(-1, self.ndim)
        if self._gathers_densely(len(points)):
            return self.take(np.asarray(np.ravel_multi_index(tuple(points.T), self.shape)))
        out = np.empty(len(points), dtype=self.dtype)
        if not len(points):
            return out
        chunks = np.asarray(self.chunks)
        grid = points // chunks
        keys = np.ravel_multi_index(tuple(grid.T), self.grid)
        local = np.ravel_multi_index(tuple((points - grid * chunks).T), self.chunks)
        small = keys.astype(np.uint16) if keys.max() < 2**16 else keys  # radix sort
        order = np.argsort(small, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        for first, last in zip(starts, [*starts[1:], len(order)], strict=True):
            rows = order[first:last]
            index = tuple(int(i) for i in grid[rows[0]])
            out[rows] = self.chunk(index).reshape(-1).take(local[rows])
        return out

    def dense(self) -> npt.NDArray[Any]:
        """The whole array, decoded once (chunks in parallel, each checked) and kept,
        read-only; later reads are served from it."""
        if self._dense is not None:
            return self._dense
        out = np.empty(self.shape, dtype=self.dtype)
        indices = list(product(*(range(n) for n in self.grid)))
        scratch = Scratch(self._chunk_bytes)

        def place(index: tuple[int, ...]) -> None:
            region = tuple(
                slice(i * c, min((i + 1) * c, n))
                for i, c, n in zip(index, self.chunks, self.shape, strict=True)
            )
            source = tuple(slice(0, r.stop - r.start) for r in region)
            self._copy_chunk(index, out[region], source, scratch)

        self._each(place, indices)
        out.flags.writeable = False
        self._dense = out
        self._cache.clear()
        return out

    # --- chunks ----------------------------------------------------------------------------

    @property
    def _chunk_bytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks along each axis."""
        return tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunks, strict=True))

    def chunk_files(self) -> Iterator[tuple[tuple[int, ...], Path]]:
        """Every chunk index of the grid, with the file that holds it (which may not exist)."""
        for index in product(*(range(n) for n in self.grid)):
            yield index, self.path / chunk_key(index)

    def chunk(self, index: tuple[int, ...], remember: bool = True) -> npt.NDArray[Any]:
        """The decoded chunk at grid ``index`` (full chunk shape), checked, then cached (unless
        the array caches nothing: ``cache_bytes=0``)."""
        found = self._cached(index)
        if found is not None:
            return found
        block = self._block(*self._load(index))
        if remember and self._cache_bytes > 0:
            self._remember(index, block)
        return block

    def _block(self, file: Path, data: bytes | None) -> npt.NDArray[Any]:
        """A chunk's checked bytes decoded (read-only, full chunk shape)."""
        if data is None:
            block = np.full(self.chunks, self.fill_value, dtype=self.dtype)
        else:
            with _readers.decoding():
                block = self._decode(data, file)
            if block.size != math.prod(self.chunks):
                from atlasmith.errors import IntegrityError

                raise IntegrityError(
                    f"chunk {file} holds {block.size} values, not {math.prod(self.chunks)}: it "
                    "is damaged. Re-install the atlas."
                )
            block = block.reshape(self.chunks)
        block.flags.writeable = False
        return block

    def _cached(self, index: tuple[int, ...]) -> npt.NDArray[Any] | None:
        with self._cache_lock:
            found = self._cache.get(index)
            if found is not None:
                self._cache.move_to_end(index)
            return found

    def _load(self, index: tuple[int, ...]) -> tuple[Path, bytes | None]:
        """A chunk's file and its bytes, through ``check`` (which may fetch them); None for a
        chunk of fill value."""
        file = self.path / chunk_key(index)
        try:
            data: bytes | None = file.read_bytes()
        except FileNotFoundError:
            data = None
        if self._check is not None:
            name = file.relative_to(self._relative_to) if self._relative_to else file
            data = self._check(Path(name).as_posix(), data)
        return file, data

    def _copy_chunk(
        self,
        index: tuple[int, ...],
        target: npt.NDArray[Any],
        source: tuple[slice, ...],
        scratch: Scratch | None,
    ) -> None:
        """``target[...] = chunk(index)[source]``, the chunk cached unless ``scratch`` is given:
        then a zstd chunk is decoded into one of that read's buffers (when its frame states
        exactly the chunk's size: zstd then fills every byte of the buffer or fails, so no
        byte of the chunk decoded there before can show through)."""
        block = self._cached(index)
        if block is None:
            file, data = self._load(index)
            if data is None:
                target[...] = self.fill_value
                return
            if scratch is not None and self._zstd and zstd_content_size(data) == scratch.nbytes:
                with _readers.decoding(), scratch.buffer() as buffer:
                    target[...] = self._decode_into(data, file, buffer)[source]
                return
            block = self._block(file, data)
            if scratch is None and self._cache_bytes > 0:
                self._remember(index, block)
        target[...] = block[source]

    def _decode_into(self, data: bytes, file: Path, buffer: npt.NDArray[Any]) -> Any:
        """A zstd chunk decoded into ``buffer``, viewed as the chunk."""
        from numcodecs import Zstd

        try:
            Zstd().decode(data, out=buffer)
        except (RuntimeError, ValueError) as err:
            from atlasmith.errors import IntegrityError

            raise IntegrityError(
                f"chunk {file} is damaged ({err}): it does not decompress to its data. Nothing "
                "was read from it; re-install the atlas."
            ) from err
        return buffer.view(self._stored_dtype).reshape(self.chunks)

    def _remember(self, index: tuple[int, ...], block: npt.NDArray[Any]) -> None:
        with self._cache_lock:
            self._cache[index] = block
            while len(self._cache) > 1 and len(self._cache) * block.nbytes > self._cache_bytes:
                self._cache.popitem(last=False)

    def _read_box(self, low: Sequence[int], high: Sequence[int]) -> npt.NDArray[Any]:
        if self._dense is not None:
            return self._dense[tuple(slice(a, b) for a, b in zip(low, high, strict=True))].copy()
        shape = [max(0, h - lo) for lo, h in zip(low, high, strict=True)]
        out = np.empty(shape, dtype=self.dtype)
        if 0 in shape:
            return out
        ranges = [
            range(lo // c, (h - 1) // c + 1)
            for lo, h, c in zip(low, high, self.chunks, strict=True)
        ]
        indices = [tuple(index) for index in product(*ranges)]
        scratch = None if self._caches(low, high, len(indices)) else Scratch(self._chunk_bytes)

        def place(index: tuple[int, ...]) -> None:
            origin = [i * c for i, c in zip(index, self.chunks, strict=True)]
            a = [max(lo, o) for lo, o in zip(low, origin, strict=True)]
            b = [min(h, o + c) for h, o, c in zip(high, origin, self.chunks, strict=True)]
            source = tuple(slice(x - o, y - o) for x, y, o in zip(a, b, origin, strict=True))
            target = tuple(slice(x - lo, y - lo) for x, y, lo in zip(a, b, low, strict=True))
            self._copy_chunk(index, out[target], source, scratch)

        self._each(place, indices)
        return out

    def _caches(self, low: Sequence[int], high: Sequence[int], chunks: int) -> bool:
        """Whether a read keeps its chunks: not when the array caches nothing, when the read
        is the whole array (the caller has every value), or when its chunks would not fit
        the cache anyway (each would push out the one before)."""
        whole = list(low) == [0] * self.ndim and list(high) == list(self.shape)
        return not whole and 0 < chunks * self._chunk_bytes <= self._cache_bytes

    def _each(self, place: Callable[[tuple[int, ...]], None], indices: list[Any]) -> None:
        """``place`` for every chunk index, in the readers."""
        each_in_readers(place, indices)


def _read_metadata(path: Path) -> dict[str, Any]:
    file = path / "zarr.json"
    return _checked_metadata(
        path, read_json(file, f"the array {path} is incomplete. Re-install the atlas.")
    )


def _checked_metadata(path: Path, metadata: Any) -> dict[str, Any]:
    """An array's ``zarr.json``, checked to be one this reader reads."""
    file = path / "zarr.json"
    if not isinstance(metadata, dict) or metadata.get("node_type") != "array":
        raise AtlasFormatError(f"{file} does not describe a Zarr v3 array.")
    grid = metadata.get("chunk_grid", {})
    encoding = metadata.get("chunk_key_encoding", {})
    separator = encoding.get("configuration", {}).get("separator", "/")
    if grid.get("name") != "regular" or encoding.get("name") != "default" or separator != "/":
        raise AtlasFormatError(
            f"{file}: only regular chunk grids with '/'-separated default keys are read "
            f"(got {grid.get('name')!r}, {encoding.get('name')!r}, {separator!r})."
        )
    return metadata


def _decoder(
    path: Path, metadata: Mapping[str, Any]
) -> tuple[Callable[[bytes, Path], npt.NDArray[Any]], np.dtype[Any]]:
    """A function that decodes one chunk file's bytes, and the array's dtype as stored."""
    codecs = list(metadata.get("codecs", []))
    names = [c.get("name") for c in codecs]
    if (
        not names
        or names[0] != "bytes"
        or len(names) > 2
        or names[1:] not in ([], ["zstd"], ["gzip"])
    ):
        raise AtlasFormatError(
            f"{path / 'zarr.json'}: codecs {names} are not read by atlasmith (it reads 'bytes' "
            "with an optional 'zstd' or 'gzip', as BrainGlobe writes them)."
        )
    endian = codecs[0].get("configuration", {}).get("endian", "little")
    dtype = np.dtype(metadata["data_type"]).newbyteorder("<" if endian == "little" else ">")
    if names[1:] == ["zstd"]:
        from numcodecs import Zstd

        inflate: Callable[[bytes], bytes] = Zstd().decode
    elif names[1:] == ["gzip"]:
        from numcodecs import GZip

        inflate = GZip().decode
    else:

        def inflate(data: bytes) -> bytes:
            return data

    def decode(data: bytes, file: Path) -> npt.NDArray[Any]:
        try:
            raw = bytes(inflate(data))
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
        except (RuntimeError, ValueError) as err:  # numcodecs: RuntimeError on a bad checksum
            from atlasmith.errors import IntegrityError

            raise IntegrityError(
                f"chunk {file} is damaged ({err}): it does not decompress to its data. Nothing "
                "was read from it; re-install the atlas."
            ) from err

    return decode, dtype


def _normalise(key: Any, shape: Sequence[int]) -> tuple[list[slice], tuple[Any, ...]]:
    """Slices with positive steps for every axis, and the indexing that drops int axes."""
    items = list(key) if isinstance(key, tuple) else [key]
    if any(item is Ellipsis for item in items):
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(shape) - len(items) + 1)
    items += [slice(None)] * (len(shape) - len(items))
    if len(items) != len(shape):
        raise IndexError(f"too many indices for an array of {len(shape)} dimensions")
    selection: list[slice] = []
    squeeze: list[Any] = []
    for item, size in zip(items, shape, strict=True):
        if isinstance(item, int | np.integer):
            index = int(item) + size if item < 0 else int(item)
            if not 0 <= index < size:
                raise IndexError(f"index {item} is out of bounds for an axis of size {size}")
            selection.append(slice(index, index + 1, 1))
            squeeze.append(0)
        elif isinstance(item, slice):
            start, stop, step = item.indices(size)
            if step < 1:
                raise IndexError("negative steps are not supported by lazy arrays")
            selection.append(slice(start, max(start, stop), step))
            squeeze.append(slice(None))
        else:
            raise IndexError(f"unsupported index {item!r}: use ints and slices")
    if all(isinstance(s, slice) for s in squeeze):
        return selection, ()
    return selection, tuple(squeeze)
