"""Atlas repositories: one interface, a backend per storage (directory, HTTP(S), S3).

A repository is a flat, static layout (``index.json``, ``last_versions.conf``,
``latest_versions.conf``, the archives, ``previews/`` and ``structures/``), so that any web
server, object store or CDN can serve it and BrainGlobe's own client can read it.
"""

from __future__ import annotations

from pathlib import Path

from atlasmith.errors import ConfigError, RepositoryError
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
    "open_publish_repository",
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


def open_publish_repository(
    location: str | Path | None = None,
    token: str | None = None,
    *,
    new_repository: bool = False,
) -> Repository:
    """Open the repository that ``publish``, ``release``, ``yank`` and ``unyank`` change.

    Parameters
    ----------
    location
        The destination (``--to``); None: the configured one (``ATLASMITH_PUBLISH_TO``, or
        ``publish_to`` in the config file). The download repository (``ATLASMITH_REPOSITORY``,
        BrainGlobe's GIN by default) is never used: uploading there must be a choice.
    token
        Upload token for an HTTP repository (default: ``ATLASMITH_TOKEN`` or the config file).
    new_repository
        Accept a location without ``index.json`` (a new repository is started by the first
        publish there). Otherwise such a location is refused, so that a mistyped folder or
        URL creates nothing and sends nothing.

    Raises
    ------
    ConfigError
        No destination was given or configured.
    RepositoryError
        The destination is not a repository (no ``index.json``) and ``new_repository`` is
        False, or its index was lost.
    """
    from atlasmith.config import config_path, load_settings

    settings = load_settings(token=token, publish_to=location)
    if settings.publish_to is None:
        raise ConfigError(
            "No repository to publish to: pass --to REPO (a folder, http(s):// URL or "
            "s3://bucket/prefix), or set ATLASMITH_PUBLISH_TO or publish_to in "
            f"{config_path()}; atlasmith never publishes to the repository it downloads from."
        )
    repository = open_repository(settings.publish_to, token=settings.token)
    try:
        if not new_repository and not repository.exists():
            repository.read_index()  # names a lost index when published files are there
            raise RepositoryError(
                f"{repository.location} is not an atlas repository: it has no index.json. "
                "Check the destination for a typo; to start a new repository there, publish "
                "with --new-repository."
            )
    except BaseException:
        repository.close()
        raise
    return repository
