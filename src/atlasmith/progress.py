"""Progress display on the terminal: download bars, the steps of a build, mesh counts.

One home for what users watch while atlasmith works. The command line uses it, and so do
``fetch`` and ``BrainGlobeAtlas``, which show a download bar in terminals and notebooks as
BrainGlobe's client does. Without a terminal (or a Jupyter kernel) nothing is drawn and rich
is not even imported; the callbacks still reach any function the caller passes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from atlasmith._types import ProgressCallback, StepProgress

__all__ = ["both", "count_bar", "download_bar", "ignore", "interactive", "step_display"]


def ignore(completed: int, total: int) -> None:
    """A progress callback that does nothing."""


def both(first: ProgressCallback | None, second: ProgressCallback) -> ProgressCallback:
    """One progress callback that calls two (``first`` may be None)."""
    if first is None:
        return second

    def update(completed: int, total: int) -> None:
        first(completed, total)
        second(completed, total)

    return update


def interactive() -> bool:
    """Whether someone is watching: stderr is a terminal, or this is a Jupyter kernel."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


@contextmanager
def download_bar(
    label: str, extra: ProgressCallback | None = None, enabled: bool | None = None
) -> Iterator[ProgressCallback]:
    """A download bar (bytes, speed, time left) on stderr that also calls ``extra``.

    Yields the ``(completed, total)`` callback to pass to a download; it draws only when
    ``enabled`` (default: :func:`interactive`).
    """
    if not (interactive() if enabled is None else enabled):
        yield extra if extra is not None else ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(
        "{task.description}", *columns, console=Console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(completed: int, total: int) -> None:
            bar.update(task, completed=completed, total=total or None)

        yield both(extra, update)


@contextmanager
def count_bar(label: str) -> Iterator[ProgressCallback]:
    """A bar of done / total items (e.g. meshes written); yields its callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn()) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def step_display() -> Iterator[StepProgress]:
    """One line per step of a long job, with a bar where the step counts items; yields the
    ``(step, done, total)`` callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    display = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()
    )
    steps: list[tuple[str, Any]] = []

    def update(step: str, done: int, total: int) -> None:
        if not steps or steps[-1][0] != step:
            if steps:
                display.update(steps[-1][1], completed=1, total=1)
            steps.append((step, display.add_task(step, total=total or None)))
        display.update(steps[-1][1], completed=done, total=total or None)

    with display:
        yield update
        if steps:
            display.update(steps[-1][1], completed=1, total=1)
