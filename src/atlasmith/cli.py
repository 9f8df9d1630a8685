"""The ``atlasmith`` command line: each command parses its options, calls one library
function and prints the result. Library modules are imported inside the commands so that
``atlasmith --help`` stays fast."""

from __future__ import annotations

import click

from atlasmith import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atlasmith")
def main() -> None:
    """Package, publish, download and query brain atlases (BrainGlobe format)."""


# --- the main job and reading (issue 2) -------------------------------------------------

# --- generation: build, validate, new-script (issue 3) ---------------------------------


@main.command("build")
@click.argument("script", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default=".",
    type=click.Path(file_okay=False),
    help="Folder for the atlas folder and its .tar.gz (default: current folder).",
)
@click.option(
    "--source-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding the script's declared source files (e.g. ../shared/data).",
)
@click.option(
    "--resolution",
    type=float,
    default=None,
    help="One of the script's RESOLUTIONS in um (default: its first).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local processes for mesh generation (default: all cores).",
)
@click.option("--scheduler", default=None, help="dask.distributed scheduler address.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def build_command(
    script: str,
    out_dir: str,
    source_dir: str | None,
    resolution: float | None,
    workers: int | None,
    scheduler: str | None,
    overwrite: bool,
) -> None:
    """Build an atlas SCRIPT into a validated BrainGlobe-format folder and .tar.gz."""
    from atlasmith.build import build_atlas, rich_progress
    from atlasmith.errors import AtlasmithError

    try:
        with rich_progress() as update:
            result = build_atlas(
                script, out_dir, source_dir, resolution, workers, scheduler, overwrite, update
            )
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    if result.removed:
        dropped = ", ".join(f"{s.acronym} ({s.id})" for s in result.removed)
        click.echo(f"removed {len(result.removed)} structure(s) with no voxels: {dropped}")
    click.echo(f"folder:  {result.folder}\narchive: {result.archive}\nsha256:  {result.sha256}")


@main.command("validate")
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


@main.command("new-script")
@click.argument("name")
@click.option(
    "--out",
    "out_dir",
    default=".",
    type=click.Path(file_okay=False),
    help="Folder to write NAME.py into (default: current folder).",
)
def new_script_command(name: str, out_dir: str) -> None:
    """Write a commented atlas script template NAME.py (NAME: author_species) to start from."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.script import write_script_template

    try:
        path = write_script_template(name, out_dir)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {path}: fill in its constants and loaders, then `atlasmith build {path}`")


# --- meshes (issue 4) --------------------------------------------------------------------

# --- repository: serve, publish, release, yank, token (issue 5) ------------------------

# --- client: list, install, update, verify, info, remove (issue 6) ----------------------

# --- inspection (issue 7) ----------------------------------------------------------------


@main.command("inspect")
@click.argument("source")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: ./<atlas folder>-inspection).",
)
def inspect_command(source: str, out: str | None) -> None:
    """Write section and mesh previews and an HTML report for an atlas.

    SOURCE is an atlas folder, a .tar.gz package or the name of an installed atlas.
    """
    from atlasmith.errors import AtlasmithError
    from atlasmith.inspection import inspect_atlas

    try:
        result = inspect_atlas(source, out)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    problems = result.mesh_problems
    click.echo(f"sections: {result.sections}\nmeshes:   {result.meshes}")
    click.echo(f"mesh checks: {len(result.mesh_checks)}, problems: {len(problems)}")
    if result.validation_ok is not None:
        click.echo(f"validation: {'passed' if result.validation_ok else 'FAILED'}")
    click.echo(f"report:   {result.report}")
