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


@main.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the build, repository and cache here (default: a temporary folder).",
)
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
    from atlasmith.meshes import keep_freed_memory

    keep_freed_memory()
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


@main.command("meshes")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the meshes (<id>.obj).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local processes (default: all cores).",
)
@click.option("--scheduler", default=None, help="dask.distributed scheduler address (tcp://...).")
@click.option(
    "--smoothing-um",
    type=click.FloatRange(min=0),
    default=800.0,
    show_default=True,
    help="How far along the surface each structure's mesh is smoothed, in um (0: none).",
)
@click.option(
    "--cluster-um",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Vertex-clustering block in um (at least 2 voxels; 0: no clustering).",
)
@click.option(
    "--decimate",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Fraction of triangles kept by quadric decimation.",
)
@click.option(
    "--closing",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Closing iterations of each structure before meshing (fills slits; 0: none).",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
def meshes_command(
    folder: str,
    out_dir: str,
    workers: int | None,
    scheduler: str | None,
    smoothing_um: float,
    cluster_um: float,
    decimate: float,
    closing: int,
    overwrite: bool,
) -> None:
    """Regenerate one mesh per structure of the atlas FOLDER into --out."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from atlasmith.errors import AtlasmithError
    from atlasmith.meshes import MeshParameters, keep_freed_memory, meshes_for_folder

    keep_freed_memory()
    try:
        params = MeshParameters(smoothing_um, cluster_um, decimate, closing)
        with Progress(TextColumn("meshes"), BarColumn(), MofNCompleteColumn()) as bar:
            task = bar.add_task("meshes", total=None)
            written = meshes_for_folder(
                Path(folder),
                Path(out_dir),
                params,
                workers,
                scheduler,
                lambda done, total: bar.update(task, completed=done, total=total),
                overwrite=overwrite,
            )
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {len(written)} meshes to {out_dir}")


# --- repository: serve, publish, release, yank, token (issue 5) ------------------------


_to_option = click.option(
    "--to", "to", default=None, help="Repository: folder, http(s):// URL or s3://bucket/prefix."
)
_token_option = click.option(
    "--token", default=None, help="Upload token (default: ATLASMITH_TOKEN or the config file)."
)
_token_file_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Members' token file (default: ATLASMITH_TOKEN_FILE or the user config folder).",
)


@main.command("serve")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@_token_file_option
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(min=1),
    default=20 * 1024**3,
    show_default=True,
    help="Largest archive an upload may send.",
)
def serve_command(
    directory: str, host: str, port: int, token_file: str | None, max_upload_bytes: int
) -> None:
    """Serve the repository in DIRECTORY over HTTP (read-only; uploads need a member's token)."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.server import serve

    try:
        serve(directory, host, port, token_file, max_upload_bytes)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err


@main.command("publish")
@click.argument("archive", type=click.Path(dir_okay=False))
@_to_option
@_token_option
@click.option("--preview", type=click.Path(dir_okay=False), default=None, help="PNG preview.")
def publish_command(archive: str, to: str | None, token: str | None, preview: str | None) -> None:
    """Check ARCHIVE (safe, complete, valid, hashes) and publish it to the repository."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.repository import open_configured_repository

    try:
        with open_configured_repository(to, token) as repo:
            entry = repo.publish(archive, preview)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"published {entry.archive} ({entry.size} bytes)\nsha256: {entry.sha256}")


@main.command("release")
@click.argument("scripts_dir", type=click.Path(file_okay=False, exists=True))
@_to_option
@_token_option
@click.option(
    "--source-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding the scripts' declared source files.",
)
@click.option("--all-resolutions", is_flag=True, help="Release every resolution a script offers.")
def release_command(
    scripts_dir: str,
    to: str | None,
    token: str | None,
    source_dir: str | None,
    all_resolutions: bool,
) -> None:
    """Build and publish every script in SCRIPTS_DIR whose version is not yet published."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.release import release
    from atlasmith.repository import open_configured_repository

    try:
        with open_configured_repository(to, token) as repo:
            report = release(scripts_dir, repo, source_dir, all_resolutions=all_resolutions)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(report.render())
    if not report.ok:
        raise SystemExit(1)


@main.command("yank")
@click.argument("name")
@click.argument("version")
@_to_option
@_token_option
@click.option("--reason", default=None, help="Why (shown to people who pinned the version).")
def yank_command(
    name: str, version: str, to: str | None, token: str | None, reason: str | None
) -> None:
    """Withdraw NAME VERSION: still downloadable by exact version, never chosen as latest."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.repository import open_configured_repository

    try:
        with open_configured_repository(to, token) as repo:
            entry = repo.yank(name, version, reason)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"yanked {entry.atlas_name} {entry.version}")


@main.group("token")
def token_group() -> None:
    """Manage the upload tokens of the atlas team (stored hashed, outside the repository)."""


@token_group.command("add")
@click.argument("name")
@_token_file_option
def token_add_command(name: str, token_file: str | None) -> None:
    """Create a token for member NAME and print it (once: only its hash is kept)."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.tokens import TokenStore

    store = TokenStore(token_file)
    try:
        token = store.add(name)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(token)
    click.echo(f"token for {name} added to {store.path}; it is shown only now.", err=True)


@token_group.command("revoke")
@click.argument("name")
@_token_file_option
def token_revoke_command(name: str, token_file: str | None) -> None:
    """Revoke member NAME's token."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.tokens import TokenStore

    try:
        TokenStore(token_file).revoke(name)
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"revoked the token of {name}")


@token_group.command("list")
@_token_file_option
def token_list_command(token_file: str | None) -> None:
    """List the members who hold a token."""
    from atlasmith.errors import AtlasmithError
    from atlasmith.tokens import TokenStore

    try:
        names = TokenStore(token_file).names()
    except AtlasmithError as err:
        raise click.ClickException(str(err)) from err
    click.echo("\n".join(names) if names else "no tokens")


# --- client: list, install, update, verify, info, remove (issue 6) ----------------------


def _client_options(command: click.decorators.FC) -> click.decorators.FC:
    """The options every client command takes: --repository, --cache-dir, --offline."""
    options = [
        click.option(
            "--repository",
            default=None,
            help="Repository URL or folder (default: ATLASMITH_REPOSITORY or the config file).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Atlas cache folder (default: ATLASMITH_CACHE_DIR or ~/.brainglobe).",
        ),
        click.option(
            "--offline",
            is_flag=True,
            default=None,
            help="Never touch the network (also ATLASMITH_OFFLINE=1).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class _ClientErrors:
    """Show atlasmith errors (and connection errors) as one clear message, exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, err: BaseException | None, trace: object) -> None:
        from atlasmith.errors import AtlasmithError

        if isinstance(err, AtlasmithError | ConnectionError):
            raise click.ClickException(str(err)) from err


@main.command("list")
@click.option("--remote", is_flag=True, help="List every version in the repository.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_client_options
def list_command(
    remote: bool,
    as_json: bool,
    repository: str | None,
    cache_dir: str | None,
    offline: bool | None,
) -> None:
    """List atlases: installed ones and those the repository offers."""
    from atlasmith.cache import AtlasCache, list_rows

    with _ClientErrors():
        rows, problem = list_rows(AtlasCache.from_options(repository, cache_dir, offline), remote)
    _print_rows(rows, as_json, "versions in the repository" if remote else "atlases")
    if problem:
        click.echo(f"note: {problem}", err=True)


def _print_rows(rows: list[dict[str, object]], as_json: bool, title: str) -> None:
    import json

    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} {title}")
    columns = [k for k in (rows[0] if rows else {}) if k != "path"]
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    Console(width=max(100, Console().width)).print(table)


@main.command("install")
@click.argument("targets", nargs=-1, required=True)
@click.option("--version", "version", default=None, help="Install this version (M.m).")
@_client_options
def install_command(
    targets: tuple[str, ...],
    version: str | None,
    repository: str | None,
    cache_dir: str | None,
    offline: bool | None,
) -> None:
    """Install atlases by NAME, from a package ARCHIVE_PATH, or from an offline bundle folder."""
    from atlasmith.cache import AtlasCache, install_target, progress_bar

    cache = AtlasCache.from_options(repository, cache_dir, offline)
    for target in targets:
        with _ClientErrors(), progress_bar(f"Downloading {target}") as update:
            for atlas in install_target(cache, target, version, update):
                click.echo(f"{atlas.atlas_name} {atlas.version} installed in {atlas.path}")


@main.command("update")
@click.argument("names", nargs=-1)
@_client_options
def update_command(
    names: tuple[str, ...], repository: str | None, cache_dir: str | None, offline: bool | None
) -> None:
    """Update atlases (all installed ones by default) to the repository's latest version.

    The new version is downloaded and verified before the old one is replaced.
    """
    from atlasmith.cache import AtlasCache, progress_bar

    cache = AtlasCache.from_options(repository, cache_dir, offline)
    names = names or tuple(a.atlas_name for a in cache.installed())
    if not names:
        click.echo(f"No atlases installed in {cache.root}: nothing to update.")
    for name in names:
        with _ClientErrors(), progress_bar(f"Downloading {name}") as update:
            action, atlas = cache.update(name, update)
        done = {"use": "is up to date", "install": "installed", "update": "updated to"}
        click.echo(f"{name} {done[action]} {atlas.version} ({atlas.path})")


@main.command("remove")
@click.argument("names", nargs=-1, required=True)
@_client_options
def remove_command(
    names: tuple[str, ...], repository: str | None, cache_dir: str | None, offline: bool | None
) -> None:
    """Delete installed atlases from the cache."""
    from atlasmith.cache import AtlasCache

    cache = AtlasCache.from_options(repository, cache_dir, offline)
    for name in names:
        with _ClientErrors():
            click.echo(f"removed {cache.remove(name)}")


@main.command("verify")
@click.argument("names", nargs=-1)
@_client_options
def verify_command(
    names: tuple[str, ...], repository: str | None, cache_dir: str | None, offline: bool | None
) -> None:
    """Re-hash installed atlases (all by default) against their manifest.json."""
    from atlasmith.cache import AtlasCache

    cache = AtlasCache.from_options(repository, cache_dir, offline)
    failed = 0
    for name in names or [a.atlas_name for a in cache.installed()]:
        with _ClientErrors():
            atlas = cache.require(name)
            problems = cache.verify(name) if atlas.has_manifest else []
        if not atlas.has_manifest:
            click.echo(
                f"{name}: NOT CHECKED: {atlas.path} has no manifest.json, so it was "
                "installed by another tool (e.g. BrainGlobe); reinstall it with "
                "`atlasmith install` to be able to verify it."
            )
            continue
        failed += bool(problems)
        click.echo(f"{name}: {'OK' if not problems else 'FAILED'} ({atlas.path})")
        for problem in problems:
            click.echo(f"  {problem}")
    if failed:
        raise click.ClickException(
            f"{failed} atlas(es) failed verification; reinstall them "
            "with `atlasmith install NAME --version M.m`."
        )


@main.command("info")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
def info_command(
    name: str | None,
    as_json: bool,
    repository: str | None,
    cache_dir: str | None,
    offline: bool | None,
) -> None:
    """Show an atlas (installed and published) or, without NAME, the client settings."""
    import json

    from atlasmith.cache import AtlasCache, atlas_info, settings_info

    cache = AtlasCache.from_options(repository, cache_dir, offline)
    with _ClientErrors():
        info = settings_info(cache) if name is None else atlas_info(cache, name)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        click.echo(f"{key:>16}: {shown}")


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
