"""Safe reading of archives that come from anywhere: inspection and extraction.

:func:`inspect_archive` and :func:`safe_extract` accept only regular files and folders under
one top-level folder and refuse everything else with an :class:`~atlasmith.errors.ArchiveError`:

* absolute paths, ``..`` components, backslashes and drive letters;
* symbolic links and hard links (wherever they point: a package never needs them),
  character and block devices, FIFOs, sparse and other special members;
* duplicated paths, members outside the single top-level folder;
* a total (declared) size above ``max_bytes`` or more than ``max_members`` members, which
  stops decompression bombs before anything large is written;
* data that is not gzip, a truncated stream, or a member shorter than its header says.

Permission bits are not trusted either: setuid, setgid and sticky bits are *stripped*, and every
extracted file gets mode 0644 (0755 when an execute bit was set), every folder 0755.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import queue
import shutil
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from atlasmith._fs import FILE_MODE, FOLDER_MODE
from atlasmith._types import PathLike
from atlasmith.errors import ArchiveError, DiskFullError
from atlasmith.limits import DISK_MARGIN_BYTES, MAX_ARCHIVE_MEMBERS, MAX_EXTRACTED_BYTES
from atlasmith.package._hashes import CHUNK
from atlasmith.package._manifest import MANIFEST_NAME

__all__ = ["ArchiveInfo", "inspect_archive", "safe_extract", "top_folder"]

_EXEC_MODE = 0o755
Source = str | Path | IO[bytes]


@dataclass(frozen=True)
class ArchiveInfo:
    """What an archive holds, as read by :func:`inspect_archive` (nothing extracted).

    Attributes
    ----------
    top : str
        The single top-level folder, e.g. ``"allen_mouse_100um_v1.2"``.
    files : tuple of (str, int)
        Every regular file as (path relative to ``top``, size in bytes), in archive order.
    folders : tuple of str
        Every folder below ``top`` (relative paths), in archive order.
    total_size : int
        Sum of the file sizes: the disk space extraction needs.
    """

    top: str
    files: tuple[tuple[str, int], ...]
    folders: tuple[str, ...]
    total_size: int

    @property
    def has_manifest(self) -> bool:
        """Whether the archive carries a ``manifest.json`` next to the atlas files."""
        return any(name == MANIFEST_NAME for name, _ in self.files)


class _Checker:
    """Checks members one by one as they stream past; raises ArchiveError on the first bad one."""

    def __init__(self, source: str, max_bytes: int, max_members: int) -> None:
        self.source, self.max_bytes, self.max_members = source, max_bytes, max_members
        self.top: str | None = None
        self.seen: set[str] = set()
        self.files: set[str] = set()
        self.total = 0

    def fail(self, member: str, problem: str) -> ArchiveError:
        return ArchiveError(
            f"Refusing archive {self.source}: member {member!r} {problem}. The archive is "
            "damaged or not an atlas package; nothing from it was installed. Get the archive "
            "again from a trusted repository."
        )

    def check(self, member: tarfile.TarInfo) -> str:
        """Validate one member; return its path below the top folder ('' for the top itself)."""
        if len(self.seen) >= self.max_members:
            raise self.fail(member.name, f"is past the limit of {self.max_members} members")
        parts = self._parts(member)
        self._check_type(member)
        if self.top is None:
            self.top = parts[0]
        if parts[0] != self.top:
            raise self.fail(member.name, f"is outside the single top-level folder {self.top!r}")
        rel = "/".join(parts[1:])
        if rel in self.seen:
            raise self.fail(member.name, "appears twice")
        for depth in range(1, len(parts) - 1):
            if "/".join(parts[1 : depth + 1]) in self.files:
                raise self.fail(member.name, "is inside a path that is a file, not a folder")
        self.seen.add(rel)
        if member.isfile():
            self.files.add(rel)
        if rel == "" and not member.isdir():
            raise self.fail(member.name, "is a file where the top-level folder should be")
        self.total += member.size if member.isfile() else 0
        if self.total > self.max_bytes:
            raise self.fail(
                member.name,
                f"takes the uncompressed size to {self.total} bytes, over the cap of "
                f"{self.max_bytes} bytes (a decompression bomb or a corrupt header)",
            )
        return rel

    def _parts(self, member: tarfile.TarInfo) -> list[str]:
        name = member.name
        if not name or "\x00" in name or "\\" in name:
            raise self.fail(name, "has an empty name, a NUL byte or a backslash")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise self.fail(name, "has an absolute path")
        parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
        if not parts or ".." in parts:
            raise self.fail(name, "points outside the target folder ('..' in its path)")
        return parts

    def _check_type(self, member: tarfile.TarInfo) -> None:
        if member.issym() or member.islnk():
            raise self.fail(member.name, f"is a link (to {member.linkname!r}); links are refused")
        if member.ischr() or member.isblk() or member.isfifo():
            raise self.fail(member.name, "is a device file or a FIFO")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            raise self.fail(member.name, f"has an unsupported tar type {member.type!r}")


def _source_name(source: Source) -> str:
    return str(source) if isinstance(source, str | Path) else getattr(source, "name", "<stream>")


def _open_stream(source: Source) -> tuple[IO[bytes], bool]:
    """(binary stream, whether we opened it); the gzip layer is added by :func:`_walk`."""
    if isinstance(source, str | Path):
        try:
            return open(source, "rb"), True  # noqa: SIM115 (closed by the caller)
        except OSError as err:
            raise ArchiveError(f"Cannot read archive {source}: {err.strerror}.") from err
    return source, False


_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer (CRC32 and size are checked)
_GZIP_READ = 32 * 1024  # compressed bytes per step: at most ~33 MB of output even for a bomb


def _gunzip_blocks(raw: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream (one or more members), in blocks."""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    between = False  # True after a member ended, before the next one starts
    while data := raw.read(_GZIP_READ):
        while data:
            if between and not data.startswith(_GZIP_MAGIC):
                return  # padding after the last member, never part of the tar stream
            between = False
            block = inflater.decompress(data)
            if block:
                yield block
            if not inflater.eof:
                break
            data, inflater, between = inflater.unused_data, zlib.decompressobj(_GZIP_WBITS), True
    if not between and not inflater.eof:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")


class _ThreadedGunzip(io.RawIOBase):
    """Reads a gzip stream decompressed by a background thread (zlib releases the GIL), so
    that decompression overlaps with the caller's parsing and file writes."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._block = b""
        self._offset = 0
        self._finished = False
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _produce(self) -> None:
        try:
            pending: list[bytes] = []
            size = 0
            for block in _gunzip_blocks(self._raw):
                pending.append(block)
                size += len(block)
                if size >= CHUNK:
                    if not self._put(b"".join(pending)):
                        return
                    pending, size = [], 0
            if (not pending or self._put(b"".join(pending))) and self._put(None):
                return
        except BaseException as err:  # handed over to the reading thread
            self._put(err)

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer at a block boundary); b"" at the end."""
        if self._offset >= len(self._block) and not self._next_block():
            return b""
        end = len(self._block) if size < 0 else min(len(self._block), self._offset + size)
        out = self._block[self._offset : end]
        self._offset = end
        return out

    def _next_block(self) -> bool:
        if self._finished:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        if item is None:
            self._finished = True
            return False
        self._block, self._offset = item, 0
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()


_Visit = Callable[[tarfile.TarFile, tarfile.TarInfo, str], None]


def _walk(source: Source, checker: _Checker, visit: _Visit) -> None:
    """Stream the archive, check each member, then call ``visit(tar, member, relative path)``.

    Read errors anywhere (in the headers or in a member's data) become an ArchiveError.
    """
    raw, owned = _open_stream(source)
    try:
        if raw.read(2) != b"\x1f\x8b":
            raise ArchiveError(
                f"Refusing archive {checker.source}: it is not gzip data (an HTML error page or "
                "a different file in place of the archive?). Nothing was installed; check the "
                "repository URL or download the archive again."
            )
        raw.seek(0)
        with (
            _ThreadedGunzip(raw) as plain,
            tarfile.open(fileobj=plain, mode="r|", bufsize=CHUNK) as tar,
        ):
            for member in tar:
                visit(tar, member, checker.check(member))
            if checker.top is None:
                raise ArchiveError(f"Refusing archive {checker.source}: it holds no files.")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(
            f"Refusing archive {checker.source}: it is truncated or corrupt ({err}). Nothing "
            "was installed; download it again (a partial download resumes)."
        ) from err
    finally:
        if owned:
            raw.close()


def inspect_archive(
    path: Source,
    max_bytes: int = MAX_EXTRACTED_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> ArchiveInfo:
    """List an archive's members and check them all, without extracting anything.

    Parameters
    ----------
    path : str, Path or binary file
        The ``.tar.gz`` archive (a seekable binary stream is accepted too).
    max_bytes : int
        Cap on the total uncompressed size of the files.
    max_members : int
        Cap on the number of members.

    Returns
    -------
    ArchiveInfo

    Raises
    ------
    ArchiveError
        For anything unsafe, corrupt, truncated or over a cap (see the module docstring).
    """
    checker = _Checker(_source_name(path), max_bytes, max_members)
    files: list[tuple[str, int]] = []
    folders: list[str] = []

    def visit(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        if member.isfile():
            _copy_member(tar, member, checker, None)  # reads to the end: catches short members
            files.append((rel, member.size))
        elif rel:
            folders.append(rel)

    _walk(path, checker, visit)
    assert checker.top is not None  # _walk raised otherwise
    return ArchiveInfo(checker.top, tuple(files), tuple(folders), checker.total)


def _copy_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, checker: _Checker, out: IO[bytes] | None
) -> None:
    stream = tar.extractfile(member)
    if stream is None:  # pragma: no cover - regular files always have a stream
        raise checker.fail(member.name, "has no data")
    remaining = member.size
    while remaining:
        block = stream.read(min(CHUNK * 4, remaining))
        if not block:
            raise checker.fail(
                member.name, f"is shorter than its header says ({member.size} bytes)"
            )
        remaining -= len(block)
        if out is not None:
            out.write(block)


class _FirstMember(Exception):
    """Stops the walk after the first member."""


def top_folder(path: Source) -> str:
    """The top-level folder of an archive, read from its first member only.

    Raises
    ------
    ArchiveError
        When the file is not gzip, is corrupt, or its first member is unsafe.
    """
    checker = _Checker(_source_name(path), MAX_EXTRACTED_BYTES, MAX_ARCHIVE_MEMBERS)

    def visit(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        raise _FirstMember

    with contextlib.suppress(_FirstMember):
        _walk(path, checker, visit)
    assert checker.top is not None
    return checker.top


def safe_extract(
    path: Source,
    dest_parent: PathLike,
    max_bytes: int = MAX_EXTRACTED_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Extract an archive into a new temporary folder inside ``dest_parent``, safely.

    Every member is checked before anything of it is written (see the module docstring); files
    are written by this function (never by ``tarfile.extract``) with fixed permissions. On any
    error the temporary folder is removed and nothing else is touched.

    Parameters
    ----------
    path : str, Path or binary file
        The ``.tar.gz`` archive.
    dest_parent : str or Path
        An existing folder on the disk where the atlas will live (so the caller's final
        ``os.rename`` is atomic).
    max_bytes, max_members : int
        Caps, as in :func:`inspect_archive`.
    progress : callable, optional
        Called with the number of bytes written after each member.

    Returns
    -------
    Path
        ``dest_parent/.extract-XXXX/<top folder>``. The caller renames it into place and then
        removes its (empty) parent folder.
    """
    parent = Path(dest_parent)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=".extract-"))
    checker = _Checker(_source_name(path), max_bytes, max_members)

    def visit(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        assert checker.top is not None  # set by the first check
        _extract_member(tar, member, checker, staging / checker.top / rel)
        if progress is not None:
            progress(member.size if member.isfile() else 0)

    try:
        _walk(path, checker, visit)
        assert checker.top is not None
        return staging / checker.top
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, checker: _Checker, target: Path
) -> None:
    try:
        _write_member(tar, member, checker, target)
    except OSError as err:
        if isinstance(err, DiskFullError):
            raise
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"The disk is full while extracting {member.name!r} from {checker.source} into "
                f"{target.parent}: free some space or set ATLASMITH_CACHE_DIR to a larger disk."
            ) from err
        # a path that clashes with an earlier member (a file where a folder should be, names
        # equal on a case-insensitive disk) or that the file system cannot hold
        raise checker.fail(member.name, f"cannot be written ({err.strerror})") from err


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, checker: _Checker, target: Path
) -> None:
    target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(mode=FOLDER_MODE, exist_ok=True)
        return
    _check_disk(target.parent, member, checker)
    mode = _EXEC_MODE if member.mode & 0o111 else FILE_MODE
    with open(target, "xb") as out:
        _copy_member(tar, member, checker, out)
    os.chmod(target, mode)  # setuid/setgid/sticky bits are never carried over


def _check_disk(folder: Path, member: tarfile.TarInfo, checker: _Checker) -> None:
    free = shutil.disk_usage(folder).free
    if member.size + DISK_MARGIN_BYTES > free:
        raise DiskFullError(
            f"Not enough disk space in {folder} to extract {member.name!r} from "
            f"{checker.source}: it needs {member.size} bytes, {free} are free. Free some space "
            "or point ATLASMITH_CACHE_DIR at a larger disk."
        )
