"""Build an atlas package: atlas script -> checked inputs -> BrainGlobe v1.2 folder + tar.gz.

:func:`build_atlas` loads the script and its sources, checks and converts the inputs
(:mod:`atlasmith.inputs`) and calls :func:`write_package`, which writes the folder into a
temporary folder next to the output (the v1.2 files, ``meshes/``, ``preview.png``,
``manifest.json``), validates it as a gate, makes the deterministic archive, and only then
moves both into place. On any failure the temporary folder is removed: nothing half-written
is left behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from atlasmith._fs import replace_path, temporary_folder
from atlasmith._types import PathLike, StepProgress
from atlasmith.errors import AtlasExistsError, ConfigError, ScriptError
from atlasmith.formats import MESHES, write_folder
from atlasmith.hierarchy import Structure
from atlasmith.inputs import AtlasInputs, load_raw_atlas, prepare_inputs
from atlasmith.meshes import MeshParameters, generate_meshes
from atlasmith.names import ARCHIVE_SUFFIX, atlas_name, folder_name
from atlasmith.package import make_archive, sha256_file, write_manifest
from atlasmith.previews import write_package_preview
from atlasmith.script import load_script, make_context
from atlasmith.validation import ValidationReport, require_valid, validate_folder

__all__ = ["BuildResult", "build_atlas", "write_package"]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced."""

    folder: Path
    archive: Path | None
    sha256: str | None
    removed: tuple[Structure, ...]
    report: ValidationReport


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
) -> dict[str, Any]:
    out = folder / MESHES
    out.mkdir()
    if inputs.meshes is not None:
        _copy_supplied_meshes(inputs, out)
        return {"supplied": True}
    assert params is not None  # set whenever meshes are generated

    def on_mesh(done: int, total: int) -> None:
        if progress is not None:
            progress("meshes", done, total)

    resolution = inputs.metadata.resolution
    generate_meshes(
        inputs.annotation,
        inputs.tree,
        resolution,
        out,
        params=params,
        workers=workers,
        scheduler=scheduler,
        progress=on_mesh,
    )
    return dict(params.to_dict())


def _check_free(targets: Sequence[Path], overwrite: bool) -> None:
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise AtlasExistsError(
            f"output already exists: {', '.join(map(str, existing))}. Remove it, choose another "
            "--out folder, or pass --overwrite to replace it."
        )


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
) -> BuildResult:
    """Write, validate and archive a package; rename it into ``out_dir`` only when complete.

    Raises
    ------
    AtlasExistsError
        The folder (or archive) exists and ``overwrite`` is False.
    ValidationError
        The written package fails a check (the error carries the report).
    """
    out = Path(out_dir)
    name = inputs.metadata.folder_name
    final, final_archive = out / name, out / f"{name}{ARCHIVE_SUFFIX}"
    _check_free([final, final_archive] if compress else [final], overwrite)
    params = _mesh_parameters(mesh_parameters) if inputs.meshes is None else None

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    with temporary_folder(out, f"{name}.build-") as staging:
        folder = staging / name
        folder.mkdir()
        step("writing stacks and tables")
        write_folder(folder, inputs.metadata, inputs.tree, _stacks(inputs))
        step("meshes")
        with ThreadPoolExecutor(1) as background:  # the preview overlaps mesh generation
            preview = background.submit(write_package_preview, folder)
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
    digest = sha256_file(final_archive) if compress else None
    return BuildResult(final, final_archive if compress else None, digest, inputs.removed, report)


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

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    step("loading script")
    parsed = load_script(script)
    res = parsed.pick_resolution(resolution)
    out = Path(out_dir)
    folder = folder_name(atlas_name(parsed.name, res[0]), parsed.version)
    _check_free([out / folder, out / f"{folder}{ARCHIVE_SUFFIX}"], overwrite)
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
        mesh_parameters=parsed.mesh_parameters or None,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=progress,
    )
