"""Downloads that survive bad networks: timeouts, retries with backoff, resume, hashing.

:func:`download_file` streams a file into ``<dest>.part`` while hashing it, resumes an existing
``.part`` with an HTTP ``Range`` request (checking ``Content-Range``), retries on connection
errors, timeouts, 5xx and 429 answers with exponential backoff (attempts that received data do
not count against the limit), and renames the file into place only when its size and sha256
match the expected ones. A local path or ``file://`` URL is copied the same way.
Nothing is ever sent but a plain GET: no credentials travel with downloads.

This is atlasmith's one HTTP engine: the client, the repositories and the source files of
atlas scripts all download through it. Every function takes an ``httpx.Client`` (e.g. with
a custom transport, a proxy or certificates); without one, :func:`make_client` makes one with
a timeout on every phase and atlasmith's User-Agent.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from atlasmith._types import ProgressCallback
from atlasmith._version import __version__
from atlasmith.errors import DownloadError, IntegrityError
from atlasmith.limits import DOWNLOAD_GRACE_S, DOWNLOAD_MIN_BYTES_PER_S, MAX_SMALL_FILE_BYTES

__all__ = [
    "CHUNK_SIZE",
    "DownloadRestarted",
    "GrowingFile",
    "backoff_delay",
    "download_file",
    "fetch_bytes",
    "is_remote",
    "join_location",
    "make_client",
]

CHUNK_SIZE = 1024 * 1024
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def is_remote(location: str) -> bool:
    """Whether a repository location is an HTTP(S) URL (and not a folder)."""
    return location.startswith(("http://", "https://"))


def join_location(base: str, name: str) -> str:
    """The URL or path of file ``name`` in the repository at ``base``.

    >>> join_location("https://host/atlases", "index.json")
    'https://host/atlases/index.json'
    >>> join_location("/srv/atlases/", "index.json")
    '/srv/atlases/index.json'
    """
    if base.startswith("file://"):
        base = base.removeprefix("file://")
    return f"{base.rstrip('/')}/{name}"


def make_client(
    timeout: float = 30.0, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An HTTP client with a timeout on every phase and atlasmith's User-Agent.

    ``transport`` replaces the network (e.g. ``httpx.MockTransport`` in tests, or a transport
    with retries on connect, proxies or a custom SSL context).
    """
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": f"atlasmith/{__version__}", "Accept-Encoding": "identity"},
        follow_redirects=True,
        transport=transport,
    )


@contextmanager
def _using(client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """``client`` as it is (the caller closes it), or a new one closed after the block."""
    if client is not None:
        yield client
        return
    with make_client(timeout) as made:
        yield made


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 10.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped, jittered.

    >>> 0.5 <= backoff_delay(1) <= 0.625 and 10.0 <= backoff_delay(20) <= 12.5
    True
    """
    delay = min(cap, base * 2.0 ** (attempt - 1))
    return float(delay * (1 + random.random() / 4))


# --- small files (index.json, last_versions.conf) --------------------------------------


def fetch_bytes(
    location: str,
    timeout: float = 30.0,
    retries: int = 5,
    max_bytes: int = MAX_SMALL_FILE_BYTES,
    client: httpx.Client | None = None,
) -> bytes | None:
    """Read a small file of a repository; None when it does not exist (HTTP 404/410).

    Raises
    ------
    DownloadError
        When the server cannot be reached or keeps failing after ``retries`` attempts, or the
        file is larger than ``max_bytes``.
    """
    if not is_remote(location):
        path = Path(location.removeprefix("file://"))
        return path.read_bytes() if path.is_file() else None
    with _using(client, timeout) as http:
        for attempt in range(1, retries + 1):
            try:
                with http.stream("GET", location) as response:
                    status = response.status_code
                    if status in (404, 410):
                        return None
                    if status not in _RETRY_STATUS:
                        _check_status(location, status)
                        return _read_capped(location, response, max_bytes)
                reason = f"HTTP {status}"
            except httpx.TooManyRedirects as err:
                raise _redirect_loop(location) from err
            except (httpx.TransportError, _TooSlow) as err:
                reason = str(err) or type(err).__name__
            _give_up_or_wait(location, attempt, retries, reason)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_capped(location: str, response: httpx.Response, max_bytes: int) -> bytes:
    """The body, read block by block and refused as soon as it passes ``max_bytes`` (whatever
    Content-Length says, or without one), so memory stays bounded."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DownloadError(f"{location} is larger than {max_bytes} bytes: not an index.")
    blocks, received = [], 0
    pace = _Pace()
    for block in response.iter_bytes():
        received += len(block)
        pace.add(len(block))
        if received > max_bytes:
            raise DownloadError(
                f"{location} sent more than {max_bytes} bytes: not an index (refused without "
                "reading the rest)."
            )
        blocks.append(block)
    return b"".join(blocks)


class _TooSlow(Exception):
    """An answer that arrives slower than ``DOWNLOAD_MIN_BYTES_PER_S`` after the grace period
    (a server trickling bytes just fast enough to beat the read timeout)."""


class _Pace:
    """Counts one answer's bytes and raises :class:`_TooSlow` when, after
    ``DOWNLOAD_GRACE_S`` seconds, they have come slower than ``DOWNLOAD_MIN_BYTES_PER_S``."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.received = 0

    def add(self, count: int) -> None:
        self.received += count
        elapsed = time.monotonic() - self.start
        if elapsed > DOWNLOAD_GRACE_S and self.received < DOWNLOAD_MIN_BYTES_PER_S * elapsed:
            raise _TooSlow(
                f"the server sent {self.received} bytes in {elapsed:.0f} s, under "
                f"{DOWNLOAD_MIN_BYTES_PER_S} bytes/s"
            )


def _redirect_loop(location: str) -> DownloadError:
    return DownloadError(
        f"{location} redirects in a loop (or more than 20 times): the server is misconfigured. "
        "Check the repository URL, or tell the repository's maintainers."
    )


def _give_up_or_wait(location: str, attempt: int, retries: int, reason: str) -> None:
    if attempt >= retries:
        raise DownloadError(
            f"Download of {location} failed after {retries} attempts ({reason}). Check the "
            "network and the repository URL (ATLASMITH_REPOSITORY); run the command again to "
            "resume, or set ATLASMITH_OFFLINE=1 to work with installed atlases."
        )
    time.sleep(backoff_delay(attempt))


def _check_status(location: str, status: int) -> None:
    if status >= 400:
        hint = "the repository lists it but does not serve it" if status == 404 else "refused"
        raise DownloadError(
            f"Download of {location} failed: HTTP {status} ({hint}). Check the repository URL "
            "or report it to the repository's maintainers."
        )


# --- large files ---------------------------------------------------------------------------


@dataclass
class _Part:
    """A partial download on disk and the running hash of its bytes."""

    path: Path
    digest: hashlib._Hash
    size: int = 0

    @classmethod
    def open(cls, path: Path) -> _Part:
        """Hash what an earlier attempt left, so the download can resume after it."""
        part = cls(path, hashlib.sha256())
        if path.is_file():
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(CHUNK_SIZE), b""):
                    part.digest.update(block)
                    part.size += len(block)
        return part

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.digest, self.size = hashlib.sha256(), 0


class _Restart(Exception):
    """The server ignored or mis-answered the Range request: start from byte 0."""


def download_file(
    location: str,
    dest: str | Path,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 30.0,
    retries: int = 5,
    progress: ProgressCallback | None = None,
    client: httpx.Client | None = None,
    max_size: int | None = None,
) -> Path:
    """Download (or copy) a file to ``dest``, resuming, retrying and verifying it.

    Parameters
    ----------
    location : str
        ``http(s)://`` URL, ``file://`` URL or local path.
    dest : str or Path
        Final path; the data goes to ``dest + ".part"`` first, which a later call resumes.
    sha256, size : optional
        Expected hash and size. A mismatch removes the ``.part`` file and raises.
    timeout : float
        Seconds without progress (connect or read) before an attempt is abandoned.
    retries : int
        Attempts that fail without receiving any data, before giving up.
    progress : callable, optional
        ``progress(completed, total)`` after each chunk (BrainGlobe's ``fn_update``).
    client : httpx.Client, optional
        The HTTP client to use (default: one from :func:`make_client`).
    max_size : int, optional
        Most bytes accepted when ``size`` is unknown (a server streaming for ever stops
        there).

    Returns
    -------
    Path
        ``dest``, complete and verified.

    Raises
    ------
    DownloadError
        The server could not be reached or kept failing.
    IntegrityError
        The size or sha256 of the complete file is not the expected one.
    """
    target = Path(dest)
    if sha256 is not None and _already_there(target, sha256, size):
        return target  # left by a process killed after its download, before installing
    part = _Part.open(target.with_name(target.name + ".part"))
    if size is not None and part.size > size:
        part.restart()
    if is_remote(location):
        with _using(client, timeout) as http:
            _fetch_remote(http, location, part, size, retries, progress, max_size)
    else:
        _copy_local(location, part, progress, size)
    _verify(location, part, sha256, size)
    os.replace(part.path, target)
    return target


def _already_there(target: Path, sha256: str, size: int | None) -> bool:
    if not target.is_file() or (size is not None and target.stat().st_size != size):
        return False
    part = _Part.open(target)
    return part.digest.hexdigest() == sha256.lower()


def _verify(location: str, part: _Part, sha256: str | None, size: int | None) -> None:
    got = part.digest.hexdigest()
    if size is not None and part.size != size:
        received = part.size
        part.restart()
        raise IntegrityError(
            f"Download of {location} has {received} bytes, the index says {size}. The partial "
            "file was removed; run the command again."
        )
    if sha256 is not None and got != sha256.lower():
        part.restart()
        raise IntegrityError(
            f"Download of {location} is corrupt: sha256 expected {sha256}, got {got}. Nothing "
            "was installed and the bad file was removed; run the command again, and report it "
            "to the repository's maintainers if it happens again."
        )


def _copy_local(
    location: str, part: _Part, progress: ProgressCallback | None, size: int | None
) -> None:
    source = Path(location.removeprefix("file://"))
    try:
        total = source.stat().st_size
        with open(source, "rb") as src, open(part.path, "ab") as out:
            src.seek(part.size)
            for block in iter(lambda: src.read(CHUNK_SIZE), b""):
                _append(block, out, part, total, size, progress)
    except FileNotFoundError as err:
        raise DownloadError(
            f"{source} does not exist: the repository lists it but the file is missing."
        ) from err


def _append(
    block: bytes,
    out: IO[bytes],
    part: _Part,
    total: int,
    size: int | None,
    progress: ProgressCallback | None,
) -> None:
    out.write(block)
    part.digest.update(block)
    part.size += len(block)
    if size is not None and part.size > size:
        out.close()
        part.restart()
        raise IntegrityError(
            f"The server sent more than the {size} bytes the index lists for this file; the "
            "download was stopped and removed. Report it to the repository's maintainers."
        )
    if progress is not None:
        progress(part.size, total)


@dataclass
class _Attempts:
    """The budget of one download: attempts that fail without progress (``retries``), attempts
    in all, and whether the server honours ``Range`` (a server that answers a ranged request
    with the whole file again makes every attempt start from byte 0: then an attempt that
    breaks off is a failure, whatever it received, so the download ends)."""

    retries: int
    failures: int = 0
    attempts: int = 0
    resumable: bool = True

    @property
    def limit(self) -> int:
        return max(MAX_ATTEMPTS, self.retries)


#: Attempts of one download in all, progress or not (a server that sends a few bytes and
#: drops the connection every time must not keep the client busy for ever).
MAX_ATTEMPTS = 100


def _fetch_remote(
    client: httpx.Client,
    url: str,
    part: _Part,
    size: int | None,
    retries: int,
    progress: ProgressCallback | None,
    max_size: int | None = None,
) -> None:
    budget = _Attempts(retries)
    while size is None or part.size < size:
        before = part.size
        budget.attempts += 1
        try:
            if _attempt(client, url, part, size, progress, budget, max_size):
                return
            reason = "incomplete answer"
        except _Restart:
            part.restart()
            before = 0
            reason = "the server answered a resumed download with an inconsistent range"
        except httpx.TooManyRedirects as err:
            raise _redirect_loop(url) from err
        except httpx.TransportError as err:
            reason = str(err) or type(err).__name__
        except _RetryableStatus as err:
            reason = str(err)
        except _TooSlow as err:
            reason = str(err)
            before = part.size  # a trickle is a failure, whatever it brought (kept, resumed)
        progressed = budget.resumable and part.size > before
        budget.failures = 0 if progressed else budget.failures + 1
        if budget.attempts >= budget.limit:
            raise DownloadError(
                f"Download of {url} did not complete in {budget.attempts} attempts ({reason}); "
                f"{part.size} bytes are kept and the next run resumes from there."
            )
        if budget.failures:
            if not budget.resumable:
                reason += "; the server ignores Range requests, so no attempt can resume"
            _give_up_or_wait(url, budget.failures, retries, reason)


class _RetryableStatus(Exception):
    """A 5xx or 429 answer, worth another try."""


def _attempt(
    client: httpx.Client,
    url: str,
    part: _Part,
    size: int | None,
    progress: ProgressCallback | None,
    budget: _Attempts,
    max_size: int | None,
) -> bool:
    """One GET (ranged when resuming); True when the file is complete."""
    if part.size and not budget.resumable:
        part.restart()
    headers = {"Range": f"bytes={part.size}-"} if part.size else {}
    with client.stream("GET", url, headers=headers) as response:
        total = _check_answer(url, response, part, size)
        if part.size and response.status_code == 200:  # Range ignored: the whole file again
            budget.resumable = False
            part.restart()
        try:
            with open(part.path, "ab", buffering=256 * 1024) as out:
                # network-sized blocks: a dropped connection keeps every byte received so far
                pace = _Pace()
                for block in response.iter_raw():
                    _append(block, out, part, total, size, progress)
                    pace.add(len(block))
                    if max_size is not None and part.size > max_size:
                        raise _too_large(url, part, max_size)
        except OSError as err:
            raise _disk_error(url, part, err) from err
    return total == 0 or part.size >= total  # unknown total: the stream ended cleanly


def _too_large(url: str, part: _Part, max_size: int) -> DownloadError:
    part.restart()
    return DownloadError(
        f"{url} sent more than {max_size} bytes, the most one archive may have (the repository "
        "lists no size for it); the download was stopped and removed. Raise "
        "ATLASMITH_MAX_ARCHIVE_BYTES if the atlas really is that large."
    )


def _disk_error(url: str, part: _Part, err: OSError) -> DownloadError:
    import errno

    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(f"Cannot write the download of {url} to {part.path}: {err}.")
    written = part.size
    part.restart()  # a full disk helps nobody: the partial file goes
    return DownloadError(
        f"No space left on the disk of {part.path.parent} after {written} bytes of {url}; the "
        "partial download was removed. Free some space, or set ATLASMITH_CACHE_DIR to a "
        "larger disk, and run the command again."
    )


def _check_answer(url: str, response: httpx.Response, part: _Part, size: int | None) -> int:
    """Validate status and Content-Range; return the total size (0 if unknown)."""
    status = response.status_code
    if status in _RETRY_STATUS:
        raise _RetryableStatus(f"HTTP {status}")
    if status == 416:  # the .part is as long as (or longer than) the file: start again
        raise _Restart
    _check_status(url, status)
    length = int(response.headers.get("Content-Length", "0") or 0)
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != part.size:
            raise _Restart
        return int(match[3]) if match[3] != "*" else (size or 0)
    return length or (size or 0)  # a 200 answer: the whole file (also to a Range request)


class DownloadRestarted(Exception):
    """The download being read by a :class:`GrowingFile` started again from byte 0."""


class GrowingFile(io.RawIOBase):
    """Reads a ``.part`` file while a download is still appending to it.

    Pass :meth:`notify` as (part of) the download's progress callback and call :meth:`finish`
    when the download returns or fails. ``read`` waits for new bytes until then; when the
    download starts again from byte 0, reading raises :class:`DownloadRestarted`.
    """

    def __init__(self, path: Path, poll: float = 0.02) -> None:
        super().__init__()
        self.path = path
        self.poll = poll
        self.restarted = False
        self._done = threading.Event()
        self._last = -1
        self._stream: IO[bytes] | None = None
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def notify(self, completed: int, total: int) -> None:
        """Progress callback: notices a download that starts again."""
        if completed < self._last:
            self.restarted = True
        self._last = completed

    def finish(self) -> None:
        """The download has returned (or failed): no more bytes will come."""
        self._done.set()

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset > self._position:
            raise io.UnsupportedOperation("GrowingFile seeks back only")
        if self._stream is not None:
            self._stream.seek(offset)
        self._position = offset
        return offset

    def read(self, size: int = -1) -> bytes:
        while True:
            if self.restarted:
                raise DownloadRestarted(f"{self.path} started again from byte 0")
            done = self._done.is_set()  # read after the check, so no byte is missed
            stream = self._open()
            data = stream.read(size) if stream is not None else b""
            if data or done:
                self._position += len(data)
                return data
            self._done.wait(self.poll)

    def _open(self) -> IO[bytes] | None:
        if self._stream is None and self.path.exists():
            self._stream = open(self.path, "rb")  # noqa: SIM115 (closed in close())
            self._stream.seek(self._position)
        return self._stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        super().close()
