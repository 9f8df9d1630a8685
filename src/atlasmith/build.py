"""Build an atlas package: atlas script -> checked inputs -> BrainGlobe v1.2 folder + tar.gz,
and the same atlas as BrainGlobe 3 components, from one run.

:func:`build_atlas` loads the script and its sources, checks and converts the inputs
(:mod:`atlasmith.inputs`) and calls :func:`write_package`, which writes everything into a
temporary folder next to the output: the v1.2 files, ``meshes/``, ``preview.png``,
``manifest.json``, and (format ``v3``) the BrainGlobe 3 components, whose stacks, masks and
segmentation are written while the meshes are made and whose Draco meshes come from the
mesh engine with the OBJ files. It validates, makes the deterministic archive, and only then
moves the outputs into place. On any failure the temporary folder is removed: nothing
half-written is left behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from atlasmith._fs import check_writable_folder, replace_path, temporary_folder
from atlasmith._pages import release_rows, releasing_reads
from atlasmith._types import PathLike, StepProgress
from atlasmith.errors import AtlasExistsError, ConfigError, ScriptError
from atlasmith.formats import (
    MESHES,
    V3_ROOT,
    V3Atlas,
    V3Layout,
    V3Writer,
    check_v3_free,
    place_v3,
    v3_version,
    write_folder,
)
from atlasmith.hierarchy import Structure
from atlasmith.inputs import AtlasInputs, load_raw_atlas, prepare_inputs
from atlasmith.meshes import MeshParameters, generate_meshes
from atlasmith.names import ARCHIVE_SUFFIX, atlas_name, folder_name
from atlasmith.package import make_archive, sha256_file, write_manifest
from atlasmith.previews import write_package_preview
from atlasmith.script import load_script, make_context
from atlasmith.validation import ValidationReport, require_valid, validate_folder

__all__ = ["FORMATS", "BuildResult", "build_atlas", "parse_formats", "write_package"]

#: The atlas formats a build writes: BrainGlobe v1.2 (folder + archive) and BrainGlobe 3.
FORMATS = ("v1", "v3")


@dataclass(frozen=True)
class BuildResult:
    """What a build produced."""

    folder: Path | None  # None when only v3 was written
    archive: Path | None
    sha256: str | None
    removed: tuple[Structure, ...]
    report: ValidationReport
    v3_manifest: Path | None = None  # the BrainGlobe 3 manifest, when v3 was written


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, ``"v1"``, ``"v3"`` or a sequence of them -> the formats, in FORMATS order.

    Raises
    ------
    ConfigError
        An unknown format name.
    """
    names = [formats] if isinstance(formats, str) else list(formats)
    chosen: set[str] = set()
    for name in names:
        if name == "all":
            chosen.update(FORMATS)
        elif name in FORMATS:
            chosen.add(name)
        else:
            raise ConfigError(f"unknown atlas format {name!r}: choose v1, v3 or all.")
    if not chosen:
        raise ConfigError("no atlas format chosen: choose v1, v3 or all.")
    return tuple(f for f in FORMATS if f in chosen)


def v3_layout(inputs_metadata: Any) -> V3Layout:
    """Where a build's BrainGlobe 3 version goes, relative to ``OUT/brainglobe-atlasapi``."""
    return V3Layout(inputs_metadata.atlas_name, v3_version(inputs_metadata.version))


def _stacks(inputs: AtlasInputs) -> dict[str, Any]:
    """The stacks to write, by name."""
    stacks = {"reference": inputs.reference, "annotation": inputs.annotation}
    if inputs.hemispheres is not None:
        stacks["hemispheres"] = inputs.hemispheres
    return {**stacks, **inputs.additional_references}


def _copy_supplied_meshes(inputs: AtlasInputs, out_dir: Path) -> dict[int, Path]:
    """Scale and reorient supplied meshes to "asr" um (voxel i at i * resolution)."""
    import meshio

    from atlasmith.orientation import reorient_points

    assert inputs.meshes is not None
    if inputs.mesh_transform is None:  # package meshes already (a conversion): copied
        return {
            sid: Path(shutil.copyfile(path, out_dir / f"{sid}.obj"))
            for sid, path in sorted(inputs.meshes.items())
            if sid in inputs.tree
        }
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


def _mesh_parameters(options: Mapping[str, Any] | MeshParameters | None) -> MeshParameters:
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
    params: MeshParameters | None,
    workers: int | None,
    scheduler: str | None,
    progress: StepProgress | None,
    v3: V3Writer | None,
) -> dict[str, Any]:
    out = folder / MESHES
    out.mkdir()
    if inputs.meshes is not None:
        written = _copy_supplied_meshes(inputs, out)
        if v3 is not None:
            from atlasmith.meshes.obj import read_obj

            v3.write_meshes((sid, *read_obj(path)) for sid, path in written.items())
        return {"supplied": True}
    assert params is not None  # set whenever meshes are generated

    def on_mesh(done: int, total: int) -> None:
        if progress is not None:
            progress("meshes", done, total)

    # every structure of the prepared tree has voxels, so each gets a mesh: the count is
    # known now, before the closing and the surface (tens of seconds at 25 um and finer)
    on_mesh(0, len(inputs.tree))
    resolution = inputs.metadata.resolution
    draco = None
    if v3 is not None:
        draco = v3.mesh_folder
        draco.mkdir(parents=True)
    generate_meshes(
        inputs.annotation,
        inputs.tree,
        resolution,
        out,
        params=params,
        workers=workers,
        scheduler=scheduler,
        progress=on_mesh,
        draco_dir=draco,
    )
    if v3 is not None:
        v3.record_meshes()
    return dict(params.to_dict())


def _check_free(targets: Sequence[Path], overwrite: bool) -> None:
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise AtlasExistsError(
            f"output already exists: {', '.join(map(str, existing))}. Remove it, choose another "
            "--out folder, or pass --overwrite to replace it."
        )


def _write_v3_volumes(v3: V3Writer, inputs: AtlasInputs) -> None:
    """The v3 stacks, 4-D masks and segmentation (they need no meshes). Memory-mapped inputs
    are read through ``releasing_reads``: the writer reads every stack whole, in slabs, and
    would leave all their pages mapped (at 10 um 7.2 GB, beside the meshes' memory)."""
    reference, annotation = releasing_reads(inputs.reference), releasing_reads(inputs.annotation)
    hemispheres = None if inputs.hemispheres is None else releasing_reads(inputs.hemispheres)
    references = {k: releasing_reads(v) for k, v in inputs.additional_references.items()}
    v3.write_stacks(reference, annotation, hemispheres, references)
    v3.write_masks(annotation)
    v3.write_segmentation(annotation)


def _write_v1_files(folder: Path, inputs: AtlasInputs) -> None:
    """The v1.2 stacks and tables, a stack at a time: each memory-mapped input's pages are
    let go once it is written (writing maps the whole stack: together 7.2 GB at 10 um)."""
    for name, stack in _stacks(inputs).items():  # the tables are written each time: a few kB
        write_folder(folder, inputs.metadata, inputs.tree, {name: stack})
        release_rows(stack, 0, len(stack))


def _targets(out: Path, name: str, formats: Sequence[str], compress: bool) -> list[Path]:
    """The outputs a build would replace."""
    targets = []
    if "v1" in formats:
        targets.append(out / name)
        if compress:
            targets.append(out / f"{name}{ARCHIVE_SUFFIX}")
    return targets


def write_package(
    inputs: AtlasInputs,
    out_dir: PathLike,
    *,
    build_info: Mapping[str, Any] | None = None,
    mesh_parameters: Mapping[str, Any] | MeshParameters | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    compress: bool = True,
    progress: StepProgress | None = None,
    formats: str | Sequence[str] = FORMATS,
) -> BuildResult:
    """Write, validate and archive a package; move it into ``out_dir`` only when complete.

    ``formats`` (``"v1"``, ``"v3"``, ``"all"`` or a list): v1 writes ``<name>_<res>um_v1.m/``
    and its archive (``compress``) into ``out_dir``; v3 writes BrainGlobe 3's components into
    ``out_dir/brainglobe-atlasapi/`` (version ``3.m``), merged with what is there.

    Raises
    ------
    AtlasExistsError
        An output exists and ``overwrite`` is False.
    ValidationError
        The written package fails a check (the error carries the report).
    """
    chosen = parse_formats(formats)
    out = Path(out_dir)
    name = inputs.metadata.folder_name
    final, final_archive = out / name, out / f"{name}{ARCHIVE_SUFFIX}"
    compress = compress and "v1" in chosen
    v3_root, layout = out / V3_ROOT, v3_layout(inputs.metadata)

    def check_free() -> None:
        _check_free(_targets(out, name, chosen, compress), overwrite)
        if "v3" in chosen:
            check_v3_free(v3_root, layout, overwrite)

    check_free()
    params = _mesh_parameters(mesh_parameters) if inputs.meshes is None else None

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    with temporary_folder(out, f"{name}.build-") as staging:
        folder = staging / name
        folder.mkdir()
        v3 = V3Writer(staging / V3_ROOT, inputs.metadata, inputs.tree) if "v3" in chosen else None
        step("writing stacks and tables")
        _write_v1_files(folder, inputs)
        step("meshes")
        # the preview and the v3 volumes overlap mesh generation
        with ThreadPoolExecutor(2) as background:
            preview = background.submit(write_package_preview, folder)
            volumes = background.submit(_write_v3_volumes, v3, inputs) if v3 else None
            meshes = _write_meshes(inputs, folder, params, workers, scheduler, progress, v3)
            preview.result()
            if volumes is not None:
                volumes.result()
        info = {**dict(build_info or {}), "meshes": meshes}
        info["removed_structures"] = [s.id for s in inputs.removed]
        write_manifest(folder, info)
        manifest = None
        if v3 is not None:
            manifest = v3.finish()
            V3Atlas(manifest).tree  # noqa: B018 - the written manifest and terminology parse
        step("validating and archiving" if compress else "validating")
        with ThreadPoolExecutor(1) as background:  # gzip (zlib frees the GIL) overlaps checks
            archiving = background.submit(make_archive, folder, staging) if compress else None
            checked = validate_folder(folder)
            archive = archiving.result() if archiving is not None else None
        report = ValidationReport(checked.results, str(final))  # named as it will be
        require_valid(report)
        check_free()
        if "v1" in chosen:
            replace_path(folder, final)
        if archive is not None:
            replace_path(archive, final_archive)
        v3_manifest = None
        if v3 is not None:
            references = inputs.metadata.additional_references
            v3_manifest = place_v3(staging / V3_ROOT, layout, references, v3_root, overwrite)
    digest = sha256_file(final_archive) if compress else None
    return BuildResult(
        final if "v1" in chosen else None,
        final_archive if compress else None,
        digest,
        inputs.removed,
        report,
        v3_manifest,
    )


def build_atlas(
    script: PathLike,
    out_dir: PathLike = ".",
    *,
    source_dir: PathLike | None = None,
    resolution: float | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: StepProgress | None = None,
    formats: str | Sequence[str] = FORMATS,
    mesh_overrides: Mapping[str, Any] | None = None,
) -> BuildResult:
    """Build an atlas script into ``out_dir/<name>_<res>um_v1.<minor>/`` and its ``.tar.gz``
    (format v1), and into ``out_dir/brainglobe-atlasapi/`` as BrainGlobe 3 (format v3).

    Parameters
    ----------
    script : str or Path
        The atlas script (see :mod:`atlasmith.script`).
    out_dir : str or Path
        Where the folder and the archive go (default: the current folder).
    source_dir : str or Path, optional
        Folder holding the script's declared sources, under the paths the script declares.
    resolution : float, optional
        One of the script's ``RESOLUTIONS`` (axis 0, um); default: its first.
    workers, scheduler : optional
        Mesh generation parallelism: local processes, or a dask.distributed scheduler address.
        They never change the output bytes.
    overwrite : bool
        Replace an existing output instead of raising AtlasExistsError.
    progress : callable, optional
        Called with ``(step, done, total)`` as the build goes.
    formats : str or sequence of str
        ``"all"`` (default: both), ``"v1"`` or ``"v3"``.
    mesh_overrides : mapping, optional
        :class:`~atlasmith.meshes.MeshParameters` fields that replace the script's
        ``MESH_PARAMETERS`` ones (``atlasmith build --budget-um``); checked before any work.

    Returns
    -------
    BuildResult
        The folder, the archive, its sha256, the structures dropped for having no voxels, the
        validation report and the BrainGlobe 3 manifest.

    Examples
    --------
    >>> result = build_atlas("atlas_scripts/allen_mouse.py", out_dir="build")  # doctest: +SKIP
    >>> result.archive.name  # doctest: +SKIP
    'allen_mouse_100um_v1.2.tar.gz'
    """

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    step("loading script")
    chosen = parse_formats(formats)
    parsed = load_script(script)
    res = parsed.pick_resolution(resolution)
    mesh_parameters = {**(parsed.mesh_parameters or {}), **(mesh_overrides or {})}
    _mesh_parameters(mesh_parameters)  # a bad value is refused now, not after the sources
    out = Path(out_dir)
    check_writable_folder(out)  # before the sources are read, not after the meshes
    atlas = atlas_name(parsed.name, res[0])
    folder = folder_name(atlas, parsed.version)
    _check_free(_targets(out, folder, chosen, True), overwrite)
    if "v3" in chosen:
        check_v3_free(out / V3_ROOT, V3Layout(atlas, v3_version(parsed.version)), overwrite)
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
        build_info=info,
        mesh_parameters=mesh_parameters or None,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=progress,
        formats=chosen,
    )
