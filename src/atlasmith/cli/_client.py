"""The user's commands: list, install, update, remove, verify, info; and what they show."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from atlasmith.cli._common import print_rows, reports_errors, shows_yanked_warnings
from atlasmith.config import config_path
from atlasmith.errors import AtlasmithError, AtlasNotFoundError, OfflineError, RepositoryError
from atlasmith.names import parse_version

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.cache import AtlasCache, InstalledAtlas
    from atlasmith.repository import IndexEntry, RepositoryIndex

__all__ = ["AtlasStatus", "atlas_info", "list_rows", "settings_info", "status_rows"]


def _with_cache(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options every client command takes (--repository, --cache-dir, --offline,
    --allow-unverified) and hand the command the cache they describe, as ``cache``; errors are
    reported cleanly."""

    @functools.wraps(command)
    def run(
        *args: Any,
        repository: str | None,
        cache_dir: str | None,
        offline: bool | None,
        allow_unverified: bool | None,
        **kw: Any,
    ) -> None:
        from atlasmith.cache import AtlasCache

        cache = AtlasCache.from_options(repository, cache_dir, offline, allow_unverified)
        command(*args, cache=cache, **kw)

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
        click.option(
            "--allow-unverified",
            is_flag=True,
            default=None,
            help="Install from a repository that publishes no sha256 (no index.json), for this "
            "command (also ATLASMITH_ALLOW_UNVERIFIED=1). Never for one that published hashes "
            "before. BrainGlobe's GIN is always allowed, as BrainGlobe's own client reads it.",
        ),
    ]
    decorated: Callable[..., None] = reports_errors(run)
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


@click.command("list")
@click.option("--remote", is_flag=True, help="List every version in the repository.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_with_cache
def list_command(
    remote: bool,
    as_json: bool,
    cache: AtlasCache,
) -> None:
    """List atlases: installed ones and those the repository offers."""
    rows, problem = list_rows(cache, remote)
    title = "versions in the repository" if remote else "atlases"
    keep = ("name", "version") if remote else ("name", "local_version", "latest_version")
    print_rows(rows, as_json, title, keep)
    if problem:
        click.echo(f"note: {problem}", err=True)


@click.command("brainglobe-env")
@click.argument("url")
@reports_errors
def brainglobe_env_command(url: str) -> None:
    """Print the shell lines that point BrainGlobe 3's client at the repository served at URL
    (`atlasmith serve`, or an S3 endpoint holding bucket 'brainglobe')."""
    from atlasmith._bg3 import environment

    for key, value in environment(url).items():
        click.echo(f"export {key}={value}")
    click.echo(
        "# These send brainglobe-atlasapi 3.x's downloads to the repository. Before any "
        "download 3.x also checks, and reads its list of atlas names from, a fixed AWS address: "
        "these lines alone work only where that address is reachable and lists the atlas. "
        f'Otherwise call atlasmith.compat.use_repository("{url}") in Python before opening one.'
    )


@click.command("install")
@click.argument("targets", nargs=-1, required=True)
@click.option("--version", "version", default=None, help="Install this version (M.m).")
@click.option(
    "--format",
    "atlas_format",
    type=click.Choice(["v1", "all"]),
    default="all",
    show_default=True,
    help="all: the v1.2 folder (brainglobe-atlasapi <= 2.3.1) and the same atlas in "
    "brainglobe-atlasapi/ (3.x); v1: the v1.2 folder only.",
)
@_with_cache
def install_command(
    targets: tuple[str, ...],
    version: str | None,
    atlas_format: str,
    cache: AtlasCache,
) -> None:
    """Install atlases by NAME, from a package ARCHIVE_PATH, from an offline bundle folder, or
    from a BrainGlobe 3 atlas (its manifest or version folder)."""
    from atlasmith.progress import download_bar

    cache.formats = ("v1",) if atlas_format == "v1" else ("v1", "v3")
    for target in targets:
        with download_bar(f"Downloading {target}") as update, shows_yanked_warnings():
            for atlas in cache.install(target, version, update):
                click.echo(f"{atlas.atlas_name} {atlas.version} installed in {atlas.path}")


@click.command("update")
@click.argument("names", nargs=-1)
@_with_cache
def update_command(names: tuple[str, ...], cache: AtlasCache) -> None:
    """Update atlases (all installed ones by default) to the repository's latest version.

    The new version is downloaded and verified before the old one is replaced. Never to an
    older version: an installed version that was yanked stays (its reason is shown) until a
    newer one is published.
    """
    from atlasmith.progress import download_bar

    names = names or tuple(a.atlas_name for a in cache.installed())
    if not names:
        click.echo(f"No atlases installed in {cache.root}: nothing to update.")
    for name in names:
        with download_bar(f"Downloading {name}") as update, shows_yanked_warnings():
            action, atlas = cache.update(name, update)
        done = {"use": "is up to date", "install": "installed", "update": "updated to"}
        kept = cache.index().get(name, atlas.version) if action == "use" else None
        status = "stays at" if kept is not None and kept.yanked else done[action]
        click.echo(f"{name} {status} {atlas.version} ({atlas.path})")


@click.command("remove")
@click.argument("names", nargs=-1, required=True)
@_with_cache
def remove_command(names: tuple[str, ...], cache: AtlasCache) -> None:
    """Delete installed atlases from the cache."""
    for name in names:
        click.echo(f"removed {cache.remove(name)}")


@click.command("verify")
@click.argument("names", nargs=-1)
@_with_cache
def verify_command(names: tuple[str, ...], cache: AtlasCache) -> None:
    """Re-hash installed atlases (all by default) against their manifest.json."""
    failed = 0
    for name in names or [a.atlas_name for a in cache.installed()]:
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


@click.command("info")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_cache
def info_command(
    name: str | None,
    as_json: bool,
    cache: AtlasCache,
) -> None:
    """Show an atlas (installed and published) or, without NAME, the client settings."""
    import json

    from atlasmith.cli._info import atlas_summary, installed_facts, settings_summary

    info = settings_info(cache) if name is None else atlas_info(cache, name)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif name is None:
        click.echo(settings_summary(info))
    else:
        click.echo(atlas_summary(info, installed_facts(info.get("path"))))


# --- what the commands show ---------------------------------------------------------------


@dataclass(frozen=True)
class AtlasStatus:
    """One row of ``atlasmith list``."""

    atlas_name: str
    downloaded: bool
    local_version: str | None
    latest_version: str | None
    path: Path | None
    #: Whether the installed version is yanked (None when not installed or not in the index).
    yanked: bool | None = None
    yank_reason: str | None = None

    @property
    def updated(self) -> bool | None:
        """Whether the installed version is the latest (None when either is unknown)."""
        if self.local_version is None or self.latest_version is None:
            return None
        return parse_version(self.local_version) >= parse_version(self.latest_version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row."""
        return {
            "name": self.atlas_name,
            "downloaded": self.downloaded,
            "local_version": self.local_version,
            "latest_version": self.latest_version,
            "updated": self.updated,
            "yanked": self.yanked,
            "yank_reason": self.yank_reason,
            "path": None if self.path is None else str(self.path),
        }


def status_rows(
    installed: list[InstalledAtlas], index: RepositoryIndex | None
) -> list[AtlasStatus]:
    """Rows for every atlas installed or offered, sorted by name (pure)."""
    local = {a.atlas_name: a for a in installed}
    names = sorted(set(local) | set(index.names() if index else ()))
    rows = []
    for name in names:
        here = local.get(name)
        latest = index.latest(name) if index else None
        entry = index.get(name, here.version) if index and here else None
        rows.append(
            AtlasStatus(
                name,
                here is not None,
                here.version if here else None,
                latest.version if latest else None,
                here.path if here else None,
                entry.yanked if entry else None,
                entry.yank_reason if entry else None,
            )
        )
    return rows


def list_rows(cache: AtlasCache, remote: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Rows for ``atlasmith list`` and a note when the repository could not be read.

    With ``remote``, one row per version in the repository; otherwise one row per atlas
    (installed or offered) with its local and latest versions.
    """
    index, note = _browse_index(cache)
    if remote and index is None:
        raise RepositoryError(f"Cannot list the repository's versions: {note}")
    if remote and index is not None:
        return [_version_row(cache, e) for n in index.names() for e in index.versions(n)], note
    return [row.to_dict() for row in status_rows(cache.installed(), index)], note


def _browse_index(cache: AtlasCache) -> tuple[RepositoryIndex | None, str | None]:
    """The repository's index for browsing (one quick attempt), else the cached one; with a
    note saying which, when it is not the live one."""
    try:
        return cache.index(quick=True), None
    except (OfflineError, ConnectionError, RepositoryError) as err:
        cached = cache.cached_index()
        if cached is None:
            return None, f"the repository could not be read ({err}); showing installed atlases"
        return cached, f"the repository could not be read ({err}); showing its cached index"


def _version_row(cache: AtlasCache, entry: IndexEntry) -> dict[str, Any]:
    local = cache.find(entry.atlas_name)
    return {
        "name": entry.atlas_name,
        "version": entry.version,
        "installed": local is not None and local.version == entry.version,
        "yanked": entry.yanked,
        "yank_reason": entry.yank_reason,
        "size_mb": None if entry.size is None else round(entry.size / 1e6, 1),
        "published": entry.published,
        "sha256": entry.sha256,
    }


def atlas_info(cache: AtlasCache, name: str) -> dict[str, Any]:
    """What is known about ``name``: installed folder and metadata, published versions."""
    local = cache.find(name)
    info: dict[str, Any] = {"name": name, "installed": local is not None}
    if local is not None:
        info.update(
            version=local.version,
            path=str(local.path),
            manifest=local.has_manifest,
            metadata=_metadata(local.path),
        )
    index, note = _browse_index(cache)
    versions = index.versions(name) if index else []
    if note:
        info["repository"] = note
    if index and versions:
        latest = index.latest(name)
        info["latest_version"] = latest.version if latest else None
        info["versions"] = [_version_row(cache, e) for e in versions]
        info["published_metadata"] = dict(latest.metadata) if latest else {}
    if local is None and not versions:
        raise AtlasNotFoundError(
            f"{name} is neither installed in {cache.root} nor offered by "
            f"{cache.settings.repository}. Run `atlasmith list` to see the atlases."
        )
    return info


def _metadata(folder: Path) -> dict[str, Any]:
    """The metadata of an installed atlas as stored ({} when unreadable)."""
    from atlasmith.formats import open_atlas_files

    try:
        return open_atlas_files(folder).metadata_dict
    except AtlasmithError:
        return {}


def settings_info(cache: AtlasCache) -> dict[str, Any]:
    """The client settings in use and where they came from."""
    settings = cache.settings
    return {
        "repository": settings.repository,
        "cache_dir": str(settings.cache_dir),
        "offline": settings.offline,
        "timeout_s": settings.timeout,
        "retries": settings.retries,
        "config_file": str(config_path()),
        "installed": [a.path.name for a in cache.installed()],
    }
