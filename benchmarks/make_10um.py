"""The 10 um Allen atlas on disk: Allen's 25 um annotation upsampled 2.5x per axis.

Allen publishes its 10 um annotation, but the project holds only the 25 um file
(``../shared/data/allen_ccf2017_25um/annotation_25.nrrd``), so the 10 um volume is made from it
by nearest-neighbour upsampling: output voxel ``j`` (centre at ``(j + 0.5) * 10`` um) takes the
25 um voxel holding its centre, ``floor((j + 0.5) / 2.5)``; shape ``round(25 um shape * 2.5)``
= (1320, 800, 1140), 1.2 billion voxels, 4.8 GB of uint32.

The reference is derived: no 25 um template is in the project's data, so, as
``atlas_scripts/allen_mouse.py`` makes its 25 um reference, the real 100 um CCFv3 template
(``data/allen_mouse_100um/reference.tiff``) is interpolated 4x (linear,
``scipy.ndimage.zoom(..., grid_mode=True)``), then upsampled 2.5x like the annotation
(uint16, 2.4 GB). Both steps are deterministic.

Written under ``--out`` (default ``/work/scale10``), each volume a slab of rows at a time into
memory-mapped files, never whole in memory (each slab's pages are let go once written, so the
process holds the 25 um inputs and a slab or two: measured peak under 1 GB):

* ``inputs/annotation_10um.npy`` and ``inputs/reference_10um.npy``: the build's inputs
  (``np.load(..., mmap_mode="r")``);
* ``allen_mouse_10um_v1.2/``: a v1.2 folder without meshes (uncompressed, contiguous
  ``annotation.tiff`` and ``reference.tiff``, memory-mapped by the reader; BrainGlobe's 840
  structures and the 100 um metadata with the 10 um resolution and shape).

Outputs already made are reused (each is written under a temporary name and renamed).

    .venv/bin/python benchmarks/make_10um.py [--out /work/scale10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._pages import release_rows
from atlasmith.formats import write_folder
from atlasmith.hierarchy import StructureTree
from atlasmith.metadata import AtlasMetadata

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "allen_mouse_100um"
ANNOTATION_25 = REPO.parent / "shared" / "data" / "allen_ccf2017_25um" / "annotation_25.nrrd"
FACTOR = 2.5
RESOLUTION_UM = 10.0
FOLDER_NAME = "allen_mouse_10um_v1.2"
SLAB_BYTES = 1 << 27  # output bytes per slab (128 MiB): the memory the writer holds at once


def upsampled_shape(shape: tuple[int, ...], factor: float = FACTOR) -> tuple[int, ...]:
    """``round(n * factor)`` per axis."""
    return tuple(round(n * factor) for n in shape)


def nearest_indices(n_in: int, n_out: int, factor: float = FACTOR) -> npt.NDArray[np.intp]:
    """Per output index, the input index whose voxel holds its centre."""
    index = np.floor((np.arange(n_out) + 0.5) / factor).astype(np.intp)
    return np.minimum(index, n_in - 1)


def upsampled_slabs(
    volume: npt.NDArray[Any], factor: float = FACTOR
) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """``(first row, rows)`` of the nearest-neighbour upsampled volume, about SLAB_BYTES at a
    time (one fancy index per axis, so a slab's temporaries are a slab or less)."""
    shape = upsampled_shape(volume.shape, factor)
    index = [nearest_indices(n, m, factor) for n, m in zip(volume.shape, shape, strict=True)]
    rows = max(1, SLAB_BYTES // (shape[1] * shape[2] * volume.itemsize))
    for start in range(0, shape[0], rows):
        part = volume[index[0][start : start + rows]]
        yield start, part[:, index[1]][:, :, index[2]]


def write_slabs(
    targets: list[npt.NDArray[Any]], slabs: Iterator[tuple[int, npt.NDArray[Any]]]
) -> None:
    """Copy each slab into every memory-mapped target, letting its pages go once written (the
    page cache writes them back), so that the process never holds a whole volume."""
    for start, slab in slabs:
        stop = start + len(slab)
        for target in targets:
            target[start:stop] = slab
            release_rows(target, start, stop)
    for target in targets:
        if isinstance(target, np.memmap):
            target.flush()


def annotation_25() -> npt.NDArray[np.uint32]:
    """Allen's 25 um annotation (528, 320, 456), "asr"."""
    import nrrd

    annotation, _ = nrrd.read(str(ANNOTATION_25))
    return np.ascontiguousarray(annotation, dtype=np.uint32)


def reference_25() -> npt.NDArray[np.uint16]:
    """The 25 um reference as atlas_scripts/allen_mouse.py derives it from the 100 um one."""
    import tifffile
    from scipy import ndimage

    reference = tifffile.imread(BUNDLED / "reference.tiff")
    zoomed = ndimage.zoom(reference, 4, order=1, grid_mode=True, mode="nearest")
    return np.ascontiguousarray(zoomed, dtype=np.uint16)


def make_volume(name: str, source: Callable[[], npt.NDArray[Any]], out: Path) -> None:
    """``inputs/<name>_10um.npy`` and the folder's ``<name>.tiff`` from the 25 um volume."""
    import tifffile

    npy = out / "inputs" / f"{name}_10um.npy"
    tiff = out / f"{FOLDER_NAME}.partial" / f"{name}.tiff"
    if npy.is_file() and tiff.is_file():
        return
    volume = source()
    shape, dtype = upsampled_shape(volume.shape), volume.dtype
    npy_tmp, tiff_tmp = (path.with_name(path.name + ".partial") for path in (npy, tiff))
    targets = [
        np.lib.format.open_memmap(npy_tmp, mode="w+", dtype=dtype, shape=shape),
        tifffile.memmap(tiff_tmp, shape=shape, dtype=dtype),
    ]
    write_slabs(targets, upsampled_slabs(volume))
    del targets
    npy_tmp.rename(npy)
    tiff_tmp.rename(tiff)


def write_text_files(folder: Path, shape: tuple[int, ...]) -> None:
    """metadata.json (the 100 um one at 10 um), structures.json/csv, README.txt, meshes/."""
    bundled = AtlasMetadata.from_file(BUNDLED / "metadata.json")
    resolution = (RESOLUTION_UM,) * 3
    metadata = dataclasses.replace(bundled, resolution=resolution, shape=tuple(shape))
    tree = StructureTree.from_list(json.loads((BUNDLED / "structures.json").read_text()))
    write_folder(folder, metadata, tree, {})
    (folder / "meshes").mkdir(exist_ok=True)


def make_10um(out: Path) -> Path:
    """Make (or reuse) the 10 um inputs and folder under ``out``; return the folder."""
    folder = out / FOLDER_NAME
    if (folder / "metadata.json").is_file():
        return folder
    partial = out / f"{FOLDER_NAME}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    (out / "inputs").mkdir(exist_ok=True)
    make_volume("annotation", annotation_25, out)
    make_volume("reference", reference_25, out)
    shape = np.load(out / "inputs" / "annotation_10um.npy", mmap_mode="r").shape
    write_text_files(partial, shape)
    partial.rename(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/scale10"))
    parser.add_argument("--force", action="store_true", help="make everything again")
    args = parser.parse_args()
    if args.force:
        shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    folder = make_10um(args.out)
    print(f"{folder} ready in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
