"""The read-only S3 subset that BrainGlobe 3's client speaks, served by ``atlasmith serve``.

brainglobe-atlasapi 3.x reads ``s3://brainglobe/atlas/<key>`` through s3fs (anonymous,
path-style once ``AWS_ENDPOINT_URL`` points at a server). A repository keeps its BrainGlobe 3
components under ``atlas/``, so bucket ``brainglobe`` maps onto the repository folder:

- ``HEAD|GET /brainglobe/atlas/<key>``: HeadObject / GetObject (Range, ETag, Last-Modified,
  If-None-Match, as every other file of the repository); a "folder" key is 404 NoSuchKey, as S3
  answers it;
- ``GET /brainglobe?list-type=2``: ListObjectsV2 (``prefix``, ``delimiter``, ``max-keys``,
  ``continuation-token``, ``start-after``, ``encoding-type=url``), in S3's XML, keys in byte
  order; the version folders of yanked versions are left out of listings (named exactly, they
  are still served);
- ``HEAD /brainglobe`` (HeadBucket), ``GET /brainglobe?location`` (GetBucketLocation).

Anonymous and read-only: no other bucket, no key outside ``atlas/``, nothing hidden (a name
starting with ``.``), no write. Uploads stay ``PUT /atlases/<archive>`` with a member's token.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request
from fastapi.responses import Response

from atlasmith._fs import is_safe_relpath
from atlasmith.errors import RepositoryError
from atlasmith.repository import LocalRepository

__all__ = ["BUCKET", "add_s3_routes", "list_objects"]

#: The bucket BrainGlobe 3's client reads (``descriptors.remote_url_s3``).
BUCKET = "brainglobe"
PREFIX = "atlas/"
_MAX_KEYS = 1000
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _error(status: int, code: str, message: str, resource: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def etag(stat: os.stat_result) -> str:
    """The ETag of a file: the one the file responses carry (Starlette's), quoted."""
    base = f"{stat.st_mtime}-{stat.st_size}"
    return f'"{hashlib.md5(base.encode(), usedforsecurity=False).hexdigest()}"'


def _key_path(repository: LocalRepository, key: str) -> Path | None:
    """The file of a key, or None for a key outside ``atlas/`` or hidden or unsafe."""
    if not key.startswith(PREFIX) or not is_safe_relpath(key):
        return None
    if any(part.startswith(".") for part in key.split("/")):
        return None
    try:
        return repository.path(key)
    except RepositoryError:
        return None


def add_s3_routes(app: FastAPI, repository: LocalRepository, file_response: Any) -> None:
    """Register the S3 subset on ``app`` (before its catch-all file route).

    ``file_response(request, path)`` answers with a file (Range, ETag, If-None-Match).
    """

    @app.head(f"/{BUCKET}", include_in_schema=False)
    @app.get(f"/{BUCKET}", include_in_schema=False)
    def bucket(request: Request) -> Response:
        """HeadBucket, GetBucketLocation and ListObjectsV2 of the read-only bucket."""
        query = request.query_params
        if request.method == "HEAD":
            return Response(status_code=200)
        if "location" in query:
            body = f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="{_XMLNS}"/>'
            return Response(body, media_type="application/xml")
        if query.get("list-type") != "2":
            return _error(400, "InvalidRequest", "Only ListObjectsV2 (list-type=2).", BUCKET)
        try:
            max_keys = min(int(query.get("max-keys", _MAX_KEYS)), _MAX_KEYS)
        except ValueError:
            return _error(400, "InvalidArgument", "max-keys must be an integer.", BUCKET)
        token = query.get("continuation-token")
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode() if token else None
        except (ValueError, UnicodeDecodeError):
            return _error(400, "InvalidArgument", "The continuation token is not valid.", BUCKET)
        body = list_objects(
            repository,
            prefix=query.get("prefix", ""),
            delimiter=query.get("delimiter", ""),
            max_keys=max(0, max_keys),
            after=after or query.get("start-after") or None,
            continuation=token,
            url_encode=query.get("encoding-type") == "url",
        )
        return Response(body, media_type="application/xml")

    @app.head(f"/{BUCKET}/{{key:path}}", include_in_schema=False)
    @app.get(f"/{BUCKET}/{{key:path}}", include_in_schema=False)
    def get_object(request: Request, key: str) -> Response:
        """HeadObject / GetObject of a key under ``atlas/``."""
        path = _key_path(repository, key)
        if path is None or not path.is_file():
            return _error(404, "NoSuchKey", "The specified key does not exist.", key)
        response: Response = file_response(request, path)
        return response


def _yanked_folders(repository: LocalRepository) -> set[str]:
    """``atlas/atlases/<atlas>/<M_m>`` of every yanked version that has a v3 copy."""
    try:
        index = repository.read_index()
    except RepositoryError:
        return set()
    return {e.v3["manifest"].rsplit("/", 1)[0] for e in index.entries if e.yanked and e.v3}


def _entries(
    root: Path, folder: str, recursive: bool
) -> Iterator[tuple[str, os.stat_result | None]]:
    """``(key, stat)`` of the files below ``folder`` (a key prefix ending in ``/``), and with
    ``recursive`` False ``(key + "/", None)`` for its sub-folders, unsorted."""
    base = root / folder if folder else root
    try:
        scan = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return
    for item in scan:
        if item.name.startswith("."):
            continue
        key = f"{folder}{item.name}"
        if item.is_dir(follow_symlinks=False):
            if recursive:
                yield from _entries(root, f"{key}/", True)
            else:
                yield f"{key}/", None
        elif item.is_file(follow_symlinks=False):
            yield key, item.stat(follow_symlinks=False)


def list_objects(
    repository: LocalRepository,
    prefix: str,
    delimiter: str,
    max_keys: int,
    after: str | None,
    continuation: str | None,
    url_encode: bool,
) -> str:
    """The ListObjectsV2 XML for the bucket (the repository's ``atlas/`` folder)."""
    found: list[tuple[str, os.stat_result | None]] = []
    if delimiter not in ("", "/"):
        delimiter = ""  # only "/" groups; anything else lists flat (keys hold no other)
    if prefix.startswith(PREFIX) and ".." not in prefix.split("/"):
        folder = prefix[: prefix.rfind("/") + 1]
        entries = _entries(repository.root, folder, recursive=delimiter != "/")
        found = sorted((key, stat) for key, stat in entries if key.startswith(prefix))
    elif PREFIX.startswith(prefix) and (repository.root / PREFIX).is_dir():  # above atlas/
        if delimiter == "/":
            found = [(PREFIX, None)]
        else:
            found = sorted(_entries(repository.root, PREFIX, recursive=True))
    if found:
        hidden = _yanked_folders(repository)
        found = [(k, s) for k, s in found if not any(k.startswith(f"{h}/") for h in hidden)]
    if after is not None:
        found = [(k, s) for k, s in found if k > after]
    page, truncated = found[:max_keys], len(found) > max_keys

    def text(value: str) -> str:
        return escape(quote(value, safe="/") if url_encode else value)

    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<ListBucketResult xmlns="{_XMLNS}">',
        f"<Name>{BUCKET}</Name><Prefix>{text(prefix)}</Prefix>",
        f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
    ]
    if delimiter:
        parts.append(f"<Delimiter>{text(delimiter)}</Delimiter>")
    if url_encode:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if continuation:
        parts.append(f"<ContinuationToken>{escape(continuation)}</ContinuationToken>")
    if truncated:
        token = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
        parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
    for key, stat in page:
        if stat is None:
            parts.append(f"<CommonPrefixes><Prefix>{text(key)}</Prefix></CommonPrefixes>")
            continue
        modified = datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        parts.append(
            f"<Contents><Key>{text(key)}</Key><LastModified>{modified}</LastModified>"
            f"<ETag>{escape(etag(stat))}</ETag><Size>{stat.st_size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts.append("</ListBucketResult>")
    return "".join(parts)
