"""The cache's BrainGlobe 3 side: the copies in ``brainglobe-atlasapi/`` and atlases fetched
piece by piece.

:class:`V3Cache` is a part of :class:`atlasmith.cache.AtlasCache` (a base class of it): what
is installed in BrainGlobe 3's layout (``brainglobe-atlasapi/atlases/<atlas>/<M_m>/``), the
BrainGlobe 3 copy every install writes, a v3 atlas installed from a folder, and lazy opening:
the manifest is downloaded (checked against the repository index), every other piece on first
use (checked against the manifest), under the atlas's lock, into the same folders, so a lazily
opened atlas and an installed one are the same files. ``.atlasmith/lazy/<atlas>`` marks an
atlas whose pieces are partly there (``verify`` then checks the pieces present).
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from atlasmith import _install
from atlasmith._fs import file_lock, remove_tree
from atlasmith._install import InstalledAtlas
from atlasmith._types import PathLike
from atlasmith.download import download_file, join_location
from atlasmith.errors import AtlasNotFoundError, OfflineError, YankedVersionWarning
from atlasmith.names import ARCHIVE_SUFFIX, parse_version
from atlasmith.package import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from atlasmith.config import Settings
    from atlasmith.formats import V3Atlas
    from atlasmith.repository import RepositoryIndex

__all__ = ["V3Cache", "is_v3_atlas"]

STATE = ".atlasmith"
V3_ROOT = "brainglobe-atlasapi"  # BrainGlobe 3's folder in its brainglobe_dir
_V3_PREFIX = "atlas"  # the repository's folder of BrainGlobe 3 components
_V3_CONF = "atlases/last_versions.conf"
_LAZY = "lazy"  # markers of atlases whose v3 pieces are fetched on use
_PIECE_STRIPES = 64  # lock files per atlas for pieces being fetched
_CLIENT_LOCK = threading.Lock()


def _is_version_folder(name: str) -> bool:
    major, _, minor = name.partition("_")
    return major.isdigit() and minor.isdigit()


def _intact(path: Path, sha256: str, size: int) -> bytes | None:
    """``path``'s bytes when it exists with this size and sha256."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    intact = len(data) == size and hashlib.sha256(data).hexdigest() == sha256
    return data if intact else None


def _import_mesh_decoders() -> None:
    import DracoPy  # noqa: F401
    import meshio  # noqa: F401


def is_v3_atlas(path: Path) -> bool:
    """Whether ``path`` is a BrainGlobe 3 atlas (its manifest or version folder)."""
    manifest = path if path.name == "manifest.json" else path / "manifest.json"
    return manifest.is_file() and manifest.parents[2].name == "atlases"


class V3Cache:
    """The BrainGlobe 3 half of :class:`~atlasmith.cache.AtlasCache` (which provides the
    attributes and steps declared here)."""

    root: Path
    v3_root: Path
    settings: Settings
    blocked: bool
    client: httpx.Client | None
    _piece_http: httpx.Client | None = None  # made on first piece fetched, kept alive

    if TYPE_CHECKING:  # pragma: no cover

        def index(self, quick: bool = False) -> RepositoryIndex: ...
        def install_archive(self, path: PathLike) -> InstalledAtlas: ...
        def _lock(self, name: str) -> AbstractContextManager[None]: ...
        def _state(self, *parts: str) -> Path: ...
        def _paths(self, name: str) -> _install.Staging: ...
        def _offline_error(self, name: str, version: str | None) -> OfflineError: ...

    def _write_v3(self, folder: Path, name: str) -> Path:
        """The installed v1.2 folder as BrainGlobe 3 components in ``brainglobe-atlasapi/``
        (written in staging, moved in component by component, the manifest last); older
        versions of the atlas there are retired. Returns the manifest."""
        from atlasmith.formats import V1Folder, install_v3

        staging = self._paths(name).staging / "v3"
        remove_tree(staging)
        (self.root / STATE / _LAZY / name).unlink(missing_ok=True)  # complete from now on
        try:
            manifest = install_v3(V1Folder(folder), staging, self.v3_root, overwrite=True)
        finally:
            remove_tree(staging)
        version = manifest.parent.name.replace("_", ".")
        for other in self.installed_v3(name):
            if other.version != version:
                folders = _install.v3_folders(self.v3_root, other.path, name)
                _install.retire(folders, self._paths(name))
        return manifest

    # --- BrainGlobe 3 atlases, piece by piece -----------------------------------------------

    def open_lazy(self, name: str, version: str | None = None) -> V3Atlas:
        """Open ``name`` as published in BrainGlobe 3's format, downloading only its manifest
        now: every other piece (a stack chunk, a mesh, a mask) is fetched on first use into
        ``brainglobe-atlasapi/``, checked against the sha256 the manifest lists (itself
        checked against the index), written atomically (resumable), under the atlas's lock.
        Pieces already here are used offline.

        Raises
        ------
        OfflineError
            Offline and the manifest is not cached yet.
        AtlasNotFoundError
            The repository has no such atlas or version, or no BrainGlobe 3 copy of it.
        """
        from atlasmith.formats import V3Atlas

        manifest = self._lazy_manifest(name, version)
        # the mesh decoders load while the user works with the stacks: the first mesh then
        # waits for its download only (BrainGlobe 3 imports them when it is imported)
        threading.Thread(
            target=_import_mesh_decoders, name="atlasmith-decoders", daemon=True
        ).start()
        return V3Atlas(manifest, fetch=self._piece_fetcher(name))

    def _lazy_manifest(self, name: str, version: str | None) -> Path:
        if self.blocked:  # offline: the newest manifest fetched before
            cached = [a for a in self.installed_v3(name) if version in (None, a.version)]
            if cached:
                return cached[-1].path
            raise self._offline_error(name, version)
        index = self.index()
        entry = index.entry(name, version)
        if entry.yanked:  # named exactly (an unpinned choice is never yanked)
            notice = _install.yanked_notice(entry, index.latest(name), installed=False)
            warnings.warn(notice, YankedVersionWarning, stacklevel=4)
        if not entry.v3:
            raise AtlasNotFoundError(
                f"{self.settings.repository} publishes no BrainGlobe 3 copy of {name} "
                f"{entry.version}: install it whole with `atlasmith install {name}`."
            )
        relative = str(entry.v3["manifest"]).removeprefix(f"{_V3_PREFIX}/")
        target = self.v3_root / relative
        with self._lock(name):
            marker = self._state(_LAZY) / name  # its pieces come one by one (for verify)
            if not self.installed_v3(name) or marker.is_file():
                marker.touch()
            if not (target.is_file() and sha256_file(target) == entry.v3["sha256"]):
                self._download(
                    str(entry.v3["manifest"]), target, entry.v3["sha256"], entry.v3["size"]
                )
            _install.note_version(self.v3_root / _V3_CONF, name, str(entry.v3["version"]))
        return target

    def _piece_fetcher(self, name: str) -> Callable[[str, str, int], bytes]:
        def fetch(relative: str, sha256: str, size: int) -> bytes:
            target = self.v3_root / relative
            # Pieces are fetched in parallel (a read over many chunks), each under one of a
            # few stripe locks so that concurrent processes and threads download it once;
            # only the final rename takes the atlas's lock (never held across a download,
            # so an install waits for a rename at most, and readers do not queue).
            with self._piece_lock(name, relative):
                data = _intact(target, sha256, size)
                if data is not None:
                    return data
                if self.blocked:
                    why, undo = self.settings.offline_reason()
                    raise OfflineError(
                        f"{target} is not downloaded yet and offline mode is on ({why}): "
                        f"{undo}, or install {name} whole before going offline."
                    )
                downloads = self._state("downloads", "pieces")
                part = downloads / f"{sha256}-{size}"  # resumed by the next attempt
                self._download(f"{_V3_PREFIX}/{relative}", part, sha256, size)
                data = part.read_bytes()
                with self._lock(name):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(part, target)
                return data

        return fetch

    def _piece_lock(self, name: str, relative: str) -> AbstractContextManager[object]:
        stripe = int(hashlib.sha256(relative.encode()).hexdigest()[:8], 16) % _PIECE_STRIPES
        return file_lock(self._state("locks", f"{name}.pieces") / f"{stripe}.lock")

    def _download(self, key: str, target: Path, sha256: str, size: int) -> None:
        """One piece of the repository into ``target``: resumable (``.part``), verified, then
        renamed into place; over one kept-alive HTTP client shared by every piece."""
        target.parent.mkdir(parents=True, exist_ok=True)
        download_file(
            join_location(self.settings.repository, key),
            target,
            sha256=sha256,
            size=size,
            timeout=self.settings.timeout,
            retries=self.settings.retries,
            client=self.client or self._pieces_client(),
        )

    def _pieces_client(self) -> httpx.Client:
        with _CLIENT_LOCK:
            client = self._piece_http
            if client is None:
                from atlasmith.download import make_client

                client = make_client(self.settings.timeout)
                weakref.finalize(self, client.close)
                self._piece_http = client
            return client

    def installed_v3(self, name: str | None = None) -> list[InstalledAtlas]:
        """BrainGlobe 3 atlases in ``brainglobe-atlasapi/`` (their manifests), by name then
        version; only ``name``'s when given."""
        atlases = self.v3_root / "atlases"
        if not atlases.is_dir():
            return []
        found = []
        for manifest in atlases.glob("*/*/manifest.json"):
            atlas, folder = manifest.parent.parent.name, manifest.parent.name
            version = folder.replace("_", ".")
            if (name is None or atlas == name) and _is_version_folder(folder):
                found.append(InstalledAtlas(atlas, version, manifest))
        return sorted(found, key=lambda a: (a.atlas_name, parse_version(a.version)))

    def install_v3(self, path: PathLike) -> InstalledAtlas:
        """Install a BrainGlobe 3 atlas (its manifest or version folder; atlasmith's, or one
        BrainGlobe's own packager wrote): every piece is read and checked (against the
        manifest's sha256 where it lists them), written as a v1.2 package, and installed as
        an archive is (so both BrainGlobe generations find it)."""
        import tempfile

        from atlasmith.convert import convert_atlas

        source = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._state(), prefix="v3-source-") as tmp:
            folder = convert_atlas(source, "v1", tmp)
            return self.install_archive(folder.parent / f"{folder.name}{ARCHIVE_SUFFIX}")

    def verify_v3(self, name: str) -> list[str]:
        """The BrainGlobe 3 copies of ``name``: every file re-hashed (for an atlas opened
        lazily, every piece downloaded so far); [] when intact."""
        from atlasmith.formats import V3Atlas

        lazy = (self.root / STATE / _LAZY / name).is_file()
        problems = []
        for copy in self.installed_v3(name):
            problems += V3Atlas(copy.path).problems(present_only=lazy)
        return problems
