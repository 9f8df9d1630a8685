"""The HTTP repository server: serves a repository folder read-only to anyone, with Range and
ETag support, and accepts uploads from members of the atlas team (bearer tokens).

``make_app(repository)`` builds the ASGI app; ``serve`` runs it with uvicorn;
``serve_in_thread`` runs it on loopback for tests and demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Path as PathParam, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from atlasmith import __version__
from atlasmith._fs import temporary_folder
from atlasmith.config import SERVER_HOST, SERVER_PORT
from atlasmith.errors import (
    ArchiveError,
    AtlasExistsError,
    AtlasmithError,
    AtlasNotFoundError,
    ConfigError,
    IntegrityError,
    RepositoryError,
    ValidationError,
)
from atlasmith.limits import (
    BODY_GRACE_S,
    BODY_IDLE_S,
    BODY_MIN_BYTES_PER_S,
    MAX_PUBLISHED_BYTES,
    MAX_YANK_REASON_CHARS,
    SERVER_HEADER_TIMEOUT_S,
    SERVER_MAX_CONNECTIONS,
    SERVER_SEND_TIMEOUT_S,
)
from atlasmith.names import split_archive_name
from atlasmith.repository import LocalRepository
from atlasmith.tokens import TokenStore
from atlasmith.web import render_site

__all__ = ["make_app", "serve", "serve_app_in_thread", "serve_in_thread"]
_log = logging.getLogger("atlasmith.server")
_SERVED = re.compile(
    r"^(?:index\.json|last_versions\.conf|latest_versions\.conf|index\.html"
    r"|[a-z0-9][a-z0-9_.-]*\.tar\.gz"
    r"|(?:previews|structures|atlases|static)/[A-Za-z0-9][A-Za-z0-9_.-]*"
    r"|atlas/(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)*[A-Za-z0-9][A-Za-z0-9_.-]*)$"
)


class UploadResult(BaseModel):
    """What the server answers to an accepted upload or yank."""

    atlas_name: str
    version: str
    entry: dict[str, Any]


class YankRequest(BaseModel):
    """Body of a yank request (no reason: a version yanked before keeps its own)."""

    reason: Annotated[str | None, Field(max_length=MAX_YANK_REASON_CHARS)] = None


def make_app(
    repository: LocalRepository,
    tokens: TokenStore | None = None,
    max_upload_bytes: int = MAX_PUBLISHED_BYTES,
) -> FastAPI:
    """Build the ASGI app that serves ``repository``.

    Parameters
    ----------
    repository
        The repository folder to serve (read-only to everyone).
    tokens
        Members' upload tokens. Without it, uploads are refused (read-only server).
        The token file must not be inside the served folder.
    max_upload_bytes
        Uploads larger than this are refused with 413 before they are stored.

    Returns
    -------
    FastAPI
        Routes: ``GET /``, ``GET /health``, ``GET|HEAD /<file>`` (the repository layout),
        ``PUT /atlases/<archive>`` (upload), ``POST /atlases/<atlas>/<version>/yank`` and
        ``.../unyank`` (members only), and
        BrainGlobe 3's read-only S3 subset under ``/brainglobe`` (:mod:`atlasmith.s3api`).
    """
    if tokens is not None and tokens.path.resolve().is_relative_to(repository.root):
        raise ConfigError(
            f"The token file {tokens.path} is inside the served folder {repository.root}; "
            "move it elsewhere (--token-file or ATLASMITH_TOKEN_FILE)."
        )
    app = FastAPI(title="atlasmith repository", version=__version__)
    app.state.repository = repository
    app.state.tokens = tokens
    app.state.max_upload_bytes = max_upload_bytes
    app.state.body_idle_s = BODY_IDLE_S  # how long an upload may send nothing (408 then)
    from atlasmith.s3api import add_s3_routes

    add_s3_routes(app, repository, _file_response)  # before the catch-all file route
    _add_read_routes(app, repository)
    _add_write_routes(app)
    return app


# --- reading ----------------------------------------------------------------------------------


def _add_read_routes(app: FastAPI, repository: LocalRepository) -> None:
    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness check: the server answers and can read its index (503 otherwise)."""
        try:
            count = len(repository.read_index().names())
        except RepositoryError as err:
            raise HTTPException(503, f"The repository index cannot be read: {err}") from err
        return {"status": "ok", "atlases": count}

    @app.head("/", include_in_schema=False)
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        """The web page listing the atlases."""
        page = repository.path("index.html")
        if page.is_file():
            return _file_response(request, page)
        pages = render_site(repository.read_index(), repository.read_bytes)
        return HTMLResponse(pages["index.html"])

    @app.head("/{file_path:path}", include_in_schema=False)
    @app.get("/{file_path:path}")
    def get_file(request: Request, file_path: str) -> Response:
        """A file of the repository layout (Range, ETag and If-None-Match supported)."""
        return _file_response(request, _served_path(repository, file_path))


def _served_path(repository: LocalRepository, file_path: str) -> Path:
    """The file to serve, or 404 for anything outside the published layout."""
    if _SERVED.match(file_path) is None or "/." in file_path:
        raise HTTPException(status_code=404, detail=f"No such file: {file_path}")
    try:
        path = repository.path(file_path)
    except RepositoryError as err:
        raise HTTPException(status_code=404, detail=f"No such file: {file_path}") from err
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"No such file: {file_path}")
    return path


def _file_response(request: Request, path: Path) -> Response:
    headers = {"Cache-Control": _cache_control(path), "X-Content-Type-Options": "nosniff"}
    response = FileResponse(path, headers=headers, stat_result=path.stat())
    if _not_modified(request, response.headers["etag"]):
        return Response(status_code=304, headers={"etag": response.headers["etag"]})
    return response


def _cache_control(path: Path) -> str:
    # archives, previews, structure copies and v3 components of a version never change;
    # indexes and version lists do
    immutable = path.name.endswith((".tar.gz", ".png")) or path.parent.name == "structures"
    immutable = immutable or ("/atlas/" in path.as_posix() and not path.name.endswith(".conf"))
    return "public, max-age=31536000, immutable" if immutable else "no-cache"


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match")
    if wanted is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in wanted.split(",")]
    return "*" in tags or etag in tags


# --- writing ------------------------------------------------------------------------------------


_ERROR_STATUS: tuple[tuple[type[AtlasmithError], int], ...] = (
    (AtlasExistsError, 409),
    (AtlasNotFoundError, 404),
    (ValidationError, 422),
    (IntegrityError, 422),
    (ArchiveError, 400),
)


def _status_for(err: AtlasmithError) -> int:
    return next((code for cls, code in _ERROR_STATUS if isinstance(err, cls)), 500)


def _member(app: FastAPI, authorization: str | None) -> str:
    """The member presenting the token: 401 without one, 403 with one that is not valid."""
    tokens: TokenStore | None = app.state.tokens
    if authorization is None or not authorization.lower().startswith("bearer "):
        raise HTTPException(
            status_code=401,
            detail="Uploads need a member's token: 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        member = tokens.check(authorization[7:].strip()) if tokens is not None else None
    except ConfigError as err:  # the server's own token file: nobody can upload until fixed
        _log.error("%s", err)
        raise HTTPException(
            503,
            "The server cannot read its token file; uploads are off until its "
            "maintainers repair it (the server's log names the problem).",
        ) from err
    if member is None:
        raise HTTPException(status_code=403, detail="This token is not valid for uploads.")
    return member


def _add_write_routes(app: FastAPI) -> None:
    repository: LocalRepository = app.state.repository
    responses: dict[int | str, dict[str, Any]] = {
        code: {"description": text}
        for code, text in (
            (400, "not an atlas archive, or unsafe"),
            (401, "no token"),
            (403, "token not valid"),
            (409, "this version is already published"),
            (413, "archive too large"),
            (422, "package fails validation"),
        )
    }

    @app.put("/atlases/{file_name}", status_code=201, responses=responses)
    async def upload(
        request: Request,
        file_name: Annotated[str, PathParam(max_length=255)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> UploadResult:
        """Publish an archive (members only): streamed, checked, then added to the index."""
        member = _member(app, authorization)
        atlas_name, version = _archive_name(file_name)
        if _call(repository.read_index).get(atlas_name, version) is not None:
            raise HTTPException(409, f"{atlas_name} {version} is already published.")
        scratch = repository.scratch_dir()
        with temporary_folder(scratch or tempfile.gettempdir(), "atlasmith-upload-") as tmp:
            path = tmp / file_name
            await _receive(request, path, app.state.max_upload_bytes, app.state.body_idle_s)
            entry = await run_in_threadpool(_call, repository.publish, path)
        _log.info("%s published %s (%d bytes)", member, entry.archive, entry.size)
        return UploadResult(atlas_name=atlas_name, version=version, entry=entry.to_dict())

    @app.post("/atlases/{atlas_name}/{version}/yank", responses=responses)
    def yank(
        atlas_name: Annotated[str, PathParam(max_length=255)],
        version: Annotated[str, PathParam(max_length=32)],
        body: YankRequest | None = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> UploadResult:
        """Withdraw a version (members only): never chosen as latest, still downloadable."""
        member = _member(app, authorization)
        reason = body.reason if body is not None else None
        entry = _call(repository.yank, atlas_name, version, reason)
        _log.info("%s yanked %s %s", member, atlas_name, version)
        return UploadResult(atlas_name=atlas_name, version=version, entry=entry.to_dict())

    @app.post("/atlases/{atlas_name}/{version}/unyank", responses=responses)
    def unyank(
        atlas_name: Annotated[str, PathParam(max_length=255)],
        version: Annotated[str, PathParam(max_length=32)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> UploadResult:
        """Offer a yanked version again (members only); its reason is dropped."""
        member = _member(app, authorization)
        entry = _call(repository.unyank, atlas_name, version)
        _log.info("%s unyanked %s %s", member, atlas_name, version)
        return UploadResult(atlas_name=atlas_name, version=version, entry=entry.to_dict())


def _archive_name(file_name: str) -> tuple[str, str]:
    try:
        return split_archive_name(file_name)
    except ArchiveError as err:
        raise HTTPException(400, str(err)) from err


def _call(function: Any, *args: Any) -> Any:
    """Run a repository call, turning atlasmith errors into HTTP errors with the reason."""
    try:
        return function(*args)
    except OSError as err:  # RepositoryError is one; a full disk may come from any write
        raise _storage_error(err) from err
    except AtlasmithError as err:
        kind = {"X-Atlasmith-Error": type(err).__name__}
        raise HTTPException(_status_for(err), str(err), headers=kind) from err


def _storage_error(err: OSError) -> HTTPException:
    """507 for a full disk (the client may try again later), 503 for any other failure of the
    repository's storage; the reason goes with both."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return HTTPException(
            507,
            f"The repository's disk is full ({err}): nothing was published. Try again once "
            "its maintainers have freed space.",
        )
    if isinstance(err, RepositoryError):
        return HTTPException(503, f"The repository cannot be written now: {err}")
    return HTTPException(503, f"The repository cannot be written now: {err.strerror or err}.")


async def _receive(request: Request, path: Path, limit: int, idle_s: float) -> None:
    """Stream the request body to ``path``: 413 as soon as it passes ``limit`` bytes; 408
    when the client sends nothing for ``idle_s`` seconds or sends slower than
    ``BODY_MIN_BYTES_PER_S`` on average (after a grace period), so a trickled upload cannot
    hold the server's disk and a connection for ever; 507 when the disk fills."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"The archive is over the server's limit of {limit} bytes.")
    size, start = 0, time.monotonic()
    chunks = request.stream().__aiter__()
    try:
        with path.open("wb") as out:
            while True:
                try:
                    async with asyncio.timeout(idle_s):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError as err:
                    raise _too_slow(f"nothing arrived for {idle_s:.0f} s") from err
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        413, f"The archive is over the server's limit of {limit} bytes."
                    )
                if time.monotonic() - start > BODY_GRACE_S + size / BODY_MIN_BYTES_PER_S:
                    raise _too_slow(f"{size} bytes in {time.monotonic() - start:.0f} s")
                out.write(chunk)
    except OSError as err:
        raise _storage_error(err) from err


def _too_slow(what: str) -> HTTPException:
    return HTTPException(
        408,
        f"The upload was too slow ({what}; at least {BODY_MIN_BYTES_PER_S} bytes/s are "
        "needed): nothing was published. Try again on a better connection.",
    )


# --- running ----------------------------------------------------------------------------------


def serve(
    repository_dir: str | Path,
    host: str = SERVER_HOST,
    port: int = SERVER_PORT,
    token_file: str | Path | None = None,
    max_upload_bytes: int = MAX_PUBLISHED_BYTES,
    header_timeout: float = SERVER_HEADER_TIMEOUT_S,
    max_connections: int = SERVER_MAX_CONNECTIONS,
    send_timeout: float = SERVER_SEND_TIMEOUT_S,
) -> None:
    """Serve a repository folder with uvicorn until interrupted (access log on), with
    deadlines for request heads and for clients that stop reading, and a cap on open
    connections (:mod:`atlasmith._connections`). A change that a killed server or publisher
    left half done is finished or rolled back first (:meth:`LocalRepository.recover`).

    Raises
    ------
    ConfigError
        The token file, its folder or a folder above could be changed (or the file read) by
        another user: the server does not start (see :meth:`TokenStore.check_private`).
    """
    import uvicorn

    tokens = TokenStore(token_file)
    tokens.check_private()
    repository = LocalRepository(repository_dir)
    _log_to_stderr()
    try:
        repository.recover()  # a change a killed server or publisher left half done (logged)
    except RepositoryError as err:  # e.g. a lost index: reads still work, uploads say why
        _log.error("%s", err)
    app = make_app(repository, tokens, max_upload_bytes)
    members = len(tokens.names())
    if not members:
        _log.warning(
            "no upload tokens in %s: the server is read-only (`atlasmith token add NAME`)",
            tokens.path,
        )
    from atlasmith._connections import ACCEPT_BACKLOG, guarded_protocol

    protocol = guarded_protocol(header_timeout, max_connections, send_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=True,
        http=protocol,
        timeout_keep_alive=5,
        backlog=ACCEPT_BACKLOG,
    )
    folder = repository.root.resolve()
    uploads = f"uploads on: {members} member token(s) in {tokens.path}"

    def announce(url: str) -> None:
        _log.info("serving %s at %s (%s)", folder, url, uploads if members else "read-only")

    _run_announced(config, announce)


def _run_announced(config: Any, announce: Callable[[str], None]) -> None:
    """Run uvicorn as ``uvicorn.run`` does, calling ``announce(url)`` with the address it
    actually listens at (port 0 included) once it does."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1]
                announce(_url(config.host, port))

    server = AnnouncingServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's own exit status when it cannot listen


def _url(host: str, port: int) -> str:
    """``http://host:port/`` (an IPv6 address in brackets).

    >>> _url("::1", 8000)
    'http://[::1]:8000/'
    """
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _log_to_stderr() -> None:
    """Show atlasmith's own log lines (uploads, yanks) beside uvicorn's access log."""
    logger = logging.getLogger("atlasmith")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextlib.contextmanager
def serve_in_thread(
    repository_dir: str | Path,
    host: str = SERVER_HOST,
    port: int = 0,
    token_file: str | Path | None = None,
    max_upload_bytes: int = MAX_PUBLISHED_BYTES,
    access_log: bool = False,
) -> Iterator[str]:
    """Run the server in a background thread; yields its base URL and stops it on exit.

    Parameters
    ----------
    repository_dir
        The repository folder to serve.
    host, port
        Where to listen; port 0 picks a free port.
    token_file
        The members' token file (default: :func:`atlasmith.config.token_file`).
    max_upload_bytes
        Upload size cap.
    access_log
        Log every request (uvicorn's access log).
    """
    app = make_app(LocalRepository(repository_dir), TokenStore(token_file), max_upload_bytes)
    with serve_app_in_thread(app, host, port, access_log) as url:
        yield url


@contextlib.contextmanager
def serve_app_in_thread(
    app: Any, host: str = SERVER_HOST, port: int = 0, access_log: bool = False
) -> Iterator[str]:
    """Run an ASGI app (:func:`make_app`'s, or one wrapping it) with uvicorn in a background
    thread; yields its base URL and stops it on exit."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=access_log, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="atlasmith-server", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _wait_started(server: Any, thread: threading.Thread, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RepositoryError("The atlasmith server did not start (is the port in use?).")
        time.sleep(0.02)
