"""Wavefront OBJ files, the meshes of v1 atlas folders: written fast and the same every time,
read back (any OBJ: polygons, ``v/vt/vn`` entries, relative indices), and their bounds read
without parsing the faces."""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith import errors  # errors.MeshError, made on first use: it imports meshio (65 ms)
from atlasmith._types import Float64Array, IntArray, PathLike
from atlasmith.meshes._geometry import face_cross

__all__ = [
    "MeshData",
    "apart_when_rounded",
    "locality_order",
    "obj_bounds",
    "obj_bounds_many",
    "obj_bytes",
    "read_obj",
]

#: A triangle mesh: vertices (V, 3) and zero-based triangles (F, 3).
MeshData = tuple[Float64Array, IntArray]


# --- writing ---------------------------------------------------------------------------------


def obj_bytes(points: npt.NDArray[np.floating[Any]], faces: IntArray, decimals: int = 2) -> bytes:
    """Wavefront OBJ text (``v`` and 1-based ``f`` lines) of a triangle mesh.

    The same text as ``"v %.2f %.2f %.2f"`` / ``"f %d %d %d"`` formatting of the values
    rounded to ``decimals`` (no ``-0.00``; below 0, to tens, hundreds..., written as whole
    numbers), built with table lookups over whole arrays: each line is a row of 4-byte words
    in which unused bytes are 0, and the zeros are dropped at the end.
    """
    n = len(points)
    scaled = np.rint(np.asarray(points, dtype=np.float64) * 10.0**decimals).astype(np.int64)
    scaled = scaled.ravel()
    if decimals < 0:  # whole numbers, their last digits 0
        scaled *= 10 ** (-decimals)
        decimals = 0
    whole, fraction = np.divmod(np.abs(scaled), 10**decimals)
    number = [np.where(scaled < 0, _WORDS["-"], 0).astype(np.uint32)[:, None]]
    number.append(_digit_words(whole))
    if decimals:
        number.append(_fraction_words(decimals)[fraction])
    number.append(np.full((len(scaled), 1), _WORDS[" "], dtype=np.uint32))
    vertices = _lines(_WORDS["v "], np.concatenate(number, axis=1).reshape(n, -1))
    index = (np.asarray(faces, dtype=np.int64) + 1).ravel()
    separator = np.full((len(index), 1), _WORDS[" "], dtype=np.uint32)
    words = np.concatenate([_digit_words(index), separator], axis=1).reshape(len(faces), -1)
    text = np.concatenate([vertices, _lines(_WORDS["f "], words)]).view(np.uint8)
    out: bytes = text[text != 0].tobytes()
    return out


def apart_when_rounded(
    points: npt.NDArray[np.floating[Any]], faces: IntArray, decimals: int
) -> bool:
    """Whether the mesh's coordinates rounded to ``decimals`` (below 0: to tens,
    hundreds...) keep every vertex at its own position and every face of some area: a mesh
    written so is still the same mesh (Draco, which merges vertices that share a position,
    keeps each of them; no triangle collapses)."""
    if len(points) == 0:
        return True
    units = np.rint(np.asarray(points, dtype=np.float64) * 10.0**decimals).astype(np.int64)
    units -= units.min(axis=0)
    sides = units.max(axis=0) + 1
    if float(np.prod(sides.astype(np.float64))) >= 2.0**62:  # no one-number key: compare rows
        distinct = len(np.unique(units, axis=0)) == len(units)
    else:
        key = np.sort((units[:, 0] * sides[1] + units[:, 1]) * sides[2] + units[:, 2])
        distinct = not np.any(key[1:] == key[:-1])
    if not distinct:
        return False
    _, cross = face_cross(units, faces)
    return not np.any(np.all(cross == 0, axis=1))


def locality_order(
    points: npt.NDArray[np.floating[Any]], faces: IntArray, cell: float
) -> tuple[npt.NDArray[np.floating[Any]], IntArray]:
    """The same mesh with its faces along a Z-order curve of cells ``cell`` wide (the
    units of ``points``) and its vertices numbered by first use: neighbouring lines of the
    OBJ text then hold nearby coordinates and nearby indices, which gzip stores in fewer
    bytes (a fifth fewer for the Allen 100 um meshes). The faces keep their orientation, and
    the order depends on the mesh alone;
    vertices no face uses go last."""
    if len(faces) == 0:
        return points, faces
    corners = points[faces[:, 0]] + points[faces[:, 1]] + points[faces[:, 2]]  # 3 x centre
    cells = np.floor((corners - corners.min(axis=0)) / (3.0 * cell)).astype(np.int64)
    faces = faces[_stable_order(_morton(cells))]
    used = _first_uses(faces.ravel(), len(points))
    if len(used) < len(points):
        unused = np.ones(len(points), dtype=bool)
        unused[used] = False
        used = np.concatenate([used, np.flatnonzero(unused)])
    order = used
    rank = np.empty(len(points), dtype=np.int64)
    rank[order] = np.arange(len(points))
    return points[order], rank[faces]


_MORTON_BITS = 10  # bits of each axis spread by one lookup
#: bit b of a number moved to bit 3b: a Z-order code interleaves three of these
_SPREAD = np.zeros(1 << _MORTON_BITS, dtype=np.int64)
for _bit in range(_MORTON_BITS):
    _SPREAD |= ((np.arange(1 << _MORTON_BITS) >> _bit) & 1) << (3 * _bit)


def _morton(cells: IntArray) -> IntArray:
    """Z-order codes of (n, 3) non-negative cell positions (their lowest 20 bits per axis),
    axis 0 in the lowest bit of each triple: by lookup, ten bits of each axis at a time."""
    code = np.zeros(len(cells), dtype=np.int64)
    low = (1 << _MORTON_BITS) - 1
    for shift in range(0, min(20, int(cells.max()).bit_length()), _MORTON_BITS):
        part = (cells >> shift) & low
        spread = _SPREAD[part[:, 0]] | _SPREAD[part[:, 1]] << 1 | _SPREAD[part[:, 2]] << 2
        code |= spread << (3 * shift)
    return code


def _stable_order(code: IntArray) -> IntArray:
    """``argsort(code, kind="stable")``: where the codes leave room, a sort of the codes with
    each one's position in its low bits (distinct keys, so any sort is stable; numpy's
    vectorised sort of numbers is a few times faster than its stable argsort)."""
    position_bits = max(1, (len(code) - 1).bit_length())
    if len(code) == 0 or int(code.max()) >= 1 << (62 - position_bits):
        out: IntArray = np.argsort(code, kind="stable")
        return out
    key = code << position_bits
    key |= np.arange(len(code), dtype=np.int64)
    key.sort()
    key &= (1 << position_bits) - 1
    return key


def _first_uses(indices: IntArray, n: int) -> IntArray:
    """The distinct values of ``indices`` (each below ``n``) in order of first appearance,
    in linear time (no sort; and no pandas, whose import alone took 0.3 s of every mesh
    worker)."""
    first = np.full(n, len(indices), dtype=np.int64)
    np.minimum.at(first, indices, np.arange(len(indices), dtype=np.int64))
    is_first = np.zeros(len(indices), dtype=bool)
    is_first[first[first < len(indices)]] = True
    return indices[is_first]


def _word(text: str) -> np.uint32:
    """Up to 4 ASCII characters as one word (padded with zero bytes)."""
    word: np.uint32 = np.frombuffer(text.encode("ascii").ljust(4, b"\0"), dtype=np.uint32)[0]
    return word


_WORDS = {text: _word(text) for text in ("-", " ", "\n", "v ", "f ")}


def _lines(start: np.uint32, words: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Rows of words with ``start`` in front and the last (separator) word made a newline."""
    words[:, -1] = _WORDS["\n"]
    out = np.empty((len(words), words.shape[1] + 1), dtype=np.uint32)
    out[:, 0] = start
    out[:, 1:] = words
    return out.ravel()


@functools.cache
def _digit_tables() -> tuple[npt.NDArray[np.uint32], ...]:
    """Words of 4 decimal digits for 0-9999: zero-padded, and with leading zeros blank (all
    blank for 0, or "0" for a number's last group)."""
    value = np.arange(10_000)
    powers = np.array([1000, 100, 10, 1])
    digits = ((value[:, None] // powers) % 10 + 48).astype(np.uint8)
    padded = digits.copy().view(np.uint32).ravel()
    digits[(value[:, None] < powers) & (powers > 1)] = 0
    digits[0, 3] = 48
    last = digits.copy().view(np.uint32).ravel()
    digits[0, 3] = 0
    lead = digits.view(np.uint32).ravel()
    return padded, lead, last


@functools.cache
def _fraction_words(decimals: int) -> npt.NDArray[np.uint32]:
    """Per value below 10**decimals: "." and its zero-padded digits, as words."""
    value = np.arange(10**decimals)
    out = np.zeros((len(value), 4 * (decimals // 4 + 1)), dtype=np.uint8)
    out[:, 0] = 46
    for k in range(decimals):
        out[:, 1 + k] = (value // 10 ** (decimals - 1 - k)) % 10 + 48
    return out.view(np.uint32)


def _digit_words(values: IntArray) -> npt.NDArray[np.uint32]:
    """Decimal digits of non-negative integers without leading zeros: groups of 4 digits
    as words, one column per group (blank words before the first digit)."""
    padded, lead, last = _digit_tables()
    groups = 1
    while values.size and int(values.max()) >= 10_000**groups:
        groups += 1
    parts = []
    rest = values
    for _ in range(groups):
        rest, part = np.divmod(rest, 10_000)
        parts.append(part)
    out = np.empty((len(values), groups), dtype=np.uint32)
    started = np.zeros(len(values), dtype=bool)
    for column, part in enumerate(reversed(parts)):
        first = last if column == groups - 1 else lead
        out[:, column] = np.where(started, padded[part], first[part])
        started |= part > 0
    return out


# --- reading ---------------------------------------------------------------------------------


def read_obj(path: PathLike) -> MeshData:
    """Vertices (V, 3) and triangles (F, 3, zero-based) of a Wavefront OBJ file.

    Polygons with more than three corners are split into fans; ``v/vt/vn`` face entries and
    negative (relative) indices are understood.

    Raises
    ------
    MeshError
        When the file is missing or not a readable OBJ.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise errors.MeshError(f"cannot read mesh {file}: {err}") from err
    try:
        vertex_rows = _OBJ_VERTEX.findall(text)
        vertices = _numbers(" ".join(vertex_rows), np.float64, 3 * len(vertex_rows)).reshape(-1, 3)
        faces = _obj_faces(_OBJ_FACE.findall(text), len(vertex_rows))
    except (ValueError, IndexError) as err:
        raise errors.MeshError(f"mesh {file} is not a valid OBJ file ({err}).") from err
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise errors.MeshError(f"mesh {file} has faces that refer to vertices it does not have.")
    return vertices, faces


_OBJ_VERTEX = re.compile(r"^v[ \t]+([^\n]*)", re.MULTILINE)
_OBJ_FACE = re.compile(r"^f[ \t]+([^\n]*)", re.MULTILINE)


def _numbers(text: str, dtype: type[Any], count: int) -> npt.NDArray[Any]:
    """Parse exactly ``count`` whitespace-separated numbers (C speed), else ValueError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=dtype, sep=" ") if count else np.zeros(0, dtype)
        except (DeprecationWarning, ValueError) as err:
            raise ValueError(f"unreadable numbers ({err})") from err
    if values.size != count:
        raise ValueError(f"expected {count} numbers, found {values.size}")
    return values


def _obj_faces(rows: list[str], n_vertices: int) -> npt.NDArray[np.int64]:
    joined = " ".join(rows)
    if "/" not in joined:
        try:
            tri = _numbers(joined, np.int64, 3 * len(rows)).reshape(-1, 3)
        except ValueError:
            tri = _fan_faces(rows)
    else:
        tri = _fan_faces(rows)
    return np.where(tri < 0, tri + n_vertices, tri - 1)


def _fan_faces(rows: list[str]) -> npt.NDArray[np.int64]:
    """Triangles of polygon rows (any number of corners, ``v/vt/vn`` entries)."""
    corners = [[int(t.split("/")[0]) for t in row.split()] for row in rows]
    if any(len(c) < 3 for c in corners):
        raise ValueError("a face with fewer than three corners")
    tri = [[c[0], c[k], c[k + 1]] for c in corners for k in range(1, len(c) - 1)]
    return np.array(tri, dtype=np.int64).reshape(-1, 3)


def _vertex_block(data: bytes) -> bytes | None:
    """The ``v x y z`` lines of an OBJ text whose vertex lines all come first (as atlasmith
    and meshio write them), without the last newline; None for any other text."""
    end = data.find(b"\nf ")
    if end >= 0 and data.find(b"\nv ", end) >= 0:  # vertices after faces (more objects)
        return None
    block = data[: end if end >= 0 else len(data)].rstrip(b"\n")
    if block.startswith(b"v ") and block.count(b"\n") + 1 == block.count(b"v "):
        return block
    return None


def _vertex_table(block: bytes) -> Float64Array:
    """The coordinates (n, 3) of ``v x y z`` lines."""
    import pandas as pd  # its C parser reads numbers 4x faster than numpy from bytes

    table = pd.read_csv(io.BytesIO(block), sep=" ", header=None, usecols=[1, 2, 3])
    values: Float64Array = table.to_numpy(dtype=np.float64)
    return values


def obj_bounds_many(
    paths: Sequence[Path], threads: int | None = None
) -> list[tuple[Float64Array, Float64Array]]:
    """:func:`obj_bounds` of each file, in order. The vertex lines of files written as
    atlasmith writes them are parsed together, one pandas call per thread (its C parser
    releases the GIL; the Allen annotation's 837 meshes at 100 um: 0.3 s, against 0.9 s file
    by file); any other file, or a group that does not parse so, file by file."""
    from concurrent.futures import ThreadPoolExecutor

    count = max(1, min(threads or os.cpu_count() or 1, len(paths)))
    groups = [list(paths[k::count]) for k in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        done = list(pool.map(_group_bounds, groups))
    out: list[tuple[Float64Array, Float64Array]] = [None] * len(paths)  # type: ignore[list-item]
    for k, bounds in enumerate(done):
        out[k::count] = bounds
    return out


def _group_bounds(paths: list[Path]) -> list[tuple[Float64Array, Float64Array]]:
    blocks = {k: _vertex_block(path.read_bytes()) for k, path in enumerate(paths)}
    fast = [k for k, block in blocks.items() if block is not None]
    found: dict[int, tuple[Float64Array, Float64Array]] = {}
    if fast:
        chosen = [blocks[k] or b"" for k in fast]
        rows = np.array([block.count(b"\n") + 1 for block in chosen])
        try:
            values = _vertex_table(b"\n".join(chosen))
        except ValueError:  # one file's lines differ (more columns...): file by file
            values = np.zeros((0, 3))
        if values.shape == (int(rows.sum()), 3) and not np.isnan(values).any():
            starts = np.r_[0, np.cumsum(rows)[:-1]]
            low, high = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
            found = {k: (low[j], high[j]) for j, k in enumerate(fast)}
    return [found[k] if k in found else obj_bounds(path) for k, path in enumerate(paths)]


def obj_bounds(path: Path) -> tuple[Float64Array, Float64Array]:
    """Min and max corner of the vertices of an OBJ file.

    Fast path for files whose vertex lines (``v x y z``) all come first, as atlasmith and
    meshio write them; anything else is read with :func:`read_obj`.
    """
    block = _vertex_block(path.read_bytes())
    # any other OBJ (several objects, v/vt/vn faces...) is read whole
    points = read_obj(path)[0] if block is None else _vertex_table(block)
    values = points.ravel()
    if values.size == 0 or values.size % 3:
        raise errors.MeshError(
            f"mesh {path} has no valid vertices: regenerate it (atlasmith meshes)."
        )
    points = values.reshape(-1, 3)
    return points.min(axis=0), points.max(axis=0)
