"""The Repository interface, and the publish / yank logic shared by storage backends."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO, Self

from atlasmith._fs import is_safe_relpath, temporary_folder
from atlasmith._types import StepProgress
from atlasmith.errors import AtlasNotFoundError, RepositoryError
from atlasmith.limits import MAX_PUBLISHED_BYTES
from atlasmith.names import archive_name
from atlasmith.repository._check import V3_PREFIX, CheckedArchive, check_archive
from atlasmith.repository._index import IndexEntry, RepositoryIndex, utc_now
from atlasmith.web import render_site

__all__ = [
    "CONF_NAMES",
    "INDEX_NAME",
    "JOURNAL_NAME",
    "SCRATCH_PREFIXES",
    "V3_CONF",
    "Repository",
    "StorageRepository",
    "check_name",
]

INDEX_NAME = "index.json"
CONF_NAMES = ("last_versions.conf", "latest_versions.conf")
#: BrainGlobe 3's list of latest versions (its client's listing reads it).
V3_CONF = f"{V3_PREFIX}/atlases/last_versions.conf"
#: The intent record of the change in progress (hidden names are never served).
JOURNAL_NAME = ".atlasmith-journal.json"
#: Working folders that publishing and the server make in a repository folder (hidden).
SCRATCH_PREFIXES = ("atlasmith-check-", "atlasmith-v3-", "atlasmith-upload-")
_log = logging.getLogger("atlasmith.repository")


def check_name(name: str) -> str:
    """Refuse a repository file name that could leave the repository (``..``, absolute)."""
    if not isinstance(name, str) or not is_safe_relpath(name) or name.startswith("."):
        raise RepositoryError(
            f"{name!r} is not a file of the repository layout: names are relative paths such "
            "as 'index.json' or 'previews/allen_mouse_25um_v1.2.png', without '..'."
        )
    return name


class Repository(ABC):
    """An atlas repository: ``index.json``, the ``.conf`` files, archives and previews.

    Backends: :class:`LocalRepository` (a directory), :class:`HttpRepository` (any static web
    server; writes through atlasmith's server), :class:`S3Repository` (S3-compatible storage).
    Open one with :func:`open_repository`.
    """

    #: Where the repository is (path or URL), for messages.
    location: str

    def read_index(self) -> RepositoryIndex:
        """Read and parse ``index.json`` (an empty index when the repository is new)."""
        data = self.read_bytes(INDEX_NAME)
        return RepositoryIndex() if data is None else RepositoryIndex.from_json(data)

    @abstractmethod
    def read_bytes(self, name: str) -> bytes | None:
        """The content of a file of the layout, or None when it does not exist."""

    def open_file(self, name: str) -> BinaryIO:
        """Open a file of the layout for reading (binary); AtlasNotFoundError when missing."""
        return self._open(check_name(name))

    @abstractmethod
    def _open(self, name: str) -> BinaryIO:
        """Open an existing file (name already checked)."""

    @abstractmethod
    def publish(
        self,
        archive: str | Path,
        preview: str | Path | None = None,
        progress: StepProgress | None = None,
    ) -> IndexEntry:
        """Check an archive, store it with its preview, and add it to the index.

        ``progress(step, done, total)`` is called as it goes: ``checking <archive>`` and
        ``storing <archive>`` here, ``uploading <archive>`` (bytes sent of the archive's
        size) and ``checking on the server`` for an HTTP repository.

        Raises
        ------
        AtlasExistsError
            When that version is already published (published versions are immutable).
        ArchiveError, IntegrityError, ValidationError
            When the archive fails a check; nothing in the repository changes.
        """

    @abstractmethod
    def yank(self, atlas_name: str, version: str, reason: str | None = None) -> IndexEntry:
        """Withdraw a version: it stays downloadable by exact version, never chosen as latest.

        Clients install it only when it is named exactly, with a warning that shows
        ``reason``; without one, a version yanked before keeps its reason.

        Raises
        ------
        AtlasNotFoundError
            When the repository has no such version (nothing is created or changed).
        """

    @abstractmethod
    def unyank(self, atlas_name: str, version: str) -> IndexEntry:
        """Offer a yanked version again (its reason is dropped); nothing changes for a version
        that is not yanked.

        Raises
        ------
        AtlasNotFoundError
            When the repository has no such version (nothing is created or changed).
        """

    def exists(self) -> bool:
        """Whether the repository has an ``index.json`` (a typo in a location has none)."""
        return self.read_bytes(INDEX_NAME) is not None

    def close(self) -> None:  # noqa: B027 (a no-op unless a backend holds connections)
        """Release network connections (nothing to do for most backends)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _missing(self, name: str) -> AtlasNotFoundError:
        return AtlasNotFoundError(f"{name!r} is not in the repository at {self.location}.")


class StorageRepository(Repository):
    """A repository the process writes to directly (a directory, an object store).

    Subclasses provide byte-level access and a lock; publishing is the same everywhere:
    check the archive, then under the lock re-read the index, refuse an existing version,
    write the archive and its companions, and finally the index and the files rendered
    from it.

    Every change (publish, yank, unyank) is crash-safe in one way: under the lock, an intent record
    (:data:`JOURNAL_NAME`: the operation, the files it will store, the sha256 of the index it
    will write) is written first and deleted last. The next change, or :meth:`recover` (which
    ``atlasmith serve`` runs at start), finds a record left by a killed process and finishes
    the change when ``index.json`` is the one it was writing (the ``.conf`` files and pages
    are rendered again) or rolls it back (the files it stored are deleted, the pages rendered
    from the index there is), then deletes the temporary files the killed process left.
    """

    max_bytes: int = MAX_PUBLISHED_BYTES

    def scratch_dir(self) -> Path | None:
        """A folder for temporary files on the repository's disk (None: the system's)."""
        return None

    def read_index(self) -> RepositoryIndex:
        """``index.json``; an empty index only for a repository with nothing published.

        Raises
        ------
        RepositoryError
            ``index.json`` is missing or unreadable while the repository holds published files:
            taking that for an empty repository would drop every published version from the
            next index written (and let a published version be published again).
        """
        data = self.read_bytes(INDEX_NAME)
        if data is not None:
            return RepositoryIndex.from_json(data)
        traces = self._published_traces()
        if traces:
            raise RepositoryError(
                f"{self.location} has no readable {INDEX_NAME}, but it holds published files "
                f"({', '.join(traces[:3])}): its index was lost or damaged. Nothing was "
                f"changed. Restore {INDEX_NAME} (from a backup, or a client's copy in "
                f"<cache>/.atlasmith/{INDEX_NAME}) before publishing or yanking."
            )
        return RepositoryIndex()

    def _published_traces(self) -> list[str]:
        """Files that only a repository with published versions has (the rendered ``.conf``
        files; backends that can list add archives)."""
        names = [*CONF_NAMES, V3_CONF]
        return [name for name in names if self.read_bytes(name) is not None]

    @abstractmethod
    def _write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file atomically (readers see the old or the new content)."""

    @abstractmethod
    def _write_file(self, name: str, source: Path) -> None:
        """Copy a local file into the repository atomically."""

    @abstractmethod
    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock over index changes, across processes (and machines for S3)."""

    def publish(
        self,
        archive: str | Path,
        preview: str | Path | None = None,
        progress: StepProgress | None = None,
    ) -> IndexEntry:
        """Check ``archive`` and publish it, with the same atlas as BrainGlobe 3 components
        under ``atlas/`` (see :meth:`Repository.publish`)."""
        scratch = self.scratch_dir()
        name = Path(archive).name
        with temporary_folder(scratch or tempfile.gettempdir(), SCRATCH_PREFIXES[1]) as v3_dir:
            if progress is not None:
                progress(f"checking {name}", 0, 0)
            checked = check_archive(archive, preview, self.max_bytes, scratch, v3_dir)
            if progress is not None:
                progress(f"storing {name}", 0, 0)
            with self._lock():
                self._recover()
                entry = checked.entry(utc_now())
                index = self.read_index().with_entry(entry)
                files = self._version_files(checked)
                self._change(index, "publish", entry, files)
        _log.info("published %s (%d bytes, sha256 %s)", entry.archive, entry.size, entry.sha256)
        return entry

    def yank(self, atlas_name: str, version: str, reason: str | None = None) -> IndexEntry:
        """Mark a version as yanked and re-render the ``.conf`` files and pages."""
        entry = self._set_yanked(atlas_name, version, True, reason)
        _log.info("yanked %s %s (%s)", atlas_name, version, entry.yank_note)
        return entry

    def unyank(self, atlas_name: str, version: str) -> IndexEntry:
        """Offer a yanked version again and re-render the ``.conf`` files and pages."""
        entry = self._set_yanked(atlas_name, version, False)
        _log.info("unyanked %s %s", atlas_name, version)
        return entry

    def _set_yanked(
        self, atlas_name: str, version: str, yanked: bool, reason: str | None = None
    ) -> IndexEntry:
        """Yank or unyank through :meth:`_change` (an index that would not change is not
        written again)."""
        # checked before the lock, whose taking creates the folder (or the S3 lock object):
        # an unknown version, or a mistyped location, changes nothing
        self.read_index().entry(atlas_name, version)
        with self._lock():
            self._recover()
            current = self.read_index()
            if yanked:
                index = current.with_yanked(atlas_name, version, reason)
            else:
                index = current.with_unyanked(atlas_name, version)
            entry = index.entry(atlas_name, version)
            if index != current:
                self._change(index, "yank" if yanked else "unyank", entry, {})
        return entry

    def recover(self) -> str | None:
        """Finish or roll back a change that a killed process left half done, and delete the
        working files killed processes left; return what was done (None: nothing was left).
        Publishing, yanking and unyanking do this first; ``atlasmith serve`` does it at start."""
        with self._lock():
            return self._recover()

    def _change(
        self,
        index: RepositoryIndex,
        operation: str,
        entry: IndexEntry,
        files: dict[str, Path | bytes],
    ) -> None:
        """Store ``files``, then write the pages, ``index.json`` (the commit point) and the
        ``.conf`` files, with the intent record around it all (called with the lock held)."""
        data = index.to_json()
        record = {
            "operation": operation,
            "atlas": entry.atlas_name,
            "version": entry.version,
            "files": list(files),
            "index_sha256": hashlib.sha256(data).hexdigest(),
            "by": f"{socket.gethostname()}:{os.getpid()}",
            "started": utc_now(),
        }
        self._write_bytes(JOURNAL_NAME, json.dumps(record, indent=1).encode())
        try:
            for name, source in files.items():
                if isinstance(source, bytes):
                    self._write_bytes(name, source)
                else:
                    self._write_file(name, source)
            self._write_pages(index)
            self._write_bytes(INDEX_NAME, data)  # the commit point
            self._write_confs(index)
        except BaseException:
            with contextlib.suppress(Exception):  # else the record stays for the next change
                self._recover()
            raise
        self._delete(JOURNAL_NAME)

    def _recover(self) -> str | None:
        """:meth:`recover`, with the lock held."""
        self._sweep_scratch()
        data = self.read_bytes(JOURNAL_NAME)
        if data is None:  # at most the record itself was being written
            self._sweep_temporaries([JOURNAL_NAME])
            return None
        record = _parse_record(data)
        files = [name for name in record["files"] if _is_layout_name(name)]
        current = self.read_bytes(INDEX_NAME)
        committed = current is not None and (
            hashlib.sha256(current).hexdigest() == record["index_sha256"]
        )
        if not committed:  # stored but never indexed: nothing refers to them
            self._discard(files)
        index = self.read_index()
        rendered = self._write_pages(index)
        self._write_confs(index)
        self._sweep_temporaries([*files, *rendered, INDEX_NAME, *CONF_NAMES, V3_CONF])
        self._delete(JOURNAL_NAME)
        what = "{} an interrupted {} of {} {}".format(
            "finished" if committed else "rolled back",
            *(record[key] for key in ("operation", "atlas", "version")),
        )
        left = f"left by {record['by']} at {record['started']}"
        _log.warning("%s in %s (%s)", what, self.location, left)
        return what

    def _sweep_scratch(self) -> None:  # noqa: B027 (nothing to do without a scratch folder)
        """Delete the working folders killed publishers left in the repository (its disk)."""

    def _sweep_temporaries(self, names: list[str]) -> None:  # noqa: B027 (nothing for S3)
        """Delete the temporary files a killed writer left beside ``names`` (lock held)."""

    def _discard(self, names: list[str]) -> None:
        """Delete files a failed publish stored (best effort: the failure is what is raised)."""
        for name in reversed(names):
            try:
                self._delete(name)
            except OSError as err:
                _log.warning("could not remove %s after a failed publish: %s", name, err)

    @abstractmethod
    def _delete(self, name: str) -> None:
        """Delete a stored file (a missing one is fine)."""

    def _version_files(self, checked: CheckedArchive) -> dict[str, Path | bytes]:
        """A version's files in the order they are stored: components first, their manifest
        last, then the archive and its companions."""
        files: dict[str, Path | bytes] = {}
        if checked.v3 is not None:
            staged = checked.v3
            for relative in staged.files:
                files[f"{V3_PREFIX}/{relative}"] = staged.root / relative
            files[f"{V3_PREFIX}/{staged.manifest}"] = staged.root / staged.manifest
        files[archive_name(checked.atlas_name, checked.version)] = checked.path
        files[f"structures/{checked.stem}.json"] = checked.structures_json
        if checked.preview_png is not None:
            files[f"previews/{checked.stem}.png"] = checked.preview_png
        return files

    def _write_pages(self, index: RepositoryIndex) -> list[str]:
        names = []
        for name, page in render_site(index, self.read_bytes).items():
            self._write_bytes(check_name(name), page)
            names.append(name)
        return names

    def _write_confs(self, index: RepositoryIndex) -> None:
        conf = index.render_conf().encode()
        for name in CONF_NAMES:
            self._write_bytes(name, conf)
        self._write_bytes(V3_CONF, index.render_v3_conf().encode())


def _parse_record(data: bytes) -> dict[str, Any]:
    """An intent record; a damaged one is read as a change of unknown files (the pages and
    ``.conf`` files are still rendered again)."""
    unknown: dict[str, Any] = {"operation": "change", "atlas": "?", "version": "?", "files": []}
    try:
        record = json.loads(data)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    merged = {**unknown, "index_sha256": None, "by": "?", "started": "?", **record}
    if not isinstance(merged["files"], list):
        merged["files"] = []
    return merged


def _is_layout_name(name: object) -> bool:
    """A file name a record may list for deletion: inside the layout, never the index."""
    try:
        return check_name(name) != INDEX_NAME  # type: ignore[arg-type]
    except RepositoryError:
        return False
