"""File-system steps that never leave a half-written file or a missing folder behind.

- :func:`atomic_file` / :func:`atomic_write`: write beside the target under a hidden
  temporary name, then rename over it; readers see the old content or the new one, and a
  failure (an exception, Ctrl-C) removes the temporary file.
- :func:`replace_path`: move a finished file or folder into place over an existing one. On
  Linux the two are swapped in one ``renameat2(RENAME_EXCHANGE)`` call, so there is no moment
  when neither the old nor the new folder exists; elsewhere the old one is renamed aside
  first and put back if the second rename fails.
- :func:`temporary_folder`: a hidden working folder on the same disk as the output (so that
  the final rename is atomic), removed whatever happens; while in use it holds an exclusive
  ``flock`` on itself, so :func:`sweep_unclaimed` can tell the folders of a killed process
  (no lock: deleted) from those of a running one (kept).
- :func:`file_lock`: a lock file shared by processes, queued in the process by a thread
  lock first (threads wake as soon as it is free, instead of polling the file).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from atlasmith._types import PathLike

__all__ = [
    "atomic_file",
    "atomic_write",
    "check_writable_folder",
    "file_lock",
    "is_safe_relpath",
    "remove_tree",
    "replace_path",
    "sweep_unclaimed",
    "temporary_folder",
    "unsafe_secret_permissions",
]

FILE_MODE = 0o644
FOLDER_MODE = 0o755
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# errors that mean "this system or file system cannot exchange", not "this exchange failed"
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM}
_THREAD_LOCKS: dict[str, threading.RLock] = {}
_THREAD_LOCKS_LOCK = threading.Lock()


def _forget_thread_locks() -> None:
    """In a forked child: the parent's threads, and the thread locks they held, are gone."""
    global _THREAD_LOCKS_LOCK
    _THREAD_LOCKS.clear()
    _THREAD_LOCKS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_thread_locks)


@contextlib.contextmanager
def atomic_file(target: PathLike, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` when the block ends.

    The temporary file is hidden (``.<name>.XXXX.tmp``), created with mode 0600 and given
    ``mode`` just before the rename. On any exception it is removed and ``target`` is left as
    it was.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(target: PathLike, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_file`)."""
    with atomic_file(target, mode) as tmp:
        tmp.write_bytes(data)


def replace_path(
    staged: PathLike, final: PathLike, discard: Callable[[Path], object] | None = None
) -> None:
    """Move ``staged`` (a file or folder) to ``final``, replacing whatever is there.

    ``staged`` must be on the same file system as ``final``. A replaced folder is swapped out
    atomically where the system allows it (Linux) and deleted afterwards (``discard(path)``
    is called on it instead when given); at no moment is ``final`` missing.
    """
    drop: Callable[[Path], object] = remove_tree if discard is None else discard
    new, old = Path(staged), Path(final)
    if not os.path.lexists(old):
        os.rename(new, old)
        return
    if not (new.is_dir() or old.is_dir()):
        os.replace(new, old)  # atomic for files everywhere
        return
    if _exchange(new, old):
        drop(new)  # now holds the old content
        return
    aside = old.with_name(f".{old.name}.old-{secrets.token_hex(4)}")
    os.rename(old, aside)
    try:
        os.rename(new, old)
    except BaseException:
        os.rename(aside, old)
        raise
    drop(aside)


@contextlib.contextmanager
def file_lock(path: PathLike, timeout: float = -1) -> Iterator[None]:
    """Hold the lock file ``path`` (``filelock``) for the block; ``timeout`` seconds at most
    in all (negative: wait for ever), then ``filelock.Timeout``.

    Threads of this process queue on a thread lock of the path first, so only one of them
    polls the file: on the file alone each waiting thread sleeps a whole poll interval (50 ms)
    between tries, which made the 51 chunk downloads of a lazily read 25 um annotation, each
    renamed under the atlas's lock, take from 0.3 s to 1.7 s.
    """
    from filelock import FileLock, Timeout

    key = os.path.abspath(path)
    with _THREAD_LOCKS_LOCK:
        in_process = _THREAD_LOCKS.setdefault(key, threading.RLock())
    start = time.monotonic()
    if not in_process.acquire(timeout=timeout):
        raise Timeout(key)
    try:
        left = -1.0 if timeout < 0 else max(0.0, timeout - (time.monotonic() - start))
        with FileLock(key, timeout=left, poll_interval=0.01):
            yield
    finally:
        in_process.release()


def remove_tree(path: PathLike) -> None:
    """Delete a folder (or file) and everything in it; missing paths are fine."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


@contextlib.contextmanager
def temporary_folder(parent: PathLike, prefix: str) -> Iterator[Path]:
    """A new hidden folder inside ``parent`` (created if needed), removed when the block ends,
    and locked (``flock``) while the block runs: see :func:`sweep_unclaimed`. Folders of the
    same prefix that killed processes left in ``parent`` are deleted first."""
    base = Path(parent)
    base.mkdir(parents=True, exist_ok=True)
    sweep_unclaimed(base, (prefix,))
    folder = Path(tempfile.mkdtemp(dir=base, prefix=f".{prefix.lstrip('.')}"))
    claim = _claim(folder)
    try:
        yield folder
    finally:
        remove_tree(folder)
        if claim is not None:
            os.close(claim)


def _claim(folder: Path) -> int | None:
    """An open descriptor of ``folder`` holding an exclusive flock (None where unsupported)."""
    try:
        import fcntl

        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return None
    return handle


def sweep_unclaimed(parent: PathLike, prefixes: tuple[str, ...], min_age_s: float = 30.0) -> int:
    """Delete the hidden :func:`temporary_folder` folders in ``parent`` whose name starts with
    one of ``prefixes`` (given without the dot) and that no running process holds: what a
    killed process left. An empty folder younger than ``min_age_s`` is kept: it may have been
    made an instant before its lock was taken. Return the number of bytes freed."""
    base = Path(parent)
    names = tuple(f".{prefix.lstrip('.')}" for prefix in prefixes)
    freed = 0
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(names)]
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                continue
            young = now - entry.stat(follow_symlinks=False).st_mtime < min_age_s
            if young and _is_empty(entry.path):
                continue
            claim = _claim(Path(entry.path))
            if claim is None:
                continue  # a running process holds it
            try:
                freed += _tree_size(Path(entry.path))
                remove_tree(entry.path)
            finally:
                os.close(claim)
    return freed


def _is_empty(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is None


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def check_writable_folder(path: PathLike) -> None:
    """Raise the ``OSError`` that writing into ``path`` (a folder, possibly still to be made)
    would raise, without writing: a read-only file system, or no permission on the nearest
    existing folder above it. Long work checks this before it starts."""
    target = Path(path).absolute()
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(existing))
    flags = os.statvfs(existing).f_flag
    if flags & getattr(os, "ST_RDONLY", 1):
        raise OSError(errno.EROFS, "Read-only file system", str(target))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(existing))


def is_safe_relpath(path: str) -> bool:
    """Whether ``path`` is a relative POSIX path that stays inside its root.

    >>> is_safe_relpath("previews/a.png"), is_safe_relpath("../a"), is_safe_relpath("/etc")
    (True, False, False)
    """
    parts = path.split("/")  # as PurePosixPath would split it, without its cost (indexes of
    # 100,000 atlases check two paths each)
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step; False where the system or file system cannot."""
    rename = _renameat2()
    if rename is None:
        return False
    done = rename(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


@functools.cache
def _renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """glibc's ``renameat2`` (2.28 and later), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    found: Callable[[int, bytes, int, bytes, int], int] = function
    return found


def unsafe_secret_permissions(path: Path) -> list[str]:
    """What lets another user change (or read) the secret file ``path``: the file readable or
    writable by group or others, or owned by someone else; its folder, or any folder above,
    writable by others without the sticky bit (``/tmp``'s), or owned by someone else (root
    aside). [] when private. A missing file is fine (its folder is still checked)."""
    me = os.geteuid()
    problems = []
    if path.exists():
        info = path.stat()
        if info.st_uid not in (me, 0):
            problems.append(f"{path} belongs to user {info.st_uid}")
        if info.st_mode & 0o077:
            problems.append(f"{path} has mode {stat.S_IMODE(info.st_mode):o} (must be 600)")
    folder = path.parent
    if folder.is_dir():
        info = folder.stat()
        if info.st_mode & 0o022:
            problems.append(f"{folder} has mode {stat.S_IMODE(info.st_mode):o} (must be 700)")
    for above in [folder, *folder.parents]:
        if not above.is_dir():
            continue
        info = above.stat()
        if info.st_uid not in (me, 0):
            problems.append(f"{above} belongs to user {info.st_uid}")
        shared = info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX
        if above != folder and (shared or info.st_mode & 0o020 and info.st_uid != me):
            problems.append(f"{above} can be changed by other users")
    return problems
