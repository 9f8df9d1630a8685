"""What the commands share: one way to report errors, the options several take, tables."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

__all__ = [
    "print_rows",
    "reports_errors",
    "scheduler_option",
    "source_dir_option",
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

    return run


def print_rows(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    """Rows as JSON, or as a table titled with their count (the ``path`` column left out)."""
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


source_dir_option = click.option(
    "--source-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding the scripts' declared source files (e.g. ../shared/data).",
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
