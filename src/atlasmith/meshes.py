"""The mesh engine: one closed, smoothed, decimated mesh per structure, from an annotation.

The design (shared surface, face selection, each mesh finished on its own):

1. The annotation becomes compact labels (one per structure, 0 outside), padded by one voxel.
2. Closing (``closing``, default 1): every structure is closed on its own, on bit-packed
   masks in its bounding box, which fills its slits and tunnels (``atlasmith.closing``).
   Each voxel a closing adds gets a label for its set of structures, so the labels still
   say, for every structure, which voxels are its.
3. One multi-label surface-nets pass extracts every boundary between two labels once, as a
   shared surface whose faces carry the label pair on their two sides (one vertex per 2x2x2
   cell of voxel centres holding several labels, one quad per pair of differing
   neighbours). It runs in slabs along the first axis, in parallel, with memory bounded by
   the slab size (``atlasmith.surface``).
4. The shared surface is decimated once: vertices in the same block (``cluster_um``) whose
   cells hold the same set of labels, and that face the same way, are merged; optionally a
   quadric edge collapse (``fast_simplification``) follows, in pieces along the first axis
   that run in parallel, with the vertices on the cuts between pieces kept in place.
5. Every structure's mesh (leaf or parent) is the set of faces with exactly one side in
   the structure, oriented so its normals point outwards: closed, and, without closing,
   exactly the union of its descendants. It is then smoothed on its own
   (``atlasmith.refine``), so that it is rounded as a whole, as a mesh made from that
   structure alone would be. Selection, smoothing and OBJ writing run in parallel (local
   processes or a dask.distributed cluster).

Coordinates are micrometres in the stacks' axes ("asr"), voxel index ``i`` at
``i * resolution``. The output is byte-identical for the same input and parameters, whatever
the number of workers or the scheduler.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from atlasmith._fs import FOLDER_MODE, replace_path
from atlasmith.closing import close_structures
from atlasmith.errors import AtlasExistsError, AtlasFormatError, ConfigError
from atlasmith.refine import smooth, smoothing_iterations
from atlasmith.surface import (
    SharedSurface,
    SlabInputs,
    _alive_mask,
    _block,
    compact_labels,
    extract,
    row_blocks,
)

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.hierarchy import StructureTree

__all__ = [
    "MeshParameters",
    "generate_meshes",
    "keep_freed_memory",
    "meshes_for_folder",
    "read_atlas_inputs",
]

ENGINE = "atlasmith-surface-nets/4"  # /4: smoothing over a length (um), shrinking a little
_PIECE_FACES = 300_000  # faces per decimation piece; fixed, so output never depends on workers
# Boundaries (label pairs) with fewer faces than this are never decimated: the quadric pass
# would otherwise collapse a structure of a few voxels to nothing and lose its mesh.
_SMALL_PATCH_FACES = 48
_TASKS_PER_WORKER = 6  # structure chunks per worker, for load balance

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class MeshParameters:
    """How meshes are made; recorded in the package manifest (``to_dict``).

    Parameters
    ----------
    smoothing_um : float
        How far along the surface each structure's mesh is smoothed, in micrometres (0:
        none). Taubin smoothing reaches one edge further with each iteration, an edge being
        about the clustering block (a voxel without clustering), so it runs
        ``round(smoothing_um / edge)`` iterations, and an atlas's meshes are smoothed over
        about the same length at every resolution. It rounds the voxels' staircase away and
        shrinks a little; no vertex moves more than half a voxel along any axis.
    cluster_um : float
        Decimation by vertex clustering: vertices within a block of about ``cluster_um``
        micrometres (at least 2 voxels; 0: no clustering) that lie on the boundaries of the
        same structures and face the same way are merged. The block grows as voxels shrink,
        so the triangles stay about as wide at every resolution.
    decimate : float
        Fraction of the shared surface's triangles kept by a further quadric decimation, in
        (0, 1] (1: none).
    closing : int
        Iterations of the morphological closing (6-neighbour cross) of each structure before
        meshing, which fills its slits and tunnels up to about twice as many voxels wide
        (0: none). Each structure is closed on its own, as BrainGlobe does, so a structure's
        mesh may then overlap its neighbours' and a parent's may hold more than its
        children's.
    decimals : int
        Decimals of the vertex coordinates (micrometres) written to the OBJ files.
    """

    smoothing_um: float = 800.0
    cluster_um: float = 100.0
    decimate: float = 1.0
    closing: int = 1
    decimals: int = 2

    def __post_init__(self) -> None:
        checks = (
            ("smoothing_um", self.smoothing_um, 0.0 <= self.smoothing_um <= 100_000.0),
            ("cluster_um", self.cluster_um, 0.0 <= self.cluster_um <= 10_000.0),
            ("decimate", self.decimate, 0.0 < self.decimate <= 1.0),
            ("closing", self.closing, isinstance(self.closing, int) and self.closing >= 0),
            ("decimals", self.decimals, isinstance(self.decimals, int) and 0 <= self.decimals <= 6),
        )
        for name, value, ok in checks:
            if isinstance(value, bool) or not ok:
                raise ConfigError(
                    f"mesh parameter {name}={value!r} is not valid: smoothing_um is 0 to 100000, "
                    "cluster_um is 0 to 10000, decimate is a fraction in (0, 1], closing is an "
                    "integer >= 0, decimals is 0 to 6."
                )

    def to_dict(self) -> dict[str, Any]:
        """The parameters and the engine name, JSON-ready."""
        return {"engine": ENGINE, **asdict(self)}


class _Patches(NamedTuple):
    """The shared surface with faces grouped by label pair, ready for face selection."""

    points: FloatArray
    faces: IntArray
    first: IntArray  # label on the side the normals point to, per patch
    second: IntArray
    starts: IntArray
    stops: IntArray


# --- input -------------------------------------------------------------------------------


def _any_label(annotation: np.ndarray[Any, Any]) -> bool:
    """Whether any voxel is labelled, reading as few rows as needed (memory-mapped stacks)."""
    return any(bool(np.any(part)) for _, part in row_blocks(annotation))


def _check_annotation(annotation: np.ndarray[Any, Any]) -> None:
    """Raise AtlasFormatError for an annotation that cannot be meshed."""
    if annotation.ndim != 3:
        raise AtlasFormatError(
            f"the annotation has {annotation.ndim} dimensions, expected 3 (a volume)."
        )
    if not (np.issubdtype(annotation.dtype, np.integer) or annotation.dtype == np.bool_):
        raise AtlasFormatError(
            f"the annotation has dtype {annotation.dtype}, expected integers (structure ids): "
            "convert it with annotation.astype(np.uint32) after checking its values are whole."
        )
    if annotation.size == 0 or not _any_label(annotation):
        raise AtlasFormatError(
            "the annotation is empty (every voxel is 0): there is no structure to mesh."
        )


# --- decimation in pieces ----------------------------------------------------------------


class _Piece(NamedTuple):
    """One slab of the shared surface to decimate: local points, faces, frozen vertices."""

    points: FloatArray
    faces: IntArray
    frozen: BoolArray
    keep: float


def _pieces(surface: SharedSurface, keep: float) -> tuple[list[IntArray], list[_Piece]]:
    """Cut the surface into slabs of about _PIECE_FACES faces along axis 0."""
    points, faces = surface.points, surface.faces
    n_pieces = max(1, math.ceil(len(faces) / _PIECE_FACES))
    centre = points[faces, 0].mean(axis=1)
    cuts = np.quantile(centre, np.arange(1, n_pieces) / n_pieces)
    piece = np.searchsorted(cuts, centre)
    # A vertex is frozen when its faces lie in more than one piece (their piece ids vary).
    corner_piece = np.repeat(piece, 3).astype(np.float64)
    count = np.bincount(faces.ravel(), minlength=len(points))
    total = np.bincount(faces.ravel(), corner_piece, minlength=len(points))
    squares = np.bincount(faces.ravel(), corner_piece**2, minlength=len(points))
    frozen = (count * squares - total**2 > 0.5) | _small_patch_vertices(surface)
    members, out = [], []
    for k in range(n_pieces):
        local_faces = faces[piece == k]
        used = _used_vertices(local_faces, len(points))
        remap = np.cumsum(used) - 1
        members.append(np.flatnonzero(used))
        out.append(_Piece(points[used], remap[local_faces], frozen[used], keep))
    return members, out


def _small_patch_vertices(surface: SharedSurface) -> BoolArray:
    """Vertices of the boundaries between two labels that have few faces (kept as they are)."""
    _, pair_of_face, sizes = np.unique(
        surface.pairs, axis=0, return_inverse=True, return_counts=True
    )
    small = sizes[pair_of_face.ravel()] < _SMALL_PATCH_FACES
    return _used_vertices(surface.faces[small], len(surface.points))


def _used_vertices(faces: IntArray, n_points: int) -> BoolArray:
    """Which of n_points vertices the faces use."""
    used = np.zeros(n_points, dtype=bool)
    used[faces.ravel()] = True
    return used


def _decimate_piece(piece: _Piece, _shared: Any = None) -> tuple[IntArray, FloatArray]:
    """Decimate one piece; returns each vertex's surviving representative and positions.

    Frozen vertices get a tiny extra triangle each, which makes them border vertices, and
    border vertices are never collapsed (``preserve_border``).
    """
    import fast_simplification

    n, frozen = len(piece.points), np.flatnonzero(piece.frozen)
    anchors = np.repeat(piece.points[frozen], 2, axis=0)
    anchors[0::2, 1] += 1e-3
    anchors[1::2, 2] += 1e-3
    extra = np.column_stack(
        [frozen, n + 2 * np.arange(len(frozen)), n + 1 + 2 * np.arange(len(frozen))]
    )
    target = len(frozen) + max(4, math.ceil(piece.keep * len(piece.faces)))
    all_faces = np.concatenate([piece.faces, extra])
    new_points, _, collapses = fast_simplification.simplify(
        np.concatenate([piece.points, anchors]),
        all_faces,
        target_count=target,
        preserve_border=True,
        return_collapses=True,
    )
    represent = np.arange(n + len(anchors), dtype=np.int64)
    represent[collapses[:, 1]] = collapses[:, 0]
    while not np.array_equal(nxt := represent[represent], represent):
        represent = nxt
    # The simplifier keeps the vertices of the remaining faces, in their original order.
    survivors = np.flatnonzero(_used_vertices(_alive(represent[all_faces]), len(represent)))
    if len(survivors) != len(new_points):  # pragma: no cover - a change in the simplifier
        raise RuntimeError("fast_simplification no longer keeps its vertices in order")
    positions = np.concatenate([piece.points, anchors])
    positions[survivors] = new_points
    positions[frozen] = piece.points[frozen]
    return represent[:n], positions[:n]


def _decimate(surface: SharedSurface, keep: float, runner: _Runner) -> SharedSurface:
    """Decimate the whole shared surface, piece by piece, and drop collapsed faces."""
    if keep >= 1.0:
        return surface
    members, pieces = _pieces(surface, keep)
    represent = np.arange(len(surface.points), dtype=np.int64)
    points = surface.points.copy()
    for ids, (local_rep, local_pos) in zip(
        members, runner.map(_decimate_piece, pieces, None), strict=True
    ):
        represent[ids] = ids[local_rep]
        points[ids] = local_pos
    faces = represent[surface.faces]
    alive = _alive_mask(faces)
    return SharedSurface(points, faces[alive], surface.pairs[alive])


def _alive(faces: IntArray) -> IntArray:
    """The faces whose three vertices are distinct."""
    return faces[_alive_mask(faces)]


# --- face selection and OBJ --------------------------------------------------------------


def _group(surface: SharedSurface) -> _Patches:
    """Sort faces by label pair; each run of one pair is a patch."""
    pairs = surface.pairs
    key = pairs[:, 0] * (int(pairs.max()) + 1) + pairs[:, 1]
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], len(key)]
    first, second = pairs[order[starts], 0], pairs[order[starts], 1]
    return _Patches(surface.points, surface.faces[order], first, second, starts, stops)


def _ranges(starts: IntArray, stops: IntArray) -> IntArray:
    """Concatenation of arange(start, stop) for each pair, vectorised."""
    lengths = stops - starts
    offsets = np.repeat(stops - np.cumsum(lengths), lengths)
    out: IntArray = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
    return out


def _select(patches: _Patches, member: BoolArray) -> tuple[FloatArray, IntArray]:
    """The closed surface of a structure: patches with exactly one side in it, outwards."""
    inside_first = member[patches.first]
    chosen = np.flatnonzero(inside_first != member[patches.second])
    index = _ranges(patches.starts[chosen], patches.stops[chosen])
    faces = patches.faces[index]
    # Normals point towards the first label: flip the patches where the structure is there.
    flip = np.repeat(inside_first[chosen], patches.stops[chosen] - patches.starts[chosen])
    faces[flip] = faces[flip][:, ::-1]
    used = np.flatnonzero(_used_vertices(faces, len(patches.points)))
    remap = np.empty(len(patches.points), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return patches.points[used], remap[faces]


def obj_bytes(points: npt.NDArray[np.floating[Any]], faces: IntArray, decimals: int = 2) -> bytes:
    """Wavefront OBJ text (``v`` and 1-based ``f`` lines) of a triangle mesh.

    The same text as ``"v %.2f %.2f %.2f"`` / ``"f %d %d %d"`` formatting of the rounded
    values (no ``-0.00``), built with table lookups over whole arrays: each line is a row of
    4-byte words in which unused bytes are 0, and the zeros are dropped at the end.
    """
    n = len(points)
    scaled = np.rint(np.asarray(points, dtype=np.float64) * 10.0**decimals).astype(np.int64)
    scaled = scaled.ravel()
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


class _Output(NamedTuple):
    """What every structure task needs (shared by the workers)."""

    patches: _Patches
    members: BoolArray  # per structure (row), which labels belong to it
    scale: npt.NDArray[np.float64]
    params: MeshParameters
    iterations: int  # of smoothing
    ids: IntArray
    target: str | None  # folder to write into (local workers), or None to return bytes


def _structure_chunk(rows: Sequence[int], shared: _Output) -> list[bytes | int]:
    """OBJ files of the structures at the given rows of the membership table, each smoothed
    on its own: written into ``shared.target`` (their sizes returned) or returned as bytes."""
    params = shared.params
    out: list[bytes | int] = []
    for row in rows:
        points, faces = _select(shared.patches, shared.members[row])
        if shared.iterations:
            points = smooth(points, faces, shared.iterations)
        blob = obj_bytes(points * shared.scale, faces, params.decimals)
        if shared.target is None:
            out.append(blob)
        else:
            Path(shared.target, f"{int(shared.ids[row])}.obj").write_bytes(blob)
            out.append(len(blob))
    return out


# --- running tasks: in this process, in local processes, or on a dask cluster -------------

_SHARED: Any = None


def _set_shared(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _call_with_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(item, _SHARED)


class _Runner:
    """Runs ``fn(item, shared)`` over items, yielding results in order."""

    def __init__(self, workers: int | None, scheduler: str | None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.client: Any = None
        if scheduler is not None:
            self.client = _connect(scheduler)
            self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        items: Sequence[Any],
        shared: Any,
        limit: int | None = None,
    ) -> Iterator[Any]:
        """``limit``: at most this many local processes at once (a dask cluster manages its
        own memory)."""
        workers = min(self.workers, len(items), limit or self.workers)
        if self.client is not None:
            yield from self._map_dask(fn, items, shared)
        elif workers <= 1:
            for item in items:
                yield fn(item, shared)
        else:
            yield from self._map_pool(fn, items, shared, workers)

    def _map_pool(
        self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any, workers: int
    ) -> Iterator[Any]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(workers, context, _set_shared, (shared,)) as pool:
            yield from pool.map(_call_with_shared, [fn] * len(items), items)

    def _map_dask(
        self, fn: Callable[[Any, Any], Any], items: Sequence[Any], shared: Any
    ) -> Iterator[Any]:
        # one future for the whole shared object (scattering a tuple would scatter its items)
        scattered = self.client.scatter([shared], broadcast=True)[0]
        futures = self.client.map(fn, items, [scattered] * len(items), pure=False)
        try:
            for future in futures:
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _connect(address: str) -> Any:
    """A dask.distributed client for the scheduler at ``address``."""
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - dask is an optional extra
        raise ConfigError(
            "a scheduler address needs dask.distributed: pip install 'atlasmith[dask]'."
        ) from err
    try:
        client: Any = distributed.Client
        return client(address, timeout=30)
    except OSError as err:
        raise ConfigError(
            f"cannot connect to the dask scheduler at {address!r}: {err}. Check the address "
            "(e.g. tcp://host:8786) and that the scheduler is running."
        ) from err


# --- memory ------------------------------------------------------------------------------


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of returning it to the system.

    The engine allocates and frees many arrays of a few to tens of MB; by default glibc maps
    each one afresh, and on virtual machines the page faults of those fresh pages cost as
    much as the work itself. This raises glibc's mmap and trim thresholds (process-wide,
    inherited by forked workers); peak memory is unchanged. Returns False where it does not
    apply (not glibc). Command-line entry points call it; library users may.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # glibc's M_* parameter numbers
    ok = mallopt(mmap_threshold, 32 << 20) == 1  # the largest glibc accepts
    ok &= mallopt(trim_threshold, 1 << 30) == 1
    ok &= mallopt(top_pad, 64 << 20) == 1
    return bool(ok)


# --- the engine --------------------------------------------------------------------------


def _resolution(resolution: float | Sequence[float]) -> npt.NDArray[np.float64]:
    """Voxel size in micrometres per axis (asr order)."""
    values = np.broadcast_to(np.asarray(resolution, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ConfigError(f"resolution {resolution!r} is not valid: expected positive micrometres.")
    return values


def _membership(tree: StructureTree, present_labels: IntArray) -> tuple[IntArray, BoolArray]:
    """Compact indices of the structures with voxels (own or descendants') and, per such
    structure, which compact labels belong to it."""
    table = tree.ancestor_table
    present = np.zeros(table.shape[1], dtype=bool)
    present[table[:, present_labels].ravel()] = True
    present[0] = False
    kept = np.flatnonzero(present)
    members: BoolArray = table[tree.depths[kept]] == kept[:, None]
    members[:, 0] = False
    return kept, members


def _label_counts(annotation: np.ndarray[Any, Any], tree: StructureTree) -> IntArray:
    """Voxels per compact label, reading the annotation a block of rows at a time."""
    counts = np.zeros(len(tree) + 1, dtype=np.int64)
    for _, part in row_blocks(annotation):
        counts += np.bincount(compact_labels(part, tree).ravel(), minlength=len(counts))
    return counts


def _structure_sizes(members: BoolArray, counts: IntArray) -> npt.NDArray[np.float64]:
    """Voxels per structure (row), from the voxels per label."""
    out: npt.NDArray[np.float64] = members.astype(np.float64) @ counts.astype(np.float64)
    return out


def _small(members: BoolArray, sizes: npt.NDArray[np.float64], block: int) -> BoolArray | None:
    """Per label: whether a structure it belongs to has fewer voxels than a cube two blocks
    wide (the shared surface does not merge its vertices: that could leave it no faces)."""
    if block <= 1:
        return None
    smallest = np.where(members, sizes[:, None], np.inf).min(axis=0)
    out: BoolArray = smallest < (2 * block) ** 3
    return out


def _chunks(work: npt.NDArray[np.float64], n_chunks: int) -> list[list[int]]:
    """Rows dealt into n_chunks chunks of about equal work: largest first, in turn."""
    order = np.argsort(-work, kind="stable")
    return [sorted(order[k::n_chunks].tolist()) for k in range(min(len(work), n_chunks))]


def _iter_meshes(
    annotation: np.ndarray[Any, Any],
    tree: StructureTree,
    resolution: float | Sequence[float],
    params: MeshParameters,
    runner: _Runner,
    target: Path | None = None,
) -> Iterator[tuple[int, int, bytes | int]]:
    """Yield ``(structure id, count, OBJ bytes)`` for each structure with voxels, in tree
    order; ``count`` is how many meshes there are in all. With ``target`` (a folder on this
    machine) local workers write ``<id>.obj`` there themselves, and the size is yielded
    instead of the bytes."""
    _check_annotation(annotation)
    scale = _resolution(resolution)
    block = _block(params.cluster_um, scale)
    volume, compacted = annotation, False
    if params.closing:  # closing needs every structure's voxels: compact labels in memory
        volume, compacted = compact_labels(annotation, tree), True
        counts = np.bincount(volume.ravel(), minlength=len(tree) + 1)
    else:
        counts = _label_counts(annotation, tree)
    kept, members = _membership(tree, np.flatnonzero(counts[1:]) + 1)
    if params.closing:
        tasks = runner.workers * _TASKS_PER_WORKER
        volume, members = close_structures(volume, members, params.closing, runner.map, tasks)
        counts = np.bincount(volume.ravel(), minlength=members.shape[1])
    sizes = _structure_sizes(members, counts)
    inputs = SlabInputs(volume, compacted, tree, block, _small(members, sizes, block))
    del volume
    surface = extract(inputs, runner.workers, runner.map)
    del inputs
    surface = _decimate(surface, params.decimate, runner)
    patches = _group(surface)
    # a mesh's work grows with its surface: about its voxels to the power 2/3
    chunks = _chunks(sizes ** (2 / 3), runner.workers * _TASKS_PER_WORKER)
    ids = tree.ids[kept - 1]
    local = target is not None and runner.client is None
    iterations = smoothing_iterations(params.smoothing_um, block * float(scale.min()))
    target_name = str(target) if local else None
    shared = _Output(patches, members, scale, params, iterations, ids, target_name)
    done: dict[int, bytes | int] = {}
    position = 0
    for rows, blobs in zip(chunks, runner.map(_structure_chunk, chunks, shared), strict=True):
        done.update(zip(rows, blobs, strict=True))
        while position in done:
            yield int(ids[position]), len(kept), done.pop(position)
            position += 1


def generate_meshes(
    annotation: np.ndarray[Any, Any],
    tree: StructureTree,
    resolution: float | Sequence[float],
    out_dir: Path,
    params: MeshParameters = MeshParameters(),  # noqa: B008 - frozen, so safe as a default
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> dict[int, Path]:
    """Write one mesh per structure with voxels (in it or its descendants) as ``<id>.obj``.

    Parameters
    ----------
    annotation : numpy.ndarray
        3-D integer volume of structure ids (0 = no structure), "asr" orientation.
    tree : StructureTree
        The structures; every non-zero label must be one of them.
    resolution : float or tuple of 3 floats
        Voxel size in micrometres (asr order).
    out_dir : Path
        Folder to write (e.g. ``<atlas>/meshes``); written in a temporary folder next to it
        and renamed when complete.
    params : MeshParameters
        Smoothing, decimation and closing.
    workers : int, optional
        Local processes (default: all cores). Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address of a dask.distributed scheduler (``tcp://host:port``) to run the work on.
    progress : callable, optional
        Called as ``progress(done, total)`` after each structure.
    overwrite : bool
        Replace ``out_dir`` if it exists and is not empty.

    Returns
    -------
    dict of int to Path
        Structure id to its mesh file, in tree order.

    Raises
    ------
    AtlasFormatError
        An annotation that is not a 3-D integer volume, is empty or has unknown labels.
    AtlasExistsError
        ``out_dir`` exists, is not empty and ``overwrite`` is False.
    ConfigError
        Invalid resolution, or a scheduler that cannot be reached.

    Notes
    -----
    Vertices are in micrometres, voxel index ``i`` at ``i * resolution``. Meshes of parent
    structures are made from the union of their descendants' voxels (closed as a whole when
    ``params.closing`` > 0). The files are byte-identical for the same input and parameters
    whatever ``workers`` or ``scheduler``.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    runner = _Runner(workers, scheduler)
    try:
        written = {}
        meshes = _iter_meshes(annotation, tree, resolution, params, runner, temp)
        for sid, total, blob in meshes:
            if isinstance(blob, bytes):  # made on a dask worker
                (temp / f"{sid}.obj").write_bytes(blob)
            written[sid] = out_dir / f"{sid}.obj"
            if progress is not None:
                progress(len(written), total)
        temp.chmod(FOLDER_MODE)
        replace_path(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        runner.close()
    return written


def _check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty folder unless asked to."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AtlasExistsError(f"{out_dir} exists and is not a folder: choose another --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise AtlasExistsError(
            f"{out_dir} exists and is not empty: choose another folder or pass overwrite=True "
            "(--overwrite) to replace it."
        )


def read_atlas_inputs(
    folder: Path,
) -> tuple[np.ndarray[Any, Any], StructureTree, tuple[float, float, float]]:
    """Annotation, structure tree and resolution of a BrainGlobe-format atlas folder."""
    import json

    import tifffile

    from atlasmith.hierarchy import StructureTree

    folder = Path(folder)
    paths = [folder / name for name in ("annotation.tiff", "structures.json", "metadata.json")]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise AtlasFormatError(
            f"{folder} is not an atlas folder: {', '.join(missing)} missing. Point to a folder "
            "with annotation.tiff, structures.json and metadata.json (BrainGlobe format)."
        )
    try:
        annotation: np.ndarray[Any, Any]
        try:  # uncompressed, contiguous (as atlasmith writes them): no copy in memory
            annotation = tifffile.memmap(paths[0], mode="r")
        except ValueError:
            annotation = tifffile.imread(paths[0])
        structures = json.loads(paths[1].read_text(encoding="utf-8"))
        resolution = json.loads(paths[2].read_text(encoding="utf-8"))["resolution"]
    except (OSError, ValueError, KeyError) as err:
        raise AtlasFormatError(f"cannot read the atlas folder {folder}: {err}") from err
    values = tuple(float(r) for r in np.broadcast_to(np.asarray(resolution, float), (3,)))
    return annotation, StructureTree.from_list(structures), (values[0], values[1], values[2])


def meshes_for_folder(
    folder: Path,
    out_dir: Path,
    params: MeshParameters = MeshParameters(),  # noqa: B008 - frozen, so safe as a default
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> dict[int, Path]:
    """Regenerate the meshes of an atlas folder into ``out_dir`` (see generate_meshes)."""
    annotation, tree, resolution = read_atlas_inputs(folder)
    return generate_meshes(
        annotation,
        tree,
        resolution,
        out_dir,
        params,
        workers,
        scheduler,
        progress,
        overwrite=overwrite,
    )
