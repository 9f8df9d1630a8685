"""Neuroglancer's precomputed layout, as BrainGlobe 3 ships an annotation set with it: Draco
meshes (one fragment per structure, which BrainGlobe's client reads too), the multi-LOD mesh
index and ``info``, the segmentation volume in ``compressed_segmentation`` chunks, and the
segment properties (names shown in neuroglancer).

Coordinates here are neuroglancer's: nanometres, axes x, y, z = the atlas's "asr" axes
reversed (axis 2, 1, 0). Triangles are reversed with the axes, so normals keep pointing out.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from itertools import product
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._types import Float64Array, IntArray
from atlasmith.errors import IntegrityError

__all__ = [
    "CHUNK_XYZ",
    "decode_mesh",
    "decode_segmentation",
    "encode_mesh",
    "encode_segmentation",
    "mesh_info",
    "segmentation_chunks",
    "segmentation_info",
]

QUANTIZATION_BITS = 16
CHUNK_XYZ = (256, 256, 64)  # segmentation chunk, voxels along x, y, z (BrainGlobe's)
BLOCK = 8  # compressed_segmentation block edge, voxels
_BITS = (0, 1, 2, 4, 8, 16, 32)
_UM_TO_NM = 1000.0


# --- meshes ----------------------------------------------------------------------------------


def encode_mesh(points_um: Float64Array, faces: IntArray) -> tuple[bytes, bytes]:
    """A mesh in micrometres on the "asr" axes -> (Draco fragment, multi-LOD index) for
    ``mesh/<id>`` and ``mesh/<id>.index`` (one LOD, one fragment, as BrainGlobe writes)."""
    import DracoPy

    vertices = np.ascontiguousarray(points_um[:, ::-1] * _UM_TO_NM, dtype=np.float32)
    triangles = np.ascontiguousarray(faces[:, ::-1], dtype=np.uint32)
    origin = vertices.min(axis=0)
    extent = float((vertices.max(axis=0) - origin).max()) or 1.0
    fragment: bytes = DracoPy.encode(
        vertices,
        triangles,
        quantization_bits=QUANTIZATION_BITS,
        compression_level=0,
        quantization_range=extent,
        quantization_origin=origin.tolist(),
    )
    index = b"".join(
        [
            struct.pack("<3f", extent, extent, extent),  # chunk shape
            struct.pack("<3f", *origin.tolist()),  # grid origin
            struct.pack("<I", 1),  # LODs
            struct.pack("<f", extent),  # LOD scales
            struct.pack("<3f", 0.0, 0.0, 0.0),  # vertex offsets
            struct.pack("<I", 1),  # fragments per LOD
            struct.pack("<3I", 0, 0, 0),  # fragment positions
            struct.pack("<I", len(fragment)),  # fragment sizes
        ]
    )
    return fragment, index


def decode_mesh(
    data: bytes, where: str, *, native: bool = False
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """A Draco fragment -> (points in micrometres on the "asr" axes, triangles): float64 and
    int64 (as meshes read from OBJ), or with ``native`` the decoder's own float32 and uint32
    (what BrainGlobe 3.0.2 returns; half the memory, and no widening pass).

    Raises
    ------
    IntegrityError
        When the bytes are not a Draco triangle mesh (naming ``where``).
    """
    import DracoPy

    try:
        mesh = DracoPy.decode(data)
        points = np.asarray(mesh.points).reshape(-1, 3)  # float32 in nm, "xyz"
        faces = np.asarray(mesh.faces).reshape(-1, 3)  # uint32
    except Exception as err:  # DracoPy raises its own types on damaged data
        raise IntegrityError(f"mesh {where} is not a valid Draco mesh ({err}).") from err
    if faces.size and (faces.min() < 0 or faces.max() >= len(points)):
        raise IntegrityError(f"mesh {where} has triangles that refer to missing vertices.")
    # one pass and one new array each (the float64 division casts as it goes, so the values
    # are those of converting first): Allen's CH, 6.4 MB of Draco, is 19 MB of float64 and
    # int64; converting, then flipping, then copying took 11 ms besides 45 ms of decoding,
    # this takes 4 ms
    if native and points.flags.writeable and faces.flags.writeable:
        # in place, in the decoder's own arrays: no new memory to touch (fresh pages cost more
        # than the arithmetic here), the values those of ``points / 1000`` in float32
        _swap_first_and_last_columns(points)
        _swap_first_and_last_columns(faces)
        points /= np.float32(_UM_TO_NM)
        return points, faces
    if native:
        return np.divide(points[:, ::-1], _UM_TO_NM, dtype=np.float32), np.ascontiguousarray(
            faces[:, ::-1]
        )
    asr = np.divide(points[:, ::-1], _UM_TO_NM, dtype=np.float64)
    return asr, faces[:, ::-1].astype(np.int64, order="C")


def _swap_first_and_last_columns(array: npt.NDArray[Any]) -> None:
    """``array[:, ::-1]`` in place for three columns ("xyz" <-> "zyx"), a column of scratch."""
    first = array[:, 0].copy()
    array[:, 0] = array[:, 2]
    array[:, 2] = first


def mesh_info() -> dict[str, Any]:
    """``mesh/info``: multi-LOD Draco meshes, 16-bit quantization, identity transform."""
    return {
        "@type": "neuroglancer_multilod_draco",
        "vertex_quantization_bits": QUANTIZATION_BITS,
        "transform": [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "lod_scale_multiplier": 1.0,
    }


# --- the segmentation volume -------------------------------------------------------------------


def _nm(resolution_um: Sequence[float]) -> list[float | int]:
    values = [float(r) * _UM_TO_NM for r in resolution_um[::-1]]
    return [int(v) if v.is_integer() else v for v in values]


def segmentation_info(shape_zyx: Sequence[int], resolution_um: Sequence[float]) -> dict[str, Any]:
    """``info`` of the segmentation: one scale of ``compressed_segmentation`` chunks."""
    nm = _nm(resolution_um)
    return {
        "@type": "neuroglancer_multiscale_volume",
        "data_type": "uint32",
        "mesh": "mesh",
        "num_channels": 1,
        "scales": [
            {
                "chunk_sizes": [list(CHUNK_XYZ)],
                "compressed_segmentation_block_size": [BLOCK, BLOCK, BLOCK],
                "encoding": "compressed_segmentation",
                "key": scale_key(resolution_um),
                "resolution": nm,
                "size": [int(s) for s in shape_zyx[::-1]],
                "voxel_offset": [0, 0, 0],
            }
        ],
        "segment_properties": "segment_properties",
        "type": "segmentation",
    }


def scale_key(resolution_um: Sequence[float]) -> str:
    """The folder of the scale's chunks: its resolution in nm, ``x_y_z``."""
    return "_".join(str(v) for v in _nm(resolution_um))


def segmentation_chunks(shape_zyx: Sequence[int]) -> Iterator[tuple[str, tuple[slice, ...]]]:
    """``(file name, zyx region)`` of every chunk: names ``x0-x1_y0-y1_z0-z1``."""
    size = [int(s) for s in shape_zyx[::-1]]
    ranges = [range(0, n, c) for n, c in zip(size, CHUNK_XYZ, strict=True)]
    for z0, y0, x0 in product(*reversed(ranges)):
        lows = (x0, y0, z0)
        highs = [min(lo + c, n) for lo, c, n in zip(lows, CHUNK_XYZ, size, strict=True)]
        name = "_".join(f"{lo}-{hi}" for lo, hi in zip(lows, highs, strict=True))
        yield name, (slice(z0, highs[2]), slice(y0, highs[1]), slice(x0, highs[0]))


def encode_segmentation(block_zyx: npt.NDArray[Any]) -> bytes:
    """One chunk (a zyx region of uint32 labels) in ``compressed_segmentation`` encoding.

    The chunk is cut into 8x8x8 blocks (x fastest), each stored as a table of its distinct
    values (sorted) and every voxel's index in it, packed in 0-16 bits; partial blocks at the
    edges are padded with their first value. One channel: a one-word header first.
    """
    labels = np.asarray(block_zyx, dtype=np.uint32)
    padded_shape = [math.ceil(n / BLOCK) * BLOCK for n in labels.shape]
    padded = np.empty(padded_shape, dtype=np.uint32)
    padded[...] = labels.reshape(-1)[0]
    padded[tuple(slice(0, n) for n in labels.shape)] = labels
    gz, gy, gx = (n // BLOCK for n in padded_shape)
    blocks = (
        padded.reshape(gz, BLOCK, gy, BLOCK, gx, BLOCK)
        .transpose(0, 2, 4, 1, 3, 5)
        .reshape(-1, BLOCK**3)
    )  # one row per block, blocks x fastest; in a row, x fastest
    ordered = np.sort(blocks, axis=1)
    first = np.ones(ordered.shape, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    counts = first.sum(axis=1)
    table_values = ordered[first]  # every block's table, in block order
    table_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    row = np.repeat(np.arange(len(blocks), dtype=np.uint64), BLOCK**3)
    keys = (row << np.uint64(32)) | blocks.reshape(-1).astype(np.uint64)
    table_keys = (np.repeat(np.arange(len(blocks), dtype=np.uint64), counts) << np.uint64(32)) | (
        table_values.astype(np.uint64)
    )
    local = (np.searchsorted(table_keys, keys) - np.repeat(table_starts, BLOCK**3)).reshape(
        len(blocks), -1
    )
    bits = np.array(_BITS)[np.searchsorted(1 << np.array(_BITS), counts)]
    words = np.where(bits == 0, 0, BLOCK**3 * bits // 32)
    header_words = 2 * len(blocks)
    data_start = header_words + np.concatenate([[0], np.cumsum(words + counts)[:-1]])
    table_start = data_start + words
    headers = np.empty((len(blocks), 2), dtype=np.uint32)
    headers[:, 0] = table_start.astype(np.uint32) | (bits.astype(np.uint32) << np.uint32(24))
    headers[:, 1] = data_start.astype(np.uint32)
    pieces: list[npt.NDArray[np.uint32]] = [np.array([1], dtype=np.uint32), headers.reshape(-1)]
    packed = _pack(local, bits)
    for b in range(len(blocks)):
        pieces.append(packed[b])
        pieces.append(table_values[table_starts[b] : table_starts[b] + counts[b]])
    return np.concatenate(pieces).astype("<u4").tobytes()


def _pack(
    local: npt.NDArray[np.int64], bits: npt.NDArray[np.int64]
) -> list[npt.NDArray[np.uint32]]:
    """Each block's indices packed into 32-bit words, ``bits`` per value, low bits first."""
    out: list[npt.NDArray[np.uint32]] = [np.zeros(0, dtype=np.uint32)] * len(local)
    for b in np.unique(bits):
        rows = np.flatnonzero(bits == b)
        if b == 0:
            continue
        per_word = 32 // int(b)
        values = local[rows].astype(np.uint64).reshape(len(rows), -1, per_word)
        shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(b))[None, None, :]
        words = (values << shifts).sum(axis=2, dtype=np.uint64).astype(np.uint32)
        for k, r in enumerate(rows):
            out[r] = words[k]
    return out


def decode_segmentation(data: bytes, shape_zyx: Sequence[int]) -> npt.NDArray[np.uint32]:
    """The inverse of :func:`encode_segmentation` (any valid encoder's output)."""
    words = np.frombuffer(data, dtype="<u4")
    base = int(words[0])
    padded_shape = [math.ceil(n / BLOCK) * BLOCK for n in shape_zyx]
    gz, gy, gx = (n // BLOCK for n in padded_shape)
    n_blocks = gz * gy * gx
    headers = words[base : base + 2 * n_blocks].reshape(-1, 2)
    blocks = np.empty((n_blocks, BLOCK**3), dtype=np.uint32)
    positions = np.arange(BLOCK**3, dtype=np.int64)
    for b, (first, second) in enumerate(headers):
        table = base + (int(first) & 0xFFFFFF)
        bits = int(first) >> 24
        if table >= len(words) or bits not in _BITS:
            raise IntegrityError("a compressed_segmentation block header points outside the chunk")
        if bits == 0:
            blocks[b] = words[table]
            continue
        offsets = base + int(second) + positions * bits // 32
        index = (words[offsets].astype(np.int64) >> (positions * bits % 32)) & ((1 << bits) - 1)
        blocks[b] = words[table + index]
    volume = (
        blocks.reshape(gz, gy, gx, BLOCK, BLOCK, BLOCK)
        .transpose(0, 3, 1, 4, 2, 5)
        .reshape(padded_shape)
    )
    return volume[tuple(slice(0, n) for n in shape_zyx)]


def segment_properties(ids: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """``segment_properties/info``: each structure's label in neuroglancer's segment list."""
    return {
        "@type": "neuroglancer_segment_properties",
        "inline": {
            "ids": [str(int(i)) for i in ids],
            "properties": [{"id": "label", "type": "label", "values": list(labels)}],
        },
    }
