"""The engine's driver: from an annotation to one OBJ per structure, stage by stage.

Compact labels -> closing (``_closing``) -> shared surface in slabs (``_surface``) -> optional
quadric decimation (``decimation``) -> per structure: face selection, smoothing
(``_smoothing``) and OBJ text (``obj``), and optionally the same mesh as a Draco fragment
for BrainGlobe 3 (``formats._precomputed``), each stage on the runner (``_runner``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from atlasmith._types import BoolArray, Float32Array as FloatArray, IntArray
from atlasmith.errors import AtlasFormatError, ConfigError
from atlasmith.formats._precomputed import encode_mesh
from atlasmith.meshes._closing import close_structures, label_counts_after
from atlasmith.meshes._parameters import DECIMALS, MeshParameters
from atlasmith.meshes._runner import Runner
from atlasmith.meshes._smoothing import smooth, smoothing_iterations
from atlasmith.meshes._surface import (
    SharedSurface,
    SlabInputs,
    block_size,
    counted_compact_labels,
    slab_surfaces,
    stitch,
    unknown_labels_error,
)
from atlasmith.meshes.decimation import decimate, fit_budget, used_vertices
from atlasmith.meshes.obj import apart_when_rounded, locality_order, obj_bytes
from atlasmith.statistics import label_counts, row_blocks

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.hierarchy import StructureTree

__all__ = ["MeshBlob", "check_annotation", "iter_meshes"]

_TASKS_PER_WORKER = 6  # the closing's tasks per worker; a chunk of structures holds at most a
# worker's share of the work over this (_chunks)
_ORDER_CELL_VOXELS = 1.0  # cells of the faces' order in the OBJ text (obj.locality_order)


class _Patches(NamedTuple):
    """The shared surface with faces grouped by label pair, ready for face selection."""

    points: FloatArray
    faces: npt.NDArray[np.int32] | IntArray  # int32 where the vertices allow (half the size)
    first: IntArray  # label on the side the normals point to, per patch
    second: IntArray
    starts: IntArray
    stops: IntArray


def _any_label(annotation: np.ndarray[Any, Any]) -> bool:
    """Whether any voxel is labelled, reading as few rows as needed (memory-mapped stacks)."""
    return any(bool(np.any(part)) for _, part in row_blocks(annotation))


def check_annotation(annotation: np.ndarray[Any, Any]) -> None:
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


def _group(surface: SharedSurface) -> _Patches:
    """Sort faces by label pair; each run of one pair is a patch."""
    pairs = surface.pairs
    key = pairs[:, 0] * (int(pairs.max()) + 1) + pairs[:, 1]
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], len(key)]
    first, second = pairs[order[starts], 0], pairs[order[starts], 1]
    # shared by every structure task (a copy on each dask worker): 0.9 GB less at 10 um
    narrow = len(surface.points) <= np.iinfo(np.int32).max
    faces = surface.faces.astype(np.int32)[order] if narrow else surface.faces[order]
    return _Patches(surface.points, faces, first, second, starts, stops)


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
    faces = patches.faces[index].astype(np.int64, copy=False)  # a new array either way
    # Normals point towards the first label: flip the patches where the structure is there.
    flip = np.repeat(inside_first[chosen], patches.stops[chosen] - patches.starts[chosen])
    faces[flip] = faces[flip][:, ::-1]
    used = np.flatnonzero(used_vertices(faces, len(patches.points)))
    remap = np.empty(len(patches.points), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return patches.points[used], remap[faces]


class _Output(NamedTuple):
    """What every structure task needs (shared by the workers)."""

    patches: _Patches
    members: BoolArray  # per structure (row), which labels belong to it
    scale: npt.NDArray[np.float64]
    params: MeshParameters
    iterations: int  # of smoothing
    ids: IntArray
    target: str | None  # folder to write into (local workers), or None to return bytes
    draco_target: str | None  # folder for Draco fragments (local workers), or None
    draco: bool  # also encode each mesh as Draco (BrainGlobe 3)
    decimals: int  # of the coordinates written


#: A mesh made on a worker: the OBJ text, then the Draco fragment and its multi-LOD index
#: (empty without Draco); or, when the worker wrote the files itself, the OBJ's size.
MeshBlob = tuple[bytes, bytes, bytes] | int


def _structure_mesh(row: int, shared: _Output) -> tuple[npt.NDArray[Any], IntArray]:
    """The mesh of the structure at ``row``, smoothed and within its budget, in micrometres
    and in its OBJ order.

    A mesh the budget decimates is smoothed as the surface numbers its vertices and put in
    order once decimated (ordering its full mesh first cost 9 % of the CPU at 100 um); a mesh
    it leaves whole is made as without a budget: put in order, then smoothed (the smoothing's
    sums follow the vertices' order, so its bytes would change otherwise)."""
    points, faces = _select(shared.patches, shared.members[row])
    scale = float(shared.scale.min())
    if shared.params.budget_um > 0:
        smoothed = smooth(points, faces, shared.iterations) if shared.iterations else points
        scaled = smoothed * shared.scale.astype(np.float32)  # float32, as the decimation
        fewer = fit_budget(scaled, faces, shared.params.budget_um, 0.5 * scale)
        if fewer[1] is not faces:
            return locality_order(*fewer, _ORDER_CELL_VOXELS * scale)
    # the OBJ's order, from where the shared surface put the vertices: smoothing then moves
    # them without changing a face
    points, faces = locality_order(points, faces, _ORDER_CELL_VOXELS)
    if shared.iterations:
        points = smooth(points, faces, shared.iterations)
    return points * shared.scale, faces


def _structure_chunk(rows: Sequence[int], shared: _Output) -> list[MeshBlob]:
    """The meshes of the structures at the given rows of the membership table, each smoothed
    on its own: written into ``shared.target`` (``<id>.obj``; Draco ``<id>`` and
    ``<id>.index`` into ``shared.draco_target``) with their sizes returned, or returned as
    bytes."""
    out: list[MeshBlob] = []
    for row in rows:
        scaled, faces = _structure_mesh(row, shared)
        decimals = _decimals(scaled, faces, shared)
        blob = obj_bytes(scaled, faces, decimals)
        fragment, index = b"", b""
        if shared.draco:  # the very vertices the OBJ holds: both formats carry one mesh
            unit = 10.0**decimals
            fragment, index = encode_mesh(np.rint(scaled * unit) / unit, faces)
        if shared.target is None:
            out.append((blob, fragment, index))
            continue
        sid = int(shared.ids[row])
        Path(shared.target, f"{sid}.obj").write_bytes(blob)
        if shared.draco_target is not None:
            Path(shared.draco_target, str(sid)).write_bytes(fragment)
            Path(shared.draco_target, f"{sid}.index").write_bytes(index)
        out.append(len(blob))
    return out


def _decimals(points: npt.NDArray[Any], faces: IntArray, shared: _Output) -> int:
    """The decimals of a mesh's coordinates: the parameters' when set; by default one fewer
    than the resolution's (steps of a tenth of a voxel) where that keeps its vertices apart
    and its faces of some area (at 100 um, 814 of the Allen annotation's 837 meshes with
    ``budget_um`` 200, for 11 % fewer gzipped bytes), else the resolution's."""
    decimals = shared.decimals
    if shared.params.decimals is not None or decimals <= DECIMALS[0]:
        return decimals
    return decimals - 1 if apart_when_rounded(points, faces, decimals - 1) else decimals


def _resolution(resolution: float | Sequence[float]) -> npt.NDArray[np.float64]:
    """Voxel size in micrometres per axis (asr order)."""
    values = np.broadcast_to(np.asarray(resolution, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ConfigError(f"resolution {resolution!r} is not valid: expected positive micrometres.")
    return values


def membership(tree: StructureTree, present_labels: IntArray) -> tuple[IntArray, BoolArray]:
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


def _chunks(work: npt.NDArray[np.float64], workers: int) -> list[list[int]]:
    """Rows in chunks, the largest work first, each chunk about the work left over twice the
    workers (at most 1/_TASKS_PER_WORKER of a worker's share, at least an eighth of that),
    so the last chunks are small and the workers finish together (at 100 um with a budget,
    two workers finished 0.10 to 0.24 s apart with 12 chunks of equal work, 0.03 to 0.12 s
    apart so). No chunk holds more work than one of those: a dask worker's results stay
    as small."""
    order = np.argsort(-work, kind="stable")
    ranked = work[order]
    left = float(ranked.sum())
    most = left / (workers * _TASKS_PER_WORKER)
    chunks: list[list[int]] = []
    start = 0
    while start < len(order):
        want = min(most, max(most / 8.0, left / (2.0 * workers)))
        # the rows from start whose running work stays within ``want`` (one at least)
        stop = start + max(1, int(np.searchsorted(np.cumsum(ranked[start:]), want, "right")))
        chunks.append(sorted(order[start:stop].tolist()))
        left -= float(ranked[start:stop].sum())
        start = stop
    return chunks


def _import_for_workers(params: MeshParameters, draco: bool) -> None:
    """Import here the libraries the structure tasks will: local workers are forked from
    this process and inherit them (fast-simplification took 0.14 s to import in every
    worker, DracoPy 0.08 s)."""
    if params.budget_um > 0:
        import fast_simplification  # noqa: F401
    if draco:
        import DracoPy  # noqa: F401


def iter_meshes(
    annotation: np.ndarray[Any, Any],
    tree: StructureTree,
    resolution: float | Sequence[float],
    params: MeshParameters,
    runner: Runner,
    target: Path | None = None,
    draco_target: Path | None = None,
    draco: bool = False,
    counted: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, int, MeshBlob]]:
    """Yield ``(structure id, count, blob)`` for each structure with voxels, in tree order;
    ``count`` is how many meshes there are in all, ``blob`` the OBJ bytes and, with
    ``draco``, the Draco fragment and index. With ``target`` (a folder on this machine) local
    workers write ``<id>.obj`` there (and the Draco files into ``draco_target``) themselves,
    and the OBJ's size is yielded instead of the bytes. ``counted(count)`` is called as soon
    as the count is known, before the closing and the surface (which take most of the time)."""
    check_annotation(annotation)
    scale = _resolution(resolution)
    block = block_size(params.cluster_um, scale)
    volume, compacted = annotation, False
    if params.closing:  # closing needs every structure's voxels: compact labels in memory
        (volume, counts), compacted = counted_compact_labels(annotation, tree), True
    else:
        counts, unknown = label_counts(annotation, tree)
        if unknown:
            raise unknown_labels_error(unknown)
    kept, members = membership(tree, np.flatnonzero(counts[1:]) + 1)
    if counted is not None:
        counted(len(kept))
    if params.closing:
        tasks = runner.workers * _TASKS_PER_WORKER
        closed = close_structures(volume, members, params.closing, runner, tasks)
        volume, members, counts = closed.labels, closed.members, label_counts_after(counts, closed)
        del closed
    sizes = _structure_sizes(members, counts)
    small = _small(members, sizes, block)
    inputs = SlabInputs(volume, compacted, tree, block, small)
    del volume
    parts = slab_surfaces(inputs, runner)
    del inputs  # the volume (2.4 GB at 10 um) goes before the slabs' shares are stitched
    surface = stitch(parts)
    surface = decimate(surface, scale, params.deviation_um, params.decimate, small, runner)
    patches = _group(surface)
    del surface  # its faces and pairs, sorted into the patches (3 GB at 10 um)
    # a mesh's work grows with its surface: about its voxels to the power 2/3
    chunks = _chunks(sizes ** (2 / 3), runner.workers)
    ids = tree.ids[kept - 1]
    local = target is not None and not runner.remote
    smoothing_um = params.smoothing_um or 0.0  # never None once the parameters exist
    iterations = smoothing_iterations(smoothing_um, block * float(scale.min()))
    target_name = str(target) if local else None
    draco_name = str(draco_target) if local and draco and draco_target is not None else None
    decimals = params.decimals_for(float(scale.min()))
    if not runner.remote:
        _import_for_workers(params, draco)
    shared = _Output(
        patches, members, scale, params, iterations, ids, target_name, draco_name, draco, decimals
    )
    done: dict[int, MeshBlob] = {}
    position = 0
    for rows, blobs in zip(chunks, runner.map(_structure_chunk, chunks, shared), strict=True):
        done.update(zip(rows, blobs, strict=True))
        while position in done:
            yield int(ids[position]), len(kept), done.pop(position)
            position += 1
