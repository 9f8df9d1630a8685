"""Build an atlas package: atlas script -> checked inputs -> BrainGlobe v1.2 folder + tar.gz.

The steps, each a small function:

1. :func:`load_raw_atlas` runs the script's loaders into a :class:`RawAtlas` (source
   orientation, any dtype).
2. :func:`prepare_inputs` checks every input before anything is written (shapes, dtypes, NaN,
   label values, hemispheres, the structure tree, labels without a structure), converts dtypes
   safely, drops structures without voxels, and reorients the stacks to "asr": an
   :class:`AtlasInputs`.
3. :func:`write_package` writes the folder into a temporary folder next to the output
   (stacks, ``structures.json``/``.csv``, ``metadata.json``, ``README.txt``, ``meshes/``,
   ``preview.png`` when :mod:`atlasmith.previews` is available, ``manifest.json``), validates it
   as a gate, makes the deterministic archive, and only then renames both into place. On any
   failure the temporary folder is removed: nothing half-written is left behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._fs import replace_path
from atlasmith.config import source_date_epoch
from atlasmith.errors import (
    AtlasExistsError,
    ConfigError,
    HierarchyError,
    ScriptError,
    ValidationError,
)
from atlasmith.hierarchy import Structure, StructureTree
from atlasmith.metadata import METADATA_KEYS, AtlasMetadata, check_citation
from atlasmith.names import atlas_name, check_base_name, folder_name
from atlasmith.validation import ValidationReport, require_valid, validate_folder

__all__ = [
    "AtlasInputs",
    "BuildResult",
    "RawAtlas",
    "build_atlas",
    "load_raw_atlas",
    "prepare_inputs",
    "write_package",
]

Array = npt.NDArray[Any]
Progress = Callable[[str, int, int], None]
"""Progress callback: ``(step, done, total)``."""

_UINT32_MAX = 2**32 - 1
# README.txt lists BrainGlobe's metadata keys (not other extra keys) plus the data's licence
_README_KEYS = (*METADATA_KEYS, "license")
_UINT16_MAX = 2**16 - 1


@dataclass(frozen=True)
class RawAtlas:
    """Everything a package is made of, as the packager supplies it (source orientation).

    ``resolution`` is in "asr" axis order (as BrainGlobe's ``wrapup_atlas_from_data`` expects);
    ``meshes`` are supplied mesh files (um, source orientation; voxel units when
    ``scale_meshes``, multiplied by the source-order resolution, or by
    ``mesh_source_resolution`` when given) or None to generate them from the annotation.
    """

    name: str
    citation: str
    atlas_link: str
    species: str
    packager: str | None
    orientation: str
    root_id: int
    resolution: tuple[float, float, float]
    minor_version: int | str
    reference: Any
    annotation: Any
    structures: Any
    hemispheres: Any = None
    additional_references: Mapping[str, Any] = field(default_factory=dict)
    meshes: Mapping[int, Path] | None = None
    scale_meshes: bool = False
    mesh_source_resolution: tuple[float, ...] | None = None
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AtlasInputs:
    """Checked inputs in the package format: "asr", uint16/uint32/uint8, a valid tree."""

    metadata: AtlasMetadata
    tree: StructureTree
    reference: Array
    annotation: Array
    hemispheres: Array | None
    additional_references: Mapping[str, Array]
    meshes: Mapping[int, Path] | None
    mesh_transform: tuple[str, Array, Array]  # (source orientation, source extent um, scale)
    removed: tuple[Structure, ...]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced."""

    folder: Path
    archive: Path | None
    sha256: str | None
    removed: tuple[Structure, ...]
    report: ValidationReport


# --- 1. the script's loaders -----------------------------------------------------------


def load_raw_atlas(script: Any, ctx: Any) -> RawAtlas:
    """Run an :class:`~atlasmith.script.AtlasScript`'s loaders for one context."""

    def optional(loader: str, default: Any) -> Any:
        return script.call(loader, ctx) if script.has(loader) else default

    return RawAtlas(
        name=script.name,
        citation=script.citation,
        atlas_link=script.atlas_link,
        species=script.species,
        packager=script.packager,
        orientation=script.orientation,
        root_id=script.root_id,
        resolution=ctx.resolution,
        minor_version=script.minor_version,
        reference=script.call("load_reference", ctx),
        annotation=script.call("load_annotation", ctx),
        structures=script.call("load_structures", ctx),
        hemispheres=optional("load_hemispheres", None),
        additional_references=optional("load_additional_references", {}) or {},
        meshes=optional("load_meshes", None),
        extra_metadata={"license": script.license} if script.license else {},
    )


# --- 2. checks and conversions ---------------------------------------------------------


def _bad_stack(name: str, problem: str) -> ValidationError:
    return ValidationError(f"input {name}: {problem}. Fix the loader that returns it.")


def _as_3d(stack: Any, name: str) -> Array:
    if isinstance(stack, str | Path):
        import tifffile

        stack = tifffile.imread(stack)
    array = np.asarray(stack)
    if array.ndim != 3 or 0 in array.shape:
        raise _bad_stack(name, f"expected a non-empty 3D array, got shape {array.shape}")
    if array.dtype.kind not in "buif":
        raise _bad_stack(name, f"expected numbers, got dtype {array.dtype}")
    return array


def as_reference(stack: Any, name: str = "reference") -> Array:
    """Convert an intensity stack to uint16 safely.

    Integers in 0..65535 are kept as they are; floats (and integers outside that range) are
    rescaled linearly from their min..max onto 0..65535. NaN or infinite values are an error.
    """
    array = _as_3d(stack, name)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise _bad_stack(name, f"{bad} voxel(s) are NaN or infinite; expected finite values")
    low, high = array.min(), array.max()
    if array.dtype.kind in "bui" and low >= 0 and high <= _UINT16_MAX:
        return array.astype(np.uint16, copy=False)
    if high == low:
        return np.zeros(array.shape, np.uint16)
    scaled = (array.astype(np.float64) - float(low)) * (_UINT16_MAX / (float(high) - float(low)))
    return np.rint(scaled).astype(np.uint16)


def _integral(array: Array) -> bool:
    return bool(np.isfinite(array).all() and np.array_equal(array, np.floor(array)))


def _as_labels(stack: Any, name: str, maximum: int, dtype: type[np.unsignedinteger[Any]]) -> Array:
    array = _as_3d(stack, name)
    if array.dtype.kind == "f" and not _integral(array):
        raise _bad_stack(name, "has non-integer (or NaN) values; labels must be integers")
    low, high = array.min(), array.max()
    if low < 0 or high > maximum:
        raise _bad_stack(name, f"values span {low}..{high}; expected integers in 0..{maximum}")
    return array.astype(dtype, copy=False)


def as_annotation(stack: Any) -> Array:
    """Convert a label volume to uint32; non-integral, negative or too large values raise."""
    array = _as_labels(stack, "annotation", _UINT32_MAX, np.uint32)
    if not array.any():
        raise _bad_stack("annotation", "is empty (every voxel is 0); expected labelled voxels")
    return array


def as_hemispheres(stack: Any) -> Array:
    """Convert a hemispheres stack to uint8; values other than 0, 1 (left), 2 (right) raise."""
    array = _as_labels(stack, "hemispheres", 2**8 - 1, np.uint8)
    values = np.flatnonzero(np.bincount(array.ravel()))
    if values.max() > 2:
        raise _bad_stack(
            "hemispheres", f"has values {values.tolist()}; expected 0, 1 (left) and 2 (right)"
        )
    return array


def _check_shapes(stacks: Mapping[str, Array]) -> None:
    shapes = {name: a.shape for name, a in stacks.items()}
    if len(set(shapes.values())) > 1:
        raise ValidationError(
            f"input stacks differ in shape: {shapes}. Reference, annotation, hemispheres and "
            "additional references must cover the same voxel grid."
        )


def _tree(raw: RawAtlas, annotation: Array) -> tuple[StructureTree, tuple[Structure, ...]]:
    """Validate the structures, check every label has one, drop those without voxels."""
    tree = StructureTree.from_list(raw.structures)
    if tree.root.id != raw.root_id:
        raise HierarchyError(
            f"ROOT_ID is {raw.root_id} but the root of the structure list is "
            f"{tree.root.acronym!r} ({tree.root.id}). Make them agree."
        )
    compact = np.asarray(tree.compact(annotation))
    unknown = (compact == 0) & (annotation != 0)
    if unknown.any():
        labels = np.unique(annotation[unknown]).tolist()
        raise ValidationError(
            f"annotation labels {labels[:20]} ({len(labels)} in all) have no structure in the "
            "structure list. Add them to the structures, or set those voxels to 0."
        )
    present = np.flatnonzero(np.bincount(compact.ravel(), minlength=len(tree) + 1)[1:])
    kept, removed = tree.present(tree.ids[present].tolist())
    return kept, tuple(removed)


def _metadata(
    raw: RawAtlas, shape: tuple[int, ...], symmetric: bool, refs: Sequence[str]
) -> AtlasMetadata:
    check_base_name(raw.name, "atlas name")
    check_citation(raw.citation, "citation")
    return AtlasMetadata.from_dict(
        {
            "name": raw.name,
            "citation": raw.citation,
            "atlas_link": raw.atlas_link,
            "species": raw.species,
            "symmetric": symmetric,
            "resolution": [float(r) for r in raw.resolution],
            "orientation": "asr",
            "version": f"1.{raw.minor_version}",
            "shape": [int(s) for s in shape],
            "additional_references": list(refs),
            "atlas_packager": raw.packager,
            **dict(raw.extra_metadata),
        }
    )


def _mesh_transform(raw: RawAtlas, source_shape: tuple[int, ...]) -> tuple[str, Array, Array]:
    """Source orientation, source extent (um, voxel centres) and the scale of supplied meshes."""
    from atlasmith.orientation import axis_map

    order, _ = axis_map(raw.orientation, "asr")
    res_source = np.empty(3)
    res_source[list(order)] = raw.resolution  # asr axis k is source axis order[k]
    if raw.mesh_source_resolution is not None:
        res_source = np.asarray(raw.mesh_source_resolution, dtype=np.float64)
    extent = (np.asarray(source_shape) - 1) * res_source
    scale = res_source if raw.scale_meshes else np.ones(3)
    return raw.orientation, extent, scale


def prepare_inputs(raw: RawAtlas) -> AtlasInputs:
    """Check and convert every input; raise a specific error on the first problem.

    Raises
    ------
    ValidationError
        Bad stacks (shape, dtype, NaN, labels, hemisphere values, labels without structure).
    HierarchyError
        A structure list that breaks the tree rules, or a ROOT_ID that is not its root.
    ScriptError, MetadataError, OrientationError
        Bad constants (name, citation, resolution, orientation).
    """
    from atlasmith.orientation import check_origin, reorient_stack
    from atlasmith.script import as_resolution

    as_resolution(list(raw.resolution), "resolution")
    check_origin(raw.orientation)
    stacks = {"reference": as_reference(raw.reference), "annotation": as_annotation(raw.annotation)}
    if raw.hemispheres is not None:
        stacks["hemispheres"] = as_hemispheres(raw.hemispheres)
    refs = {
        k: as_reference(v, f"additional reference {k!r}")
        for k, v in raw.additional_references.items()
    }
    _check_shapes({**stacks, **refs})
    tree, removed = _tree(raw, stacks["annotation"])

    def asr(a: Array) -> Array:
        return np.ascontiguousarray(reorient_stack(a, raw.orientation, "asr"))

    annotation = asr(stacks["annotation"])
    return AtlasInputs(
        metadata=_metadata(raw, annotation.shape, raw.hemispheres is None, list(refs)),
        tree=tree,
        reference=asr(stacks["reference"]),
        annotation=annotation,
        hemispheres=asr(stacks["hemispheres"]) if "hemispheres" in stacks else None,
        additional_references={k: asr(v) for k, v in refs.items()},
        meshes=None if raw.meshes is None else {int(k): Path(v) for k, v in raw.meshes.items()},
        mesh_transform=_mesh_transform(raw, stacks["annotation"].shape),
        removed=removed,
    )


# --- 3. writing ------------------------------------------------------------------------


def _write_tiff(path: Path, array: Array) -> None:
    import tifffile

    tifffile.imwrite(path, np.ascontiguousarray(array))  # uncompressed, contiguous


def structures_csv(tree: StructureTree) -> str:
    """``structures.csv`` as BrainGlobe writes it (sorted by name, parent id as a float)."""
    import pandas as pd

    rows = [
        {
            "acronym": s.acronym,
            "id": s.id,
            "name": s.name,
            "structure_id_path": "/" + "".join(f"{i}/" for i in s.structure_id_path),
            "parent_structure_id": s.parent_id,
        }
        for s in tree.structures
    ]
    frame = pd.DataFrame(rows).astype({"parent_structure_id": "float64"})
    return str(frame.sort_values("name").to_csv(index=False, lineterminator="\n"))


def _generated_on() -> str:
    epoch = source_date_epoch()
    if epoch is None:
        return ""
    date = datetime.fromtimestamp(epoch, tz=UTC).strftime("%d/%m/%Y")
    return f"Generated on: {date}\n"


def readme_text(metadata: AtlasMetadata, tree: StructureTree) -> str:
    """``README.txt`` in BrainGlobe's layout; the date only when SOURCE_DATE_EPOCH is set."""
    fields = {k: v for k, v in metadata.to_dict().items() if k in _README_KEYS}
    fields["resolution"], fields["shape"] = metadata.resolution, metadata.shape
    lines = "".join(f"    {key}:   {value}\n" for key, value in fields.items())
    return (
        f"-- BRAINGLOBE ATLAS --\n{_generated_on()}\n------------------------------\n\n\n"
        f"{lines}\n\n\n------------------------------\n\n\n\n\n\n"
        f"-- BRAIN STRUCTURES TREE --\n{tree.to_treelib().show(stdout=False)}"
    )


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _write_files(inputs: AtlasInputs, folder: Path) -> None:
    _write_tiff(folder / "reference.tiff", inputs.reference)
    _write_tiff(folder / "annotation.tiff", inputs.annotation)
    if inputs.hemispheres is not None:
        _write_tiff(folder / "hemispheres.tiff", inputs.hemispheres)
    for name, stack in inputs.additional_references.items():
        _write_tiff(folder / f"{name}.tiff", stack)
    _write_text(folder / "structures.json", json.dumps(inputs.tree.to_list()))
    _write_text(folder / "metadata.json", json.dumps(inputs.metadata.to_dict()))
    _write_text(folder / "structures.csv", structures_csv(inputs.tree))
    _write_text(folder / "README.txt", readme_text(inputs.metadata, inputs.tree))


def _copy_supplied_meshes(inputs: AtlasInputs, out_dir: Path) -> dict[int, Path]:
    """Scale and reorient supplied meshes to "asr" um (voxel i at i * resolution)."""
    import meshio

    from atlasmith.orientation import reorient_points

    assert inputs.meshes is not None
    orientation, extent, scale = inputs.mesh_transform
    written = {}
    for sid, path in sorted(inputs.meshes.items()):
        if sid not in inputs.tree:
            continue  # a structure dropped for having no voxels
        mesh = meshio.read(path)
        mesh.points = reorient_points(np.asarray(mesh.points) * scale, orientation, extent.tolist())
        target = out_dir / f"{sid}.obj"
        meshio.write(target, mesh, file_format="obj")
        written[sid] = target
    return written


def _mesh_parameters(options: Mapping[str, Any] | Any | None) -> Any:
    from atlasmith.meshes import MeshParameters

    if options is None or isinstance(options, MeshParameters):
        return options or MeshParameters()
    try:
        return MeshParameters(**dict(options))
    except (TypeError, ConfigError) as err:
        names = ", ".join(item.name for item in fields(MeshParameters))
        raise ScriptError(
            f"MESH_PARAMETERS {dict(options)!r} are not valid: {err}. Its keys are among: {names}."
        ) from err


def _write_meshes(
    inputs: AtlasInputs,
    folder: Path,
    params: Any,
    workers: int | None,
    scheduler: str | None,
    progress: Progress | None,
) -> dict[str, Any]:
    out = folder / "meshes"
    out.mkdir()
    if inputs.meshes is not None:
        _copy_supplied_meshes(inputs, out)
        return {"supplied": True}
    from atlasmith.meshes import generate_meshes

    def on_mesh(done: int, total: int) -> None:
        if progress is not None:
            progress("meshes", done, total)

    resolution = inputs.metadata.resolution
    generate_meshes(
        inputs.annotation, inputs.tree, resolution, out, params, workers, scheduler, on_mesh
    )
    return dict(params.to_dict())


def _write_preview(folder: Path) -> None:
    try:
        from atlasmith.previews import write_package_preview
    except ImportError:  # previews are optional
        return
    write_package_preview(folder)


def _check_free(targets: Sequence[Path], overwrite: bool) -> None:
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise AtlasExistsError(
            f"output already exists: {', '.join(map(str, existing))}. Remove it, choose another "
            "--out folder, or pass --overwrite to replace it."
        )


def write_package(
    inputs: AtlasInputs,
    out_dir: str | Path,
    build_info: Mapping[str, Any] | None = None,
    mesh_parameters: Mapping[str, Any] | Any | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    compress: bool = True,
    progress: Progress | None = None,
) -> BuildResult:
    """Write, validate and archive a package; rename it into ``out_dir`` only when complete.

    Raises
    ------
    AtlasExistsError
        The folder (or archive) exists and ``overwrite`` is False.
    ValidationError
        The written package fails a check (the error carries the report).
    """
    from atlasmith.package import make_archive, sha256_file, write_manifest

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = inputs.metadata.folder_name
    final, final_archive = out / name, out / f"{name}.tar.gz"
    _check_free([final, final_archive] if compress else [final], overwrite)
    params = _mesh_parameters(mesh_parameters) if inputs.meshes is None else None
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}.build-"))

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    try:
        folder = staging / name
        folder.mkdir()
        step("writing stacks and tables")
        _write_files(inputs, folder)
        step("meshes")
        with ThreadPoolExecutor(1) as background:  # the preview overlaps mesh generation
            preview = background.submit(_write_preview, folder)
            meshes = _write_meshes(inputs, folder, params, workers, scheduler, progress)
            preview.result()
        info = {**dict(build_info or {}), "meshes": meshes}
        info["removed_structures"] = [s.id for s in inputs.removed]
        write_manifest(folder, info)
        step("validating and archiving" if compress else "validating")
        with ThreadPoolExecutor(1) as background:  # gzip (zlib frees the GIL) overlaps checks
            archiving = background.submit(make_archive, folder, staging) if compress else None
            checked = validate_folder(folder)
            archive = archiving.result() if archiving is not None else None
        report = ValidationReport(checked.results, str(final))  # named as it will be
        require_valid(report)
        _check_free([final, final_archive] if compress else [final], overwrite)
        replace_path(folder, final)
        if archive is not None:
            replace_path(archive, final_archive)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    digest = sha256_file(final_archive) if compress else None
    return BuildResult(final, final_archive if compress else None, digest, inputs.removed, report)


@contextmanager
def rich_progress() -> Iterator[Progress]:
    """A rich progress display, one line per build step; yields the callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn
    from rich.progress import Progress as RichProgress

    display = RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()
    )
    steps: list[tuple[str, Any]] = []

    def update(step: str, done: int, total: int) -> None:
        if not steps or steps[-1][0] != step:
            if steps:
                display.update(steps[-1][1], completed=1, total=1)
            steps.append((step, display.add_task(step, total=total or None)))
        display.update(steps[-1][1], completed=done, total=total or None)

    with display:
        yield update
        if steps:
            display.update(steps[-1][1], completed=1, total=1)


# --- the whole build -------------------------------------------------------------------


def build_atlas(
    script: str | Path,
    out_dir: str | Path = ".",
    source_dir: str | Path | None = None,
    resolution: float | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> BuildResult:
    """Build an atlas script into ``out_dir/<name>_<res>um_v1.<minor>/`` and its ``.tar.gz``.

    Parameters
    ----------
    script : str or Path
        The atlas script (see :mod:`atlasmith.script`).
    out_dir : str or Path
        Where the folder and the archive go (default: the current folder).
    source_dir : str or Path, optional
        Folder holding the script's declared sources (e.g. ``../shared/data``).
    resolution : float, optional
        One of the script's ``RESOLUTIONS`` (axis 0, um); default: its first.
    workers, scheduler : optional
        Mesh generation parallelism: local processes, or a dask.distributed scheduler address.
        They never change the output bytes.
    overwrite : bool
        Replace an existing output instead of raising AtlasExistsError.
    progress : callable, optional
        Called with ``(step, done, total)`` as the build goes.

    Returns
    -------
    BuildResult
        The folder, the archive, its sha256, the structures dropped for having no voxels and the
        validation report.

    Examples
    --------
    >>> result = build_atlas("atlas_scripts/allen_mouse.py", out_dir="build")  # doctest: +SKIP
    >>> result.archive.name  # doctest: +SKIP
    'allen_mouse_100um_v1.2.tar.gz'
    """
    from atlasmith.package import sha256_file
    from atlasmith.script import load_script, make_context

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    step("loading script")
    parsed = load_script(script)
    res = parsed.pick_resolution(resolution)
    out = Path(out_dir)
    folder = folder_name(atlas_name(parsed.name, res[0]), parsed.version)
    _check_free([out / folder, out / f"{folder}.tar.gz"], overwrite)
    ctx = make_context(parsed, res, None if source_dir is None else Path(source_dir))
    step("loading sources")
    raw = load_raw_atlas(parsed, ctx)
    step("checking inputs")
    inputs = prepare_inputs(raw)
    info = {
        "script": {"name": parsed.path.name, "sha256": sha256_file(parsed.path)},
        "sources": {
            key: {"path": parsed.sources[key].path, "sha256": parsed.sources[key].sha256}
            for key in sorted(ctx.resolver.resolved)
        },
        "resolution": list(res),
    }
    return write_package(
        inputs,
        out,
        info,
        parsed.mesh_parameters or None,
        workers,
        scheduler,
        overwrite,
        progress=progress,
    )
