"""What the commands share: one way to report errors, the options several take, tables."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import click

__all__ = [
    "fit_columns",
    "print_rows",
    "reports_errors",
    "scheduler_option",
    "shows_yanked_warnings",
    "source_dir_option",
    "os_error_message",
    "terminal_width",
    "workers_option",
]

Params = ParamSpec("Params")
Result = TypeVar("Result")


def reports_errors(command: Callable[Params, Result]) -> Callable[Params, Result]:
    """Show atlasmith's errors (and lost connections) as one clear message, exit status 1.

    Every message already says what failed and what to do; a traceback would only bury it.
    """

    @functools.wraps(command)
    def run(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        from atlasmith.errors import AtlasmithError

        try:
            return command(*args, **kwargs)
        except (AtlasmithError, ConnectionError) as err:
            raise click.ClickException(str(err)) from err
        except OSError as err:  # a file system refusal: say which path and why
            raise click.ClickException(os_error_message(err)) from err

    return run


def os_error_message(err: OSError) -> str:
    """One line for a file system error: the cause, the path(s), and what to do.

    >>> os_error_message(PermissionError(13, "Permission denied", "/srv/out"))
    'Permission denied: /srv/out. Check that you may write there, or choose another folder.'
    """
    import errno

    cause = err.strerror or type(err).__name__
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    advice = {
        errno.EACCES: "Check that you may write there, or choose another folder.",
        errno.EPERM: "Check that you may write there, or choose another folder.",
        errno.EROFS: "That file system is read-only: choose a folder on a writable disk.",
        errno.ENOSPC: "Free some space on that disk, or choose a folder on another one.",
        errno.ENOENT: "Check the path.",
        errno.ENOTDIR: "A file is in the way where a folder is expected: check the path.",
        errno.EISDIR: "A folder is in the way where a file is expected: check the path.",
    }.get(err.errno or 0, "")
    text = f"{cause}: {paths}." if paths else f"{cause}."
    return f"{text} {advice}".strip()


@contextlib.contextmanager
def shows_yanked_warnings() -> Iterator[None]:
    """Print each :class:`~atlasmith.errors.YankedVersionWarning` of the block as one
    ``warning: ...`` line on stderr (the publisher's reason included); other warnings are
    shown as Python shows them."""
    import warnings

    from atlasmith.errors import YankedVersionWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", YankedVersionWarning)
            yield
    finally:  # shown once the recording has stopped (inside, showwarning records)
        for found in caught:
            if issubclass(found.category, YankedVersionWarning):
                click.echo(f"warning: {found.message}", err=True)
            else:
                warnings.showwarning(found.message, found.category, found.filename, found.lineno)


def print_rows(
    rows: list[dict[str, Any]], as_json: bool, title: str, keep: Sequence[str] = ("name",)
) -> None:
    """Rows as JSON, or as a table titled with their count (the ``path`` column left out).

    The table fits the terminal (:func:`terminal_width`): columns not in ``keep`` are left
    out until it does (empty ones first, then the rightmost), and a note on stderr names them.
    No cell is ever cut short, so only a name wider than the terminal makes a line wrap.
    Output that is not a terminal gets every column.
    """
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    measure = Console(width=100_000)  # wide enough that measuring never folds a cell
    width = terminal_width()
    columns, left_out = fit_columns(
        rows, keep, width, lambda shown: measure.measure(_table(rows, shown, title)).maximum
    )
    table = _table(rows, columns, title)
    Console(width=max(width, measure.measure(table).maximum)).print(table)
    if left_out:
        shown = ", ".join(c.replace("_", " ") for c in left_out)
        click.echo(
            f"note: left out to fit {width} columns: {shown} (--json shows every field)", err=True
        )


def fit_columns(
    rows: list[dict[str, Any]],
    keep: Sequence[str],
    width: int,
    measure: Callable[[list[str]], int],
) -> tuple[list[str], list[str]]:
    """The columns of ``rows`` (``path`` aside) to show within ``width`` (0: no limit), and
    those left out, in table order: columns not in ``keep`` go, empty ones first, then the
    rightmost, until ``measure(columns)`` fits (pure).

    >>> rows = [{"name": "a", "note": None, "size": 12}]
    >>> fit_columns(rows, ["name"], 5, lambda columns: 4 * len(columns))
    (['name'], ['note', 'size'])
    """
    columns = [k for k in (rows[0] if rows else {}) if k != "path"]
    optional = [c for c in columns if c not in keep]
    empty = [c for c in optional if all(row[c] in (None, "") for row in rows)]
    droppable = [*reversed(empty), *reversed([c for c in optional if c not in empty])]
    shown = list(columns)
    while width and droppable and measure(shown) > width:
        shown.remove(droppable.pop(0))
    return shown, [c for c in columns if c not in shown]


def terminal_width() -> int:
    """The width of the terminal that standard output goes to (``COLUMNS`` when set); 0 when
    it goes elsewhere (a pipe, a file), where lines have no width to fit."""
    import shutil

    return shutil.get_terminal_size(fallback=(0, 0)).columns


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> Any:
    """A rich table of ``columns`` of ``rows`` whose cells are never folded or cut."""
    from rich.table import Table

    table = Table(title=f"{len(rows)} {title}")
    for column in columns:
        table.add_column(column.replace("_", " "), no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    return table


source_dir_option = click.option(
    "--source-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding the script's declared source files, under the relative paths the "
    "script declares (e.g. ~/raw-data holding allen_mouse_100um/reference.tiff).",
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local processes for mesh generation (default: all cores).",
)
scheduler_option = click.option(
    "--scheduler", default=None, help="dask.distributed scheduler address (tcp://host:8786)."
)
