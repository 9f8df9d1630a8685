"""The packager's commands: demo, build, validate, new-script, meshes, inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.decorators import FC

from atlasmith.cli._common import (
    reports_errors,
    scheduler_option,
    source_dir_option,
    workers_option,
)
from atlasmith.meshes import MeshParameters  # light: the engine is imported when it runs

__all__ = [
    "build_command",
    "demo_command",
    "inspect_command",
    "meshes_command",
    "new_script_command",
    "validate_command",
]

# MeshParameters' fields that are options of `atlasmith meshes`, with their help; the
# defaults are the library's
_MESH_OPTIONS: dict[str, tuple[click.ParamType[Any], str]] = {
    "smoothing_um": (
        click.FloatRange(min=0),
        "How far along the surface each structure's mesh is smoothed, in um (0: none).",
    ),
    "cluster_um": (
        click.FloatRange(min=0),
        "Vertex-clustering block in um (at least 2 voxels; 0: no clustering).",
    ),
    "deviation_um": (
        click.FloatRange(0, 10_000),
        "Decimation: how far in um the shared surface may move (0: none).",
    ),
    "decimate": (
        click.FloatRange(0, 1, min_open=True),
        "Decimate on, past --deviation-um, until this fraction of triangles is left.",
    ),
    "budget_um": (
        click.FloatRange(0, 100_000),
        "Triangle budget: decimate each mesh to about a triangulation of its area with edges "
        "of this many um (0: none; 200 halves the Allen atlas's triangles at 100 um).",
    ),
    "closing": (
        click.IntRange(min=0),
        "Closing iterations of each structure before meshing (fills slits; 0: none).",
    ),
}


#: the options whose default depends on --budget-um (MeshParameters resolves None)
_FROM_BUDGET = ("smoothing_um", "closing")


def _mesh_options(command: FC) -> FC:
    """The options of the mesh parameters, with MeshParameters' defaults (None for those the
    budget sets, shown as both values)."""
    defaults = MeshParameters()
    budgeted = MeshParameters(budget_um=1.0)
    for name, (kind, text) in reversed(_MESH_OPTIONS.items()):
        flag = "--" + name.replace("_", "-")
        default, with_budget = getattr(defaults, name), getattr(budgeted, name)
        shown: bool | str = True
        if name in _FROM_BUDGET:
            shown = f"{default:g}; {with_budget:g} with --budget-um"
            default = None
        command = click.option(flag, type=kind, default=default, show_default=shown, help=text)(
            command
        )
    return command


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the build, repository and cache here (default: a temporary folder).",
)
@reports_errors
def demo_command(workdir: str | None) -> None:
    """Run the main job on the bundled real Allen 100 um atlas: build it, publish it to a
    local repository, serve that over HTTP on loopback, fetch it into a fresh cache through the
    client, query it and print a summary with the credits."""
    import tempfile
    from pathlib import Path

    from atlasmith.demo import run_demo

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        click.echo(run_demo(Path(workdir), log=click.echo).report)
        return
    with tempfile.TemporaryDirectory(prefix="atlasmith-demo-") as tmp:
        click.echo(run_demo(Path(tmp), log=click.echo).report)


@click.command("build")
@click.argument("script", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default=".",
    type=click.Path(file_okay=False),
    help="Folder for the atlas folder, its .tar.gz and brainglobe-atlasapi/ (default: current "
    "folder).",
)
@source_dir_option
@click.option(
    "--resolution",
    type=float,
    default=None,
    help="One of the script's RESOLUTIONS in um (default: its first).",
)
@click.option(
    "--format",
    "atlas_format",
    type=click.Choice(["v1", "v3", "all"]),
    default="all",
    show_default=True,
    help="v1: BrainGlobe v1.2 folder + .tar.gz (atlasapi <= 2.3.1); v3: BrainGlobe 3 "
    "components in OUT/brainglobe-atlasapi/ (atlasapi 3.x); all: both.",
)
@workers_option
@scheduler_option
@click.option(
    "--budget-um",
    type=click.FloatRange(0, 100_000),
    default=None,
    help="Triangle budget of each mesh (MeshParameters.budget_um; default: the script's "
    "MESH_PARAMETERS, else 0: none). 200 halves the Allen atlas's triangles at 100 um.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@reports_errors
def build_command(
    script: str,
    out_dir: str,
    source_dir: str | None,
    resolution: float | None,
    atlas_format: str,
    workers: int | None,
    scheduler: str | None,
    budget_um: float | None,
    overwrite: bool,
) -> None:
    """Build an atlas SCRIPT into a validated BrainGlobe v1.2 folder and .tar.gz and the same
    atlas as BrainGlobe 3 components (--format)."""
    from atlasmith.build import build_atlas
    from atlasmith.meshes import keep_freed_memory
    from atlasmith.progress import step_display

    keep_freed_memory()
    with step_display() as update:
        result = build_atlas(
            script,
            out_dir,
            source_dir=source_dir,
            resolution=resolution,
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            progress=update,
            formats=atlas_format,
            mesh_overrides=None if budget_um is None else {"budget_um": budget_um},
        )
    if result.removed:
        dropped = ", ".join(f"{s.acronym} ({s.id})" for s in result.removed)
        click.echo(f"removed {len(result.removed)} structure(s) with no voxels: {dropped}")
    if result.folder is not None:
        click.echo(f"folder:  {result.folder}\narchive: {result.archive}")
        click.echo(f"sha256:  {result.sha256}")
    if result.v3_manifest is not None:
        click.echo(f"v3:      {result.v3_manifest}")
    click.echo(_sheet_checklist(result.folder, result.v3_manifest))


def _sheet_checklist(folder: Path | None, manifest: Path | None) -> str:
    """Where a build's section sheet is and what to look for on it."""
    from atlasmith.formats import METADATA, PREVIEW, read_json
    from atlasmith.previews import sheet_checklist

    if folder is None:
        return sheet_checklist(None, None, manifest)
    symmetric = read_json(folder / METADATA, "written by this build").get("symmetric")
    return sheet_checklist(folder / PREVIEW, bool(symmetric), manifest)


@click.command("convert")
@click.argument("source", type=click.Path(exists=True))
@click.option(
    "--to",
    "to",
    type=click.Choice(["v1", "v3"]),
    required=True,
    help="v1: a v1.2 folder + .tar.gz in OUT (brainglobe-atlasapi <= 2.3.1); v3: BrainGlobe 3 "
    "components in OUT/brainglobe-atlasapi/ (atlasapi 3.x).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where the converted atlas goes (for v3: a brainglobe_dir, e.g. ~/.brainglobe).",
)
@workers_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@reports_errors
def convert_command(
    source: str, to: str, out_dir: str, workers: int | None, overwrite: bool
) -> None:
    """Convert SOURCE (a v1.2 folder or .tar.gz, or a BrainGlobe 3 manifest or version folder)
    to the other BrainGlobe format."""
    from atlasmith.convert import convert_atlas
    from atlasmith.progress import step_display

    with step_display() as update:
        update(f"converting to {to}", 0, 0)
        written = convert_atlas(source, to, out_dir, overwrite=overwrite, workers=workers or 2)
    click.echo(f"{'manifest' if to == 'v3' else 'folder'}: {written}")


@click.command("validate")
@click.argument("target", type=click.Path(exists=True))
def validate_command(target: str) -> None:
    """Run every check on an atlas FOLDER or .tar.gz ARCHIVE (exit code 1 on failure)."""
    from pathlib import Path

    from atlasmith.validation import validate_archive, validate_folder

    path = Path(target)
    report = validate_folder(path) if path.is_dir() else validate_archive(path)
    click.echo(report.render())
    if not report.ok:
        raise SystemExit(1)


@click.command("new-script")
@click.argument("name")
@click.option(
    "--out",
    "out_dir",
    default=".",
    type=click.Path(file_okay=False),
    help="Folder to write NAME.py into (default: current folder).",
)
@reports_errors
def new_script_command(name: str, out_dir: str) -> None:
    """Write a commented atlas script template NAME.py (NAME: author_species, with or
    without .py) to start from."""
    from atlasmith.script import write_script_template

    path = write_script_template(name, out_dir)
    click.echo(f"wrote {path}: fill in its constants and loaders, then `atlasmith build {path}`")


@click.command("meshes")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the meshes (<id>.obj).",
)
@workers_option
@scheduler_option
@_mesh_options
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@reports_errors
def meshes_command(
    folder: str,
    out_dir: str,
    workers: int | None,
    scheduler: str | None,
    smoothing_um: float | None,
    cluster_um: float,
    deviation_um: float,
    decimate: float,
    budget_um: float,
    closing: int | None,
    overwrite: bool,
) -> None:
    """Regenerate one mesh per structure of the atlas FOLDER into --out."""
    from pathlib import Path

    from atlasmith.meshes import keep_freed_memory, meshes_for_folder
    from atlasmith.progress import count_bar

    keep_freed_memory()
    params = MeshParameters(
        smoothing_um=smoothing_um,
        cluster_um=cluster_um,
        deviation_um=deviation_um,
        decimate=decimate,
        budget_um=budget_um,
        closing=closing,
    )
    with count_bar("meshes") as update:
        written = meshes_for_folder(
            Path(folder),
            Path(out_dir),
            params=params,
            workers=workers,
            scheduler=scheduler,
            progress=update,
            overwrite=overwrite,
        )
    click.echo(f"wrote {len(written)} meshes to {out_dir}")


@click.command("inspect")
@click.argument("source")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: ./<atlas folder>-inspection).",
)
@reports_errors
def inspect_command(source: str, out: str | None) -> None:
    """Write section and mesh previews and an HTML report for an atlas.

    SOURCE is an atlas folder, a .tar.gz package or the name of an installed atlas.
    """
    from atlasmith.inspection import inspect_atlas
    from atlasmith.progress import step_display

    with step_display() as update:
        result = inspect_atlas(source, out, update)
    problems = result.mesh_problems
    click.echo(f"sections: {result.sections}\nmeshes:   {result.meshes}")
    click.echo(f"mesh checks: {len(result.mesh_checks)}, problems: {len(problems)}")
    if result.validation_ok is not None:
        click.echo(f"validation: {'passed' if result.validation_ok else 'FAILED'}")
    click.echo(f"report:   {result.report}")
