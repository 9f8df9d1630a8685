"""A tmpfs mounted for one test: a small disk, or a read-only one (the tests run as root,
whom permission bits would not stop)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (e.g. ``size=8m``, ``ro,size=1m``) on ``folder`` (made
    if missing) for the block, and unmount it after; a mount that fails fails the test."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert mounted.returncode == 0, f"mounting a tmpfs needs root: {mounted.stderr.strip()}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
