"""A repository in S3-compatible object storage (AWS S3, MinIO, Ceph, R2...), through s3fs.

Objects are written whole (an S3 PUT is atomic). Index changes are serialised by a lock
object created with a conditional write (``If-None-Match: *``): only one publisher can create
it; a lock older than ``lock_ttl`` seconds (a crashed publisher) is broken.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from atlasmith.errors import RepositoryError
from atlasmith.names import ARCHIVE_SUFFIX
from atlasmith.repository._base import StorageRepository

__all__ = ["S3Repository"]

_LOCK_NAME = ".atlasmith-index.lock"
_log = logging.getLogger("atlasmith.repository")


class S3Repository(StorageRepository):
    """A repository under ``s3://bucket/prefix``.

    Parameters
    ----------
    url
        ``s3://bucket`` or ``s3://bucket/prefix``.
    fs
        An ``s3fs.S3FileSystem`` to use; otherwise one is made from ``storage_options`` and
        the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...).
    lock_timeout
        Seconds to wait for another publisher.
    lock_ttl
        Age in seconds after which a lock object is considered abandoned.
    storage_options
        Passed to ``s3fs.S3FileSystem`` (e.g. ``endpoint_url``, ``key``, ``secret``).
    """

    def __init__(
        self,
        url: str,
        fs: Any = None,
        lock_timeout: float = 600.0,
        lock_ttl: float = 3600.0,
        **storage_options: Any,
    ) -> None:
        if not url.startswith("s3://") or not url.removeprefix("s3://").strip("/"):
            raise RepositoryError(f"{url!r} is not an S3 URL: expected s3://bucket[/prefix].")
        self.location = url.rstrip("/")
        self.root = url.removeprefix("s3://").strip("/")
        self.fs = fs if fs is not None else _filesystem(storage_options)
        self.lock_timeout = lock_timeout
        self.lock_ttl = lock_ttl

    def __repr__(self) -> str:
        return f"S3Repository({self.location!r})"

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _published_traces(self) -> list[str]:
        try:
            listed = self.fs.ls(self.root, detail=False, refresh=True)
        except FileNotFoundError:
            listed = []
        except OSError as err:
            raise RepositoryError(f"Cannot list {self.location}: {err}") from err
        names = [str(key).rsplit("/", 1)[-1] for key in listed]
        archives = sorted(n for n in names if n.endswith(ARCHIVE_SUFFIX) and not n.startswith("."))
        return [*super()._published_traces(), *archives]

    def read_bytes(self, name: str) -> bytes | None:
        """The content of an object of the layout, or None when it does not exist."""
        try:
            return cast(bytes, self.fs.cat_file(self._key(name)))
        except FileNotFoundError:
            return None
        except OSError as err:
            raise RepositoryError(f"Cannot read {self.location}/{name}: {err}") from err

    def _open(self, name: str) -> BinaryIO:
        try:
            return cast(BinaryIO, self.fs.open(self._key(name), "rb"))
        except FileNotFoundError as err:
            raise self._missing(name) from err

    def _delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._key(name))

    def _write_bytes(self, name: str, data: bytes) -> None:
        with self._writing(name):
            self.fs.pipe_file(self._key(name), data)

    def _write_file(self, name: str, source: Path) -> None:
        with self._writing(name):
            self.fs.put_file(str(source), self._key(name))

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        try:
            yield
        except FileExistsError:
            raise  # a conditional write that lost: the caller decides
        except OSError as err:
            raise RepositoryError(
                f"Cannot write {self.location}/{name}: {err}. Check that the bucket exists and "
                "that the credentials may write to it."
            ) from err

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        key = self._key(_LOCK_NAME)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while not self._try_lock(key):
            if time.monotonic() > deadline:
                raise RepositoryError(
                    f"Another publish holds {self.location}/{_LOCK_NAME} for over "
                    f"{self.lock_timeout} s; retry later."
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        try:
            yield
        finally:
            self.fs.rm_file(key)

    def _try_lock(self, key: str) -> bool:
        """Create the lock object if nobody holds it (conditional write); break a stale one."""
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        try:
            with self._writing(_LOCK_NAME):
                self.fs.pipe_file(key, json.dumps(owner).encode(), mode="create")
        except FileExistsError:
            self._break_if_stale(key)
            return False
        return True

    def _break_if_stale(self, key: str) -> None:
        try:
            modified = self.fs.info(key, refresh=True).get("LastModified")
        except FileNotFoundError:
            return
        if isinstance(modified, datetime):
            age = (datetime.now(UTC) - modified).total_seconds()
            if age > self.lock_ttl:
                _log.warning("breaking abandoned lock %s (%.0f s old)", key, age)
                self.fs.rm_file(key)


def _filesystem(storage_options: dict[str, Any]) -> Any:
    try:
        import s3fs
    except ImportError as err:
        raise RepositoryError("S3 repositories need s3fs: pip install 'atlasmith[s3]'.") from err
    return s3fs.S3FileSystem(**storage_options)
