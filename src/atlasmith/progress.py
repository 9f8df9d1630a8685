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

__all__ = [
    "BYTE_STEPS",
    "both",
    "count_bar",
    "download_bar",
    "ignore",
    "ignore_step",
    "interactive",
    "step_display",
]


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
def count_bar(label: str, enabled: bool | None = None) -> Iterator[ProgressCallback]:
    """A bar of done / total items (e.g. meshes written) on stderr; yields its callback, which
    draws only when ``enabled`` (default: :func:`interactive`)."""
    with step_display(enabled) as steps:

        def update(done: int, total: int) -> None:
            steps(label, done, total)

        yield update


#: A step whose name has one of these words counts bytes (shown as sizes).
BYTE_STEPS = ("uploading", "downloading")


@contextmanager
def step_display(enabled: bool | None = None) -> Iterator[StepProgress]:
    """One line per step of a long job on stderr, with a bar where the step counts items
    (bytes for a step whose name has the word "uploading" or "downloading",
    :data:`BYTE_STEPS`); yields the ``(step, done, total)`` callback that drives it.

    A step starts when the callback first names it and ends when another is named; with
    total 0 it counts nothing (a spinner and a pulsing bar, no ``0/?``). Draws only when
    ``enabled`` (default: :func:`interactive`); otherwise the callback does nothing, so
    piped output and logs stay free of progress lines.
    """
    if not (interactive() if enabled is None else enabled):
        yield ignore_step
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    display = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _amount_column(),
        console=Console(stderr=True),
    )
    steps: list[tuple[str, Any]] = []

    def finish() -> None:  # the last step's bar full; its count, if it had one, at its total
        task = steps[-1][1]
        total = display.tasks[-1].total
        display.update(task, completed=total or 1, total=total or 1)

    def update(step: str, done: int, total: int) -> None:
        if not steps or steps[-1][0] != step:
            if steps:
                finish()
            counts_bytes = any(word in BYTE_STEPS for word in step.split())
            task = display.add_task(step, total=None, bytes=counts_bytes)
            steps.append((step, task))
        task = steps[-1][1]
        if total:  # once counted, a step shows its count to the end
            display.update(task, counted=True)
        display.update(task, completed=done, total=total or None)

    with display:
        yield update
        if steps:
            finish()


def ignore_step(step: str, done: int, total: int) -> None:
    """A step callback that does nothing."""


def _amount_column() -> Any:
    """The column of a step's count: ``done/total`` items, sizes for bytes, blank for a step
    that counts nothing."""
    from rich.progress import DownloadColumn, ProgressColumn
    from rich.text import Text

    sizes = DownloadColumn()

    class AmountColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            if not task.fields.get("counted"):
                return Text("")
            if task.fields.get("bytes"):
                return sizes.render(task)
            return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")

    return AmountColumn()
