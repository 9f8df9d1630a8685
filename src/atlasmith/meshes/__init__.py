"""The mesh engine: one closed, smoothed, decimated mesh per structure, from an annotation.

The design (shared surface, face selection, each mesh finished on its own):

1. The annotation becomes compact labels (one per structure, 0 outside), padded by one voxel.
2. Closing (``closing``, default 1): every structure is closed on its own, on bit-packed
   masks in its bounding box, along each axis, which fills its slits and tunnels
   (``_closing``).
   Each voxel a closing adds gets a label for its set of structures, so the labels still
   say, for every structure, which voxels are its.
3. One multi-label surface-nets pass extracts every boundary between two labels once, as a
   shared surface whose faces carry the label pair on their two sides (one vertex per 2x2x2
   cell of voxel centres holding several labels, one quad per pair of differing
   neighbours). It runs in slabs along the first axis, in parallel, with memory bounded by
   the slab size (``_surface``).
4. The shared surface is decimated once: vertices in the same block (``cluster_um``) whose
   cells hold the same set of labels, and that face the same way, are merged; optionally
   (``deviation_um``, ``decimate``) half-edge collapses that keep every boundary where it is
   follow (``_collapse``), in pieces along the first axis that run in parallel, with the
   vertices on the cuts between pieces kept in place.
5. Every structure's mesh (leaf or parent) is the set of faces with exactly one side in
   the structure, oriented so its normals point outwards: closed, and, without closing,
   exactly the union of its descendants. It is then smoothed on its own
   (``_smoothing``), so that it is rounded as a whole, as a mesh made from that
   structure alone would be. Selection, smoothing and OBJ writing run in parallel (local
   processes or a dask.distributed cluster: ``_runner``), and written as OBJ (``obj``).

Coordinates are micrometres in the stacks' axes ("asr"), voxel index ``i`` at
``i * resolution``. The output is byte-identical for the same input and parameters, whatever
the number of workers or the scheduler.

``quality`` measures meshes against their voxels and against reference meshes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from atlasmith._fs import FOLDER_MODE, replace_path, temporary_folder
from atlasmith._types import PathLike, ProgressCallback
from atlasmith.errors import AtlasExistsError
from atlasmith.meshes._parameters import ENGINE, MeshParameters, default_decimals
from atlasmith.meshes._runner import Runner, keep_freed_memory, make_runner

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from atlasmith.formats import AtlasFiles
    from atlasmith.hierarchy import StructureTree

__all__ = [
    "ENGINE",
    "MeshOptions",
    "MeshParameters",
    "Runner",
    "default_decimals",
    "generate_meshes",
    "keep_freed_memory",
    "make_runner",
    "meshes_for_folder",
]


def generate_meshes(
    annotation: np.ndarray[Any, Any],
    tree: StructureTree,
    resolution: float | Sequence[float],
    out_dir: PathLike,
    *,
    params: MeshParameters = MeshParameters(),  # noqa: B008 - frozen, so safe as a default
    workers: int | None = None,
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    draco_dir: PathLike | None = None,
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
        Called as ``progress(done, total)`` after each structure, and as ``progress(0, total)``
        as soon as the structures with voxels are counted (before the long closing and
        surface stages), so a display knows the total from the start.
    overwrite : bool
        Replace ``out_dir`` if it exists and is not empty.
    draco_dir : Path, optional
        Also write each mesh as BrainGlobe 3 / neuroglancer wants it: ``<id>`` (a Draco
        fragment: nanometres, xyz, the OBJ's very vertices) and ``<id>.index`` into this
        folder (which must exist), encoded on the workers as the OBJ text is.

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
    from atlasmith.meshes._engine import iter_meshes  # numpy and scipy: only when meshing

    out = Path(out_dir)
    _check_target(out, overwrite)
    draco = None if draco_dir is None else Path(draco_dir)
    runner = make_runner(workers, scheduler)
    try:
        with temporary_folder(out.parent, f"{out.name}.") as temp:
            written = {}
            counted = None if progress is None else functools.partial(progress, 0)
            made = iter_meshes(
                annotation,
                tree,
                resolution,
                params,
                runner,
                temp,
                draco,
                draco is not None,
                counted,
            )
            for sid, total, blob in made:
                if not isinstance(blob, int):  # made on a dask worker
                    (temp / f"{sid}.obj").write_bytes(blob[0])
                    if draco is not None:
                        (draco / str(sid)).write_bytes(blob[1])
                        (draco / f"{sid}.index").write_bytes(blob[2])
                written[sid] = out / f"{sid}.obj"
                if progress is not None:
                    progress(len(written), total)
            temp.chmod(FOLDER_MODE)
            replace_path(temp, out)
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


class MeshOptions(TypedDict, total=False):
    """The keyword options of :func:`generate_meshes`, for functions that pass them on."""

    params: MeshParameters
    workers: int | None
    scheduler: str | None
    progress: ProgressCallback | None
    overwrite: bool


def meshes_for_folder(
    folder: PathLike | AtlasFiles, out_dir: PathLike, **options: Unpack[MeshOptions]
) -> dict[int, Path]:
    """Regenerate the meshes of an atlas (a folder) into ``out_dir``: its annotation,
    structures and resolution go to :func:`generate_meshes` with ``options``."""
    from atlasmith.formats import open_atlas_files

    atlas = open_atlas_files(folder)
    return generate_meshes(atlas.annotation, atlas.tree, atlas.resolution, out_dir, **options)
