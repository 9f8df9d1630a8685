"""Atlas repositories: one interface, a backend per storage (directory, HTTP(S), S3).

A repository is a flat, static layout (``index.json``, ``last_versions.conf``,
``latest_versions.conf``, the archives, ``previews/`` and ``structures/``), so that any web
server, object store or CDN can serve it and BrainGlobe's own client can read it.
"""

from __future__ import annotations

from pathlib import Path

from atlasmith.errors import RepositoryError
from atlasmith.repository._base import CONF_NAMES, INDEX_NAME, Repository, StorageRepository
from atlasmith.repository._check import CheckedArchive, check_archive
from atlasmith.repository._http import HttpRepository
from atlasmith.repository._index import IndexEntry, RepositoryIndex
from atlasmith.repository._local import LocalRepository
from atlasmith.repository._s3 import S3Repository

__all__ = [
    "CONF_NAMES",
    "INDEX_NAME",
    "CheckedArchive",
    "HttpRepository",
    "IndexEntry",
    "LocalRepository",
    "Repository",
    "RepositoryIndex",
    "S3Repository",
    "StorageRepository",
    "check_archive",
    "open_configured_repository",
    "open_repository",
]


def open_repository(location: str | Path, token: str | None = None) -> Repository:
    """Open the repository at a path or URL.

    Parameters
    ----------
    location
        A folder (or ``file://`` URL): :class:`LocalRepository`; ``http(s)://``:
        :class:`HttpRepository`; ``s3://bucket/prefix``: :class:`S3Repository` (endpoint and
        credentials from the usual AWS variables, e.g. ``AWS_ENDPOINT_URL``).
    token
        Upload token for an HTTP repository (ignored otherwise).

    Examples
    --------
    >>> import tempfile
    >>> open_repository(tempfile.mkdtemp()).read_index().names()
    []
    """
    text = str(location)
    if text.startswith(("http://", "https://")):
        return HttpRepository(text, token=token)
    if text.startswith("s3://"):
        return S3Repository(text)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        raise RepositoryError(
            f"{text!r}: unsupported repository URL; use a folder, http(s)://... or s3://..."
        )
    return LocalRepository(text)


def open_configured_repository(
    location: str | Path | None = None, token: str | None = None
) -> Repository:
    """Open ``location``, or the configured repository when it is None.

    The configuration (``~/.config/atlasmith/config.toml``, ``ATLASMITH_REPOSITORY``,
    ``ATLASMITH_TOKEN``) fills in what is not given, as the command line does.
    """
    from atlasmith.config import load_settings

    settings = load_settings(repository=location, token=token)
    return open_repository(settings.repository, token=settings.token)
