"""Crash points: kill a process with SIGKILL just before its K-th rename.

Every multi-step change of atlasmith (publish, yank, unyank, upload, install, update,
remove) moves its results into place by renames (``os.replace``, ``os.rename``, and the
``renameat2(RENAME_EXCHANGE)`` of :mod:`atlasmith._fs`); the states a crash can leave are the
states between two renames. :func:`arm` makes the K-th rename of this process its last act,
and writes one line per rename to a log file (so a first run with ``k=0`` counts them).

Run as a script, it arms itself from the command line and runs atlasmith's CLI:
``python tests/crash_points.py K LOG -- serve ...``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def arm(k: int, log: str | None = None) -> None:
    """SIGKILL this process just before its ``k``-th rename (never when ``k`` is 0)."""
    import atlasmith._fs as fs

    count = 0

    def wrap(rename: Callable[..., Any]) -> Callable[..., Any]:
        def renamer(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            if log is not None:
                with open(log, "a") as out:
                    out.write(f"{count} {os.fspath(args[1]) if len(args) > 1 else ''}\n")
            if count == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return rename(*args, **kwargs)

        return renamer

    os.rename = wrap(os.rename)  # type: ignore[assignment]
    os.replace = wrap(os.replace)  # type: ignore[assignment]
    fs._exchange = wrap(fs._exchange)  # type: ignore[attr-defined]


def interrupt_after(suffix: str) -> None:
    """Send this process SIGINT (Ctrl-C) right after its first rename onto a path ending
    with ``suffix`` (e.g. the moment a download is verified and moved into place)."""
    sent = False

    def wrap(rename: Callable[..., Any]) -> Callable[..., Any]:
        def renamer(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            result = rename(*args, **kwargs)
            if not sent and len(args) > 1 and os.fspath(args[1]).endswith(suffix):
                sent = True
                os.kill(os.getpid(), signal.SIGINT)
            return result

        return renamer

    os.rename = wrap(os.rename)  # type: ignore[assignment]
    os.replace = wrap(os.replace)  # type: ignore[assignment]


def count(log: str) -> int:
    """How many renames a run armed with ``log`` made."""
    with open(log) as lines:
        return sum(1 for _ in lines)


if __name__ == "__main__":
    k, log, separator, *cli = sys.argv[1:]
    assert separator == "--", "usage: crash_points.py K LOG -- ATLASMITH_ARGS..."
    arm(int(k), log)
    from atlasmith.cli import main

    sys.argv = ["atlasmith", *cli]
    main()


# --- operations a test kills (run in processes forked by a forkserver) ------------------------


def publish_at(k: int, log: str | None, root: str, archive: str) -> None:
    """Publish ``archive`` to the folder repository ``root``, killed at rename ``k``."""
    from atlasmith.repository import LocalRepository

    arm(k, log)
    LocalRepository(root).publish(archive)


def yank_at(k: int, log: str | None, root: str, atlas_name: str, version: str) -> None:
    """Yank a version of the folder repository ``root``, killed at rename ``k``."""
    from atlasmith.repository import LocalRepository

    arm(k, log)
    LocalRepository(root).yank(atlas_name, version, "withdrawn by the crash test")


def unyank_at(k: int, log: str | None, root: str, atlas_name: str, version: str) -> None:
    """Unyank a version of the folder repository ``root``, killed at rename ``k``."""
    from atlasmith.repository import LocalRepository

    arm(k, log)
    LocalRepository(root).unyank(atlas_name, version)


def remove_at(k: int, log: str | None, cache_dir: str, atlas_name: str) -> None:
    """Remove an installed atlas from the cache ``cache_dir``, killed at rename ``k``."""
    from atlasmith.cache import AtlasCache
    from atlasmith.config import load_settings

    arm(k, log)
    settings = load_settings(repository="http://127.0.0.1:9/unused", cache_dir=cache_dir)
    AtlasCache(settings).remove(atlas_name)
