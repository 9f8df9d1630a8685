"""A repository over HTTP(S): reads from any static web server, writes through atlasmith's
server (``PUT /atlases/<archive>``, ``POST /atlases/<atlas>/<version>/yank`` and ``.../unyank``
with a member's bearer token)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, cast

import httpx

from atlasmith import errors
from atlasmith._types import StepProgress
from atlasmith.download import fetch_bytes, make_client
from atlasmith.errors import (
    ArchiveError,
    AtlasExistsError,
    AtlasmithError,
    AtlasNotFoundError,
    AuthenticationError,
    DownloadError,
    RepositoryError,
    ValidationError,
)
from atlasmith.limits import SPOOL_BYTES
from atlasmith.names import split_archive_name
from atlasmith.repository._base import Repository
from atlasmith.repository._index import IndexEntry

__all__ = ["HttpRepository"]

_CHUNK = 1024 * 1024
#: The server answers an upload after checking the whole package: allow it time.
_UPLOAD_TIMEOUT = httpx.Timeout(60.0, read=3600.0)
_STATUS_ERRORS: dict[int, type[AtlasmithError]] = {
    400: ArchiveError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: AtlasNotFoundError,
    409: AtlasExistsError,
    413: ArchiveError,
    422: ValidationError,
}


class HttpRepository(Repository):
    """A repository at an ``http(s)://`` URL.

    Parameters
    ----------
    url
        Base URL of the repository (the folder that holds ``index.json``).
    token
        A member's upload token (default: the configured one, ``ATLASMITH_TOKEN`` or the
        config file's ``token``); needed to publish or yank.
    client
        An ``httpx.Client`` to use (e.g. with a custom transport; the caller closes it); one
        from :func:`atlasmith.download.make_client` is made otherwise.
    timeout, retries
        Seconds without progress, and attempts, for each read.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        client: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 3,
    ) -> None:
        self.location = url.rstrip("/")
        self.token = token
        self.timeout, self.retries = timeout, retries
        self._owns_client = client is None
        self.client = client if client is not None else make_client(timeout)

    def __repr__(self) -> str:
        return f"HttpRepository({self.location!r})"

    def close(self) -> None:
        """Close the HTTP client's connections (unless the caller gave the client)."""
        if self._owns_client:
            self.client.close()

    def url(self, name: str) -> str:
        """The URL of a file of the layout."""
        return f"{self.location}/{name}"

    def read_bytes(self, name: str) -> bytes | None:
        """The content of a file of the layout, or None when the server answers 404."""
        try:
            return fetch_bytes(self.url(name), self.timeout, self.retries, client=self.client)
        except DownloadError as err:
            raise RepositoryError(f"Cannot read {self.url(name)}: {err}") from err

    def _open(self, name: str) -> BinaryIO:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned)
        try:
            self._download(name, spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return cast(BinaryIO, spool)

    def _download(self, name: str, out: IO[bytes]) -> None:
        try:
            with self.client.stream("GET", self.url(name)) as response:
                if response.status_code == 404:
                    raise self._missing(name)
                _raise_for_status(response, name)
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
        except httpx.HTTPError as err:
            raise RepositoryError(f"Cannot read {self.url(name)}: {err}") from err

    def publish(
        self,
        archive: str | Path,
        preview: str | Path | None = None,
        progress: StepProgress | None = None,
    ) -> IndexEntry:
        """Upload ``archive`` to the server, which checks it and adds it to the index."""
        path = Path(archive)
        atlas_name, version = split_archive_name(path.name)
        if preview is not None:
            raise RepositoryError(
                "An HTTP repository takes the preview from the package (preview.png); "
                "add it to the package instead of passing a separate file."
            )
        if not path.is_file():
            raise ArchiveError(f"{path} does not exist or is not a file.")
        size = path.stat().st_size
        with path.open("rb") as stream:
            response = self._request(
                "PUT",
                f"atlases/{path.name}",
                content=_chunks(stream, size, path.name, progress),
                headers={"Content-Length": str(size), **self._auth()},
                timeout=_UPLOAD_TIMEOUT,
            )
        _raise_for_status(response, path.name)
        return IndexEntry.from_dict(atlas_name, version, response.json()["entry"])

    def yank(self, atlas_name: str, version: str, reason: str | None = None) -> IndexEntry:
        """Ask the server to yank ``atlas_name`` ``version`` (members only)."""
        response = self._request(
            "POST",
            f"atlases/{atlas_name}/{version}/yank",
            json={"reason": reason},
            headers=self._auth(),
        )
        _raise_for_status(response, f"{atlas_name} {version}")
        return IndexEntry.from_dict(atlas_name, version, response.json()["entry"])

    def unyank(self, atlas_name: str, version: str) -> IndexEntry:
        """Ask the server to offer a yanked version again (members only)."""
        response = self._request(
            "POST", f"atlases/{atlas_name}/{version}/unyank", headers=self._auth()
        )
        _raise_for_status(response, f"{atlas_name} {version}")
        return IndexEntry.from_dict(atlas_name, version, response.json()["entry"])

    def _auth(self) -> dict[str, str]:
        if not self.token:
            from atlasmith.config import load_settings

            self.token = load_settings().token
        if not self.token:
            raise AuthenticationError(
                f"Publishing to {self.location} needs a member's token: pass --token, or set "
                "ATLASMITH_TOKEN (a maintainer creates one with `atlasmith token add NAME`)."
            )
        return {"Authorization": f"Bearer {self.token}"}

    def _request(self, method: str, name: str, **kwargs: object) -> httpx.Response:
        try:
            return self.client.request(method, self.url(name), **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as err:
            raise RepositoryError(f"{method} {self.url(name)} failed: {err}") from err


def _chunks(
    stream: IO[bytes], size: int, name: str, progress: StepProgress | None
) -> Iterator[bytes]:
    """The upload's body, reporting the bytes handed to the connection; then the wait for
    the server's checks (it answers once the package is checked and indexed)."""
    step = f"uploading {name}"
    sent = 0
    if progress is not None:
        progress(step, 0, size)
    while chunk := stream.read(_CHUNK):
        yield chunk
        sent += len(chunk)
        if progress is not None:
            progress(step, sent, size)
    if progress is not None:
        progress("checking on the server", 0, 0)


def _raise_for_status(response: httpx.Response, what: str) -> None:
    """Turn an error status into the matching atlasmith error, with the server's reason."""
    if response.status_code < 400:
        return
    cls = _STATUS_ERRORS.get(response.status_code, RepositoryError)
    named = getattr(errors, response.headers.get("x-atlasmith-error", ""), None)
    if isinstance(named, type) and issubclass(named, AtlasmithError):
        cls = named
    raise cls(f"{response.request.method} {response.url}: {_reason(response)} ({what}).")


def _reason(response: httpx.Response) -> str:
    try:
        response.read()
        detail = response.json().get("detail")
    except (ValueError, AttributeError, httpx.HTTPError):
        detail = None
    return f"{response.status_code} {detail or response.reason_phrase}"
