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

__all__ = ["publish_command", "release_command", "serve_command", "token_group", "yank_command"]


_to_option = click.option(
    "--to", "to", default=None, help="Repository: folder, http(s):// URL or s3://bucket/prefix."
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
@_token_option
@click.option("--preview", type=click.Path(dir_okay=False), default=None, help="PNG preview.")
@reports_errors
def publish_command(archive: str, to: str | None, token: str | None, preview: str | None) -> None:
    """Check ARCHIVE (safe, complete, valid, hashes) and publish it to the repository."""
    from atlasmith.repository import open_configured_repository

    with open_configured_repository(to, token) as repo:
        entry = repo.publish(archive, preview)
    click.echo(f"published {entry.archive} ({entry.size} bytes)\nsha256: {entry.sha256}")


@click.command("release")
@click.argument("scripts_dir", type=click.Path(file_okay=False, exists=True))
@_to_option
@_token_option
@source_dir_option
@click.option("--all-resolutions", is_flag=True, help="Release every resolution a script offers.")
@reports_errors
def release_command(
    scripts_dir: str,
    to: str | None,
    token: str | None,
    source_dir: str | None,
    all_resolutions: bool,
) -> None:
    """Build and publish every script in SCRIPTS_DIR whose version is not yet published."""
    from atlasmith.release import release
    from atlasmith.repository import open_configured_repository

    with open_configured_repository(to, token) as repo:
        report = release(scripts_dir, repo, source_dir, all_resolutions=all_resolutions)
    click.echo(report.render())
    if not report.ok:
        raise SystemExit(1)


@click.command("yank")
@click.argument("name")
@click.argument("version")
@_to_option
@_token_option
@click.option("--reason", default=None, help="Why (shown to people who pinned the version).")
@reports_errors
def yank_command(
    name: str, version: str, to: str | None, token: str | None, reason: str | None
) -> None:
    """Withdraw NAME VERSION: still downloadable by exact version, never chosen as latest."""
    from atlasmith.repository import open_configured_repository

    with open_configured_repository(to, token) as repo:
        entry = repo.yank(name, version, reason)
    click.echo(f"yanked {entry.atlas_name} {entry.version}")


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
