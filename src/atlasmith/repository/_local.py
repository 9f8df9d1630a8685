"""A repository in a local directory (also what ``atlasmith serve`` serves)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock

from atlasmith._fs import atomic_file, atomic_write, sweep_unclaimed
from atlasmith.errors import RepositoryError
from atlasmith.names import ARCHIVE_SUFFIX
from atlasmith.repository._base import (
    JOURNAL_NAME,
    SCRATCH_PREFIXES,
    StorageRepository,
    check_name,
)

__all__ = ["LOCK_NAME", "LocalRepository"]

#: Lock file in the repository folder; hidden names are never served.
LOCK_NAME = ".atlasmith-index.lock"
_log = logging.getLogger("atlasmith.repository")


class LocalRepository(StorageRepository):
    """A repository in a directory; writes are atomic and serialised with a file lock.

    Parameters
    ----------
    root
        The repository folder (created on the first publish).
    lock_timeout
        Seconds to wait for another publisher before giving up with RepositoryError.

    Examples
    --------
    >>> import tempfile
    >>> LocalRepository(tempfile.mkdtemp()).read_index().names()
    []
    """

    def __init__(self, root: str | Path, lock_timeout: float = 600.0) -> None:
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise RepositoryError(f"{self.root} is not a directory: a repository is a folder.")
        self.location = str(self.root)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"LocalRepository({self.location!r})"

    def path(self, name: str) -> Path:
        """The local path of a file of the layout (which may not exist)."""
        path = (self.root / (name if name == JOURNAL_NAME else check_name(name))).resolve()
        if not path.is_relative_to(self.root):
            raise RepositoryError(f"{name!r} resolves outside the repository {self.root}.")
        return path

    def scratch_dir(self) -> Path:
        """The repository folder itself: archives are checked on the disk they will live on
        (temporary names are hidden, so never served)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def _published_traces(self) -> list[str]:
        found = self.root.glob(f"*{ARCHIVE_SUFFIX}")
        archives = sorted(p.name for p in found if p.is_file() and not p.name.startswith("."))
        return [*super()._published_traces(), *archives]

    def _sweep_scratch(self) -> None:
        freed = sweep_unclaimed(self.root, SCRATCH_PREFIXES)
        if freed:
            _log.warning("removed %d bytes that killed publishes left in %s", freed, self.root)

    def _sweep_temporaries(self, names: list[str]) -> None:
        """Delete the hidden ``.<name>.XXXX.tmp`` files of :func:`atomic_file` in the folders
        of ``names``: with the lock held, no writer is using one."""
        folders = {self.path(name).parent for name in names}
        for folder in sorted(folders):
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                        Path(entry.path).unlink(missing_ok=True)

    def read_bytes(self, name: str) -> bytes | None:
        """The content of a file of the layout, or None when it does not exist."""
        path = self.path(name)
        if os.path.lexists(path) and not path.is_file():
            raise RepositoryError(
                f"{path} is not a file (a folder or a broken link in its place): the "
                "repository is damaged. Move it away and restore the file."
            )
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError as err:
            raise RepositoryError(f"Cannot read {path}: {err.strerror or err}.") from err

    def _open(self, name: str) -> BinaryIO:
        path = self.path(name)
        if not path.is_file():
            raise self._missing(name)
        return path.open("rb")

    def _delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def _write_bytes(self, name: str, data: bytes) -> None:
        atomic_write(self.path(name), data)  # hidden temporary names are never served

    def _write_file(self, name: str, source: Path) -> None:
        with atomic_file(self.path(name)) as tmp:
            shutil.copyfile(source, tmp)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / LOCK_NAME, timeout=self.lock_timeout)
        try:
            lock.acquire()
        except TimeoutError as err:
            raise RepositoryError(
                f"Another publish holds the lock on {self.root} for over {self.lock_timeout} s; "
                f"retry later (or remove {LOCK_NAME} if no publish is running)."
            ) from err
        try:
            yield
        finally:
            lock.release()
