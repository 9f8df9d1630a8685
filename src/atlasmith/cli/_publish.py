"""The maintainer's commands: serve, publish, release, yank, token."""

from __future__ import annotations

import click

from atlasmith.cli._common import reports_errors, source_dir_option
from atlasmith.config import SERVER_HOST, SERVER_PORT
from atlasmith.limits import (
    MAX_PUBLISHED_BYTES,
    SERVER_HEADER_TIMEOUT_S,
    SERVER_MAX_CONNECTIONS,
    SERVER_SEND_TIMEOUT_S,
)

__all__ = [
    "publish_command",
    "release_command",
    "serve_command",
    "token_group",
    "unyank_command",
    "yank_command",
]


_to_option = click.option(
    "--to",
    "to",
    default=None,
    help="The repository to change: a folder, http(s):// URL or s3://bucket/prefix. Required "
    "unless ATLASMITH_PUBLISH_TO or publish_to in the config file names one (the download "
    "repository, BrainGlobe's GIN by default, is never used). It must already have an "
    "index.json.",
)
_new_repository_option = click.option(
    "--new-repository",
    is_flag=True,
    help="Start a new repository at the destination if it has no index.json yet (without "
    "this flag such a destination is refused, so a typo creates nothing).",
)


def _read_token(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    """``--token -`` reads the token from standard input, ``--token @FILE`` from a file (which
    must be private); a token written out on the command line works, with a warning: every user
    of the machine can read it in the process list."""
    if value is None:
        return None
    if value == "-":
        import sys

        token = sys.stdin.readline().strip()
    elif value.startswith("@"):
        from pathlib import Path

        from atlasmith._fs import unsafe_secret_permissions

        path = Path(value[1:]).expanduser()
        problems = unsafe_secret_permissions(path)
        if problems:
            click.echo(f"warning: {'; '.join(problems)}: chmod 600 {path}", err=True)
        try:
            token = path.read_text().strip()
        except OSError as err:
            raise click.BadParameter(f"cannot read {path}: {err.strerror}") from err
    else:
        click.echo(
            "warning: a token given on the command line is visible to every user of this "
            "machine (ps); prefer ATLASMITH_TOKEN, --token @FILE or --token - (standard input).",
            err=True,
        )
        token = value
    if not token:
        raise click.BadParameter("the token is empty")
    return token


_token_option = click.option(
    "--token",
    default=None,
    callback=_read_token,
    help="Upload token: '-' reads it from standard input, '@FILE' from a private file "
    "(default: ATLASMITH_TOKEN or the config file).",
)
_token_file_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Members' token file (default: ATLASMITH_TOKEN_FILE or the user config folder).",
)


@click.command("serve")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default=SERVER_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=SERVER_PORT, show_default=True, type=click.IntRange(0, 65535))
@_token_file_option
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(min=1),
    default=MAX_PUBLISHED_BYTES,
    show_default=True,
    help="Largest archive an upload may send.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=SERVER_HEADER_TIMEOUT_S,
    show_default=True,
    help="Seconds a connection has to send a complete request head before it is closed.",
)
@click.option(
    "--send-timeout",
    type=click.FloatRange(min=0.1),
    default=SERVER_SEND_TIMEOUT_S,
    show_default=True,
    help="Seconds a client may read nothing of its answer before it is disconnected.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=8),
    default=SERVER_MAX_CONNECTIONS,
    show_default=True,
    help="Open connections at most (lowered to fit the file descriptor limit); the "
    "longest-idle one is closed to make room.",
)
@reports_errors
def serve_command(
    directory: str,
    host: str,
    port: int,
    token_file: str | None,
    max_upload_bytes: int,
    header_timeout: float,
    send_timeout: float,
    max_connections: int,
) -> None:
    """Serve the repository in DIRECTORY over HTTP (read-only; uploads need a member's token)."""
    from atlasmith.server import serve

    serve(
        directory,
        host,
        port,
        token_file,
        max_upload_bytes,
        header_timeout,
        max_connections,
        send_timeout,
    )


@click.command("publish")
@click.argument("archive", type=click.Path(dir_okay=False))
@_to_option
@_new_repository_option
@_token_option
@click.option("--preview", type=click.Path(dir_okay=False), default=None, help="PNG preview.")
@reports_errors
def publish_command(
    archive: str, to: str | None, new_repository: bool, token: str | None, preview: str | None
) -> None:
    """Check ARCHIVE (safe, complete, valid, hashes) and publish it to the repository --to
    (or the configured ATLASMITH_PUBLISH_TO; never the download repository)."""
    from atlasmith.progress import step_display
    from atlasmith.repository import open_publish_repository

    opened = open_publish_repository(to, token, new_repository=new_repository)
    with opened as repo, step_display() as update:
        entry = repo.publish(archive, preview, update)
    click.echo(f"published {entry.archive} ({entry.size} bytes)\nsha256: {entry.sha256}")


@click.command("release")
@click.argument("scripts_dir", type=click.Path(file_okay=False, exists=True))
@_to_option
@_new_repository_option
@_token_option
@source_dir_option
@click.option("--all-resolutions", is_flag=True, help="Release every resolution a script offers.")
@reports_errors
def release_command(
    scripts_dir: str,
    to: str | None,
    new_repository: bool,
    token: str | None,
    source_dir: str | None,
    all_resolutions: bool,
) -> None:
    """Build and publish every script in SCRIPTS_DIR whose version is not yet published in
    the repository --to (or the configured ATLASMITH_PUBLISH_TO)."""
    from atlasmith.progress import step_display
    from atlasmith.release import release
    from atlasmith.repository import open_publish_repository

    opened = open_publish_repository(to, token, new_repository=new_repository)
    with opened as repo, step_display() as update:
        report = release(
            scripts_dir, repo, source_dir, all_resolutions=all_resolutions, progress=update
        )
    click.echo(report.render())
    if not report.ok:
        raise SystemExit(1)


def _check_reason(
    context: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    """A reason is one line of at most MAX_YANK_REASON_CHARS characters (it is shown in
    one-line warnings and on the web page)."""
    from atlasmith.limits import MAX_YANK_REASON_CHARS

    if value is None:
        return None
    if "\n" in value or "\r" in value:
        raise click.BadParameter("give the reason on one line")
    if len(value) > MAX_YANK_REASON_CHARS:
        raise click.BadParameter(
            f"the reason has {len(value)} characters; {MAX_YANK_REASON_CHARS} at most"
        )
    return value


@click.command("yank")
@click.argument("name")
@click.argument("version")
@_to_option
@_token_option
@click.option(
    "--reason",
    default=None,
    callback=_check_reason,
    help="Why (shown to everyone who installs or keeps the version); without it, a version "
    "yanked before keeps its reason.",
)
@reports_errors
def yank_command(
    name: str, version: str, to: str | None, token: str | None, reason: str | None
) -> None:
    """Withdraw NAME VERSION: never chosen as latest, still installable when named exactly
    (`atlasmith install NAME --version VERSION`, with a warning showing the reason). Undo it
    with `atlasmith unyank`."""
    from atlasmith.repository import open_publish_repository

    with open_publish_repository(to, token) as repo:
        entry = repo.yank(name, version, reason)
    click.echo(f"yanked {entry.atlas_name} {entry.version} ({entry.yank_note})")


@click.command("unyank")
@click.argument("name")
@click.argument("version")
@_to_option
@_token_option
@reports_errors
def unyank_command(name: str, version: str, to: str | None, token: str | None) -> None:
    """Offer NAME VERSION again after `atlasmith yank` (its reason is dropped); a version that
    is not yanked is left as it is."""
    from atlasmith.repository import open_publish_repository

    with open_publish_repository(to, token) as repo:
        entry = repo.unyank(name, version)
        latest = repo.read_index().latest(name)
    shown = f"; the latest version is {latest.version}" if latest else ""
    click.echo(f"{entry.atlas_name} {entry.version} is offered again{shown}")


@click.group("token")
def token_group() -> None:
    """Manage the upload tokens of the atlas team (stored hashed, outside the repository)."""


@token_group.command("add")
@click.argument("name")
@_token_file_option
@reports_errors
def token_add_command(name: str, token_file: str | None) -> None:
    """Create a token for member NAME and print it (once: only its hash is kept)."""
    from atlasmith.tokens import TokenStore

    store = TokenStore(token_file)
    token = store.add(name)
    click.echo(token)
    click.echo(f"token for {name} added to {store.path}; it is shown only now.", err=True)


@token_group.command("revoke")
@click.argument("name")
@_token_file_option
@reports_errors
def token_revoke_command(name: str, token_file: str | None) -> None:
    """Revoke member NAME's token."""
    from atlasmith.tokens import TokenStore

    TokenStore(token_file).revoke(name)
    click.echo(f"revoked the token of {name}")


@token_group.command("list")
@_token_file_option
@reports_errors
def token_list_command(token_file: str | None) -> None:
    """List the members who hold a token."""
    from atlasmith.tokens import TokenStore

    names = TokenStore(token_file).names()
    click.echo("\n".join(names) if names else "no tokens")
