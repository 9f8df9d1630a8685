"""The local atlas cache: install, update, remove and verify atlases, safely and atomically.

Layout (BrainGlobe's, so that its own tools read what we install)::

    <cache_dir>/                      default ~/.brainglobe (ATLASMITH_CACHE_DIR)
        allen_mouse_25um_v1.2/        one folder per atlas, one version per atlas
        last_versions.conf            the repository's latest versions (BrainGlobe reads it)
        .atlasmith/
            index.json                last index read from the repository (offline use)
            locks/<atlas>.lock        one lock per atlas: concurrent processes download once
            downloads/<archive>.part  partial downloads, resumed by the next attempt
            staging/<atlas>/          extraction in progress (same disk: the rename is atomic)
            trash/<atlas>/            the old version during an update, until the new one is in

An install is: download to ``.part`` (resuming, retrying) while a thread extracts the growing
file safely into ``staging``; check size and sha256 against the repository's index; check the
folder; only then rename it into place. An update renames the old folder into ``trash`` only
after the new version is verified and extracted, then renames the new one in; a process killed
at any point leaves either the old or the new version, which the next locked operation
restores (:meth:`AtlasCache._recover`).
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import secrets
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from atlasmith._fs import atomic_write
from atlasmith.config import Settings, load_settings
from atlasmith.download import (
    GrowingFile,
    ProgressCallback,
    download_file,
    fetch_bytes,
    is_remote,
    join_location,
)
from atlasmith.errors import (
    ArchiveError,
    AtlasExistsError,
    AtlasNotFoundError,
    IntegrityError,
    OfflineError,
    RepositoryError,
    UnknownAtlasError,
)
from atlasmith.limits import DISK_MARGIN_BYTES
from atlasmith.names import check_atlas_name, parse_version, split_folder_name
from atlasmith.package import (
    MANIFEST_NAME,
    read_manifest,
    safe_extract,
    sha256_file,
    top_folder,
    verify_folder,
)

if TYPE_CHECKING:  # the reader (numpy...) is imported on first use, so the CLI starts fast
    from atlasmith.atlas import Atlas

__all__ = [
    "Action",
    "AtlasCache",
    "AtlasStatus",
    "BrainGlobeAtlas",  # noqa: F822 (built on first access by __getattr__)
    "Catalog",
    "InstalledAtlas",
    "Plan",
    "Release",
    "UnknownAtlasError",
    "atlas_info",
    "fetch",
    "install_target",
    "list_rows",
    "plan",
    "progress_bar",
    "settings_info",
    "status_rows",
]

Action = Literal["install", "update", "use"]
_STATE = ".atlasmith"
_LOCK_TIMEOUT = 3600.0


# --- what the repository offers ------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """One downloadable version of an atlas (sha256 and size are None for BrainGlobe's GIN)."""

    atlas_name: str
    version: str
    archive: str
    sha256: str | None = None
    size: int | None = None
    yanked: bool = False
    published: str | None = None
    metadata: Mapping[str, Any] | None = None

    @property
    def folder_name(self) -> str:
        """``allen_mouse_25um_v1.2``."""
        return f"{self.atlas_name}_v{self.version}"


@dataclass(frozen=True)
class Catalog:
    """Every release of a repository; ``verified`` when it came from an index with hashes."""

    releases: tuple[Release, ...]
    verified: bool
    source: str

    @classmethod
    def from_index_json(cls, data: bytes, source: str) -> Catalog:
        """Parse ``index.json`` (with :class:`atlasmith.repository.RepositoryIndex`)."""
        from atlasmith.repository import RepositoryIndex

        index = RepositoryIndex.from_json(data)
        releases = tuple(
            Release(
                e.atlas_name,
                e.version,
                e.archive,
                e.sha256,
                e.size,
                e.yanked,
                e.published,
                dict(e.metadata),
            )
            for e in index.entries
        )
        return cls(releases, True, source)

    @classmethod
    def from_conf(cls, text: str, source: str) -> Catalog:
        """Parse BrainGlobe's ``last_versions.conf`` (latest versions only, no hashes)."""
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
            atlases = parser["atlases"]
        except (configparser.Error, KeyError) as err:
            raise RepositoryError(
                f"{source} is not a versions file (an error page in its place?): {err}. "
                "Check the repository URL or try again later."
            ) from err
        releases = tuple(
            Release(name, version.strip().strip('"'), f"{name}_v{version.strip()}.tar.gz")
            for name, version in atlases.items()
        )
        return cls(releases, False, source)

    def names(self) -> list[str]:
        """Atlas names, sorted."""
        return sorted({r.atlas_name for r in self.releases})

    def versions(self, name: str) -> list[Release]:
        """Every release of ``name``, oldest first."""
        found = [r for r in self.releases if r.atlas_name == name]
        return sorted(found, key=lambda r: parse_version(r.version))

    def latest(self, name: str) -> Release | None:
        """Highest non-yanked release of ``name``, or None."""
        live = [r for r in self.versions(name) if not r.yanked]
        return live[-1] if live else None

    def resolve(self, name: str, version: str | None) -> Release:
        """The release to install: ``version`` exactly (yanked too), or the latest."""
        releases = self.versions(name)
        found = self.latest(name) if version is None else _exact(releases, version)
        if found is not None:
            return found
        if not releases:
            known = ", ".join(self.names()) or "none"
            raise UnknownAtlasError(
                f"{name} is not a valid atlas name: the repository {self.source} has no atlas "
                f"{name!r}. Available: {known}. Run `atlasmith list` to see them."
            )
        listed = ", ".join(r.version for r in releases)
        raise AtlasNotFoundError(
            f"{name} has no version {version!r} in {self.source} (available: {listed}; "
            "yanked versions are installed only when named exactly)."
        )


def _exact(releases: list[Release], version: str) -> Release | None:
    return next((r for r in releases if r.version == version), None)


# --- what is installed -----------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledAtlas:
    """An atlas folder in the cache."""

    atlas_name: str
    version: str
    path: Path

    @property
    def has_manifest(self) -> bool:
        """False for folders installed by another tool (e.g. BrainGlobe's own client)."""
        return (self.path / MANIFEST_NAME).is_file()


@dataclass(frozen=True)
class Plan:
    """What to do for one atlas, decided by :func:`plan`."""

    action: Action
    version: str | None


def plan(
    installed: str | None,
    wanted: str | None,
    latest: str | None,
    upgrade: bool,
    force: bool = False,
) -> Plan:
    """Decide whether to install, update or use what is installed (pure).

    Parameters
    ----------
    installed : str or None
        The installed version.
    wanted : str or None
        An explicitly requested version.
    latest : str or None
        The repository's latest version (None when unknown, e.g. offline).
    upgrade : bool
        Move to the latest version (``atlasmith update``) rather than keep what is installed.
    force : bool
        Install again even when the installed version is the target (a repair).

    >>> plan(None, None, "1.2", False), plan("1.1", None, "1.2", False).action
    (Plan(action='install', version='1.2'), 'use')
    >>> plan("1.1", None, "1.2", True), plan("1.2", "1.2", "1.3", False).action
    (Plan(action='update', version='1.2'), 'use')
    """
    keep = installed if not upgrade else None
    target = wanted or keep or latest
    if installed is None:
        return Plan("install", target)
    if target is None or (target == installed and not force):
        return Plan("use", installed)
    return Plan("update", target)


@dataclass(frozen=True)
class AtlasStatus:
    """One row of ``atlasmith list``."""

    atlas_name: str
    downloaded: bool
    local_version: str | None
    latest_version: str | None
    path: Path | None

    @property
    def updated(self) -> bool | None:
        """Whether the installed version is the latest (None when either is unknown)."""
        if self.local_version is None or self.latest_version is None:
            return None
        return parse_version(self.local_version) >= parse_version(self.latest_version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row."""
        return {
            "name": self.atlas_name,
            "downloaded": self.downloaded,
            "local_version": self.local_version,
            "latest_version": self.latest_version,
            "updated": self.updated,
            "path": None if self.path is None else str(self.path),
        }


def status_rows(installed: list[InstalledAtlas], catalog: Catalog | None) -> list[AtlasStatus]:
    """Rows for every atlas installed or offered, sorted by name (pure)."""
    local = {a.atlas_name: a for a in installed}
    names = sorted(set(local) | set(catalog.names() if catalog else ()))
    rows = []
    for name in names:
        here = local.get(name)
        latest = catalog.latest(name) if catalog else None
        rows.append(
            AtlasStatus(
                name,
                here is not None,
                here.version if here else None,
                latest.version if latest else None,
                here.path if here else None,
            )
        )
    return rows


# --- the cache ---------------------------------------------------------------------------------


class AtlasCache:
    """Installed atlases in one cache folder, and the repository they come from.

    Parameters
    ----------
    settings : Settings, optional
        Repository, cache folder, offline flag, timeouts (default: :func:`load_settings`).
    max_bytes : int, optional
        Cap on the uncompressed size of one atlas archive (default: the settings').
    download_dir : Path, optional
        Where partial downloads are kept (default ``<cache>/.atlasmith/downloads``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        max_bytes: int | None = None,
        download_dir: Path | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.root = self.settings.cache_dir
        self.max_bytes = max_bytes or self.settings.max_archive_bytes
        self.download_dir = download_dir
        # a repository in a local folder (a mounted copy, an offline bundle) is usable offline
        self.blocked = self.settings.offline and is_remote(self.settings.repository)
        self._catalog: Catalog | None = None

    @classmethod
    def from_options(
        cls, repository: str | None, cache_dir: str | Path | None, offline: bool | None
    ) -> AtlasCache:
        """A cache for command-line options (None: from the environment or config file)."""
        return cls(load_settings(repository=repository, cache_dir=cache_dir, offline=offline))

    def __repr__(self) -> str:
        return f"AtlasCache({str(self.root)!r}, repository={self.settings.repository!r})"

    # --- reading the cache (never touches the network) ---------------------------------------

    def installed(self) -> list[InstalledAtlas]:
        """Every atlas folder in the cache, sorted by name then version."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            parsed = split_folder_name(path.name)
            if parsed and path.is_dir() and not path.name.startswith("."):
                found.append(InstalledAtlas(parsed[0], parsed[1], path))
        return sorted(found, key=lambda a: (a.atlas_name, parse_version(a.version)))

    def find(self, name: str) -> InstalledAtlas | None:
        """The installed version of ``name``, or None.

        Raises
        ------
        AtlasExistsError
            When several versions are installed (BrainGlobe's FileExistsError).
        """
        check_atlas_name(name)
        found = [a for a in self.installed() if a.atlas_name == name]
        if len(found) > 1:
            listed = ", ".join(a.path.name for a in found)
            raise AtlasExistsError(
                f"Multiple versions of atlas {name} in {self.root}: {listed}. Keep one: run "
                f"`atlasmith remove {name}` then `atlasmith install {name}`, or delete a folder."
            )
        return found[0] if found else None

    def require(self, name: str) -> InstalledAtlas:
        """The installed version of ``name``; AtlasNotFoundError when it is not installed."""
        found = self.find(name)
        if found is None:
            raise AtlasNotFoundError(
                f"{name} is not installed in {self.root}. Run `atlasmith install {name}`."
            )
        return found

    def cached_catalog(self) -> Catalog | None:
        """The index last read from the repository, or None."""
        path = self.root / _STATE / "index.json"  # no mkdir: a shared cache may be read-only
        if not path.is_file():
            return None
        try:
            return Catalog.from_index_json(path.read_bytes(), f"{path} (cached)")
        except RepositoryError:  # a damaged copy is ignored; the next online call rewrites it
            return None

    # --- reading the repository ----------------------------------------------------------------

    def catalog(self, quick: bool = False) -> Catalog:
        """What the repository offers (read once per AtlasCache; cached for offline use).

        Offline, the copy cached by the last online call is used. ``quick``: one attempt
        with a short timeout (for version checks that must not hold the user up).
        """
        if self._catalog is None:
            self._catalog = self._offline_catalog() if self.blocked else self._load(quick)
        return self._catalog

    def _offline_catalog(self) -> Catalog:
        cached = self.cached_catalog()
        if cached is None:
            raise OfflineError(
                f"Offline mode is on and no repository index is cached in {self.root}: only "
                "installed atlases can be used. Unset ATLASMITH_OFFLINE to read the repository."
            )
        return cached

    def _load(self, quick: bool = False) -> Catalog:
        repo = self.settings.repository
        index_url = join_location(repo, "index.json")
        timeout = min(5.0, self.settings.timeout) if quick else self.settings.timeout
        retries = 1 if quick else self.settings.retries
        data = fetch_bytes(index_url, timeout, retries)
        if data is not None:
            catalog = Catalog.from_index_json(data, repo)
            self._write_state("index.json", data)
            self._write_conf(catalog)
            return catalog
        conf_url = join_location(repo, "last_versions.conf")
        conf = fetch_bytes(conf_url, timeout, retries)
        if conf is None:
            raise RepositoryError(
                f"{repo} is not an atlas repository: it has neither index.json nor "
                "last_versions.conf. Check ATLASMITH_REPOSITORY or --repository."
            )
        return Catalog.from_conf(conf.decode("utf-8", "replace"), repo)

    def latest_version(self, name: str) -> str | None:
        """The repository's latest version of ``name`` (one quick attempt, then the cached
        index); None when neither is available."""
        try:
            catalog: Catalog | None = self.catalog(quick=True)
        except (OfflineError, ConnectionError, RepositoryError):
            catalog = self.cached_catalog()
        latest = catalog.latest(name) if catalog else None
        return latest.version if latest else None

    # --- installing ---------------------------------------------------------------------------

    def fetch(
        self, name: str, version: str | None = None, progress: ProgressCallback | None = None
    ) -> InstalledAtlas:
        """Return the installed atlas ``name``, downloading it first if needed.

        An installed atlas is used as it is (no network) unless ``version`` names another
        version, which then replaces it (one version per atlas, as BrainGlobe keeps them).

        Raises
        ------
        OfflineError
            When a download is needed in offline mode.
        AtlasNotFoundError, DownloadError, IntegrityError, ArchiveError
        """
        found = self.find(name)
        if found is not None and version in (None, found.version):
            return found
        return self._ensure(name, version, upgrade=False, progress=progress)[1]

    def update(
        self, name: str, progress: ProgressCallback | None = None
    ) -> tuple[Action, InstalledAtlas]:
        """Move ``name`` to the repository's latest version; the old one stays until then."""
        return self._ensure(name, None, upgrade=True, progress=progress)

    def reinstall(self, name: str, progress: ProgressCallback | None = None) -> InstalledAtlas:
        """Download and install the installed version of ``name`` again (a repair)."""
        found = self.find(name)
        version = found.version if found else None
        return self._ensure(name, version, upgrade=False, progress=progress, force=True)[1]

    def _ensure(
        self,
        name: str,
        version: str | None,
        upgrade: bool,
        progress: ProgressCallback | None,
        force: bool = False,
    ) -> tuple[Action, InstalledAtlas]:
        if self.blocked:
            raise self._offline_error(name, version)
        with self._lock(name):
            self._recover(name)
            found = self.find(name)
            release = self.catalog().resolve(name, version)
            installed = found.version if found else None
            decision = plan(installed, version, release.version, upgrade, force)
            if decision.action == "use" and found is not None:
                return "use", found
            return decision.action, self._install_release(release, found, progress)

    def _offline_error(self, name: str, version: str | None) -> OfflineError:
        cached = self.cached_catalog()
        release = None
        if cached is not None and name in cached.names():
            release = (
                cached.latest(name) if version is None else _exact(cached.versions(name), version)
            )
        wanted = f"{name} {version}" if version else name
        size = f" ({release.size / 1e6:.1f} MB)" if release and release.size else ""
        return OfflineError(
            f"Atlas {wanted} is not installed in {self.root} and would need a download"
            f"{size} from {self.settings.repository}, but offline mode is on "
            "(ATLASMITH_OFFLINE). Install it on a machine with network access "
            f"(`atlasmith install {name}`) and copy the folder or the archive here "
            "(`atlasmith install ARCHIVE_PATH`), or unset ATLASMITH_OFFLINE."
        )

    def _install_release(
        self, release: Release, old: InstalledAtlas | None, progress: ProgressCallback | None
    ) -> InstalledAtlas:
        if release.sha256 is None:
            warnings.warn(
                f"{self.settings.repository} publishes no sha256 for {release.archive} "
                "(a BrainGlobe repository): the download cannot be verified, only safely "
                "extracted. Use an atlasmith repository for verified downloads.",
                UserWarning,
                stacklevel=4,
            )
        downloads = self.download_dir or self._state("downloads")
        downloads.mkdir(parents=True, exist_ok=True)
        self._check_space(downloads, release.size or 0)
        target = downloads / release.archive
        staging = self._state("staging", release.atlas_name)
        folder = None
        try:
            archive, folder = self._download_extracting(release, target, staging, progress)
            if folder is None:  # the streamed extraction failed: once more from the whole file
                folder = safe_extract(archive, staging, max_bytes=self.max_bytes)
            self._check_extracted(folder, archive, release.atlas_name, trusted=True)
            final = self.root / folder.name
            self._swap(folder, old, final)
        finally:
            if folder is not None:
                shutil.rmtree(folder.parent, ignore_errors=True)
            target.unlink(missing_ok=True)
        return InstalledAtlas(release.atlas_name, release.version, final)

    def _download_extracting(
        self, release: Release, target: Path, staging: Path, progress: ProgressCallback | None
    ) -> tuple[Path, Path | None]:
        """Download the archive while a thread extracts it from the growing ``.part`` file.

        Nothing is installed here: the caller renames the folder into place only after
        :func:`download_file` has checked the size and sha256. Returns the archive and the
        extracted folder (None when the streamed extraction failed).
        """
        part = GrowingFile(target.with_name(target.name + ".part"))
        extracted: list[Path] = []

        def extract() -> None:
            with contextlib.suppress(Exception):  # the caller extracts again from the file
                stream = cast(IO[bytes], part)  # a RawIOBase: read, seek and tell are enough
                extracted.append(safe_extract(stream, staging, max_bytes=self.max_bytes))

        worker = threading.Thread(target=extract, daemon=True)
        worker.start()

        def stop() -> None:
            part.finish()
            worker.join()
            part.close()

        try:
            archive = download_file(
                join_location(self.settings.repository, release.archive),
                target,
                sha256=release.sha256,
                size=release.size,
                timeout=self.settings.timeout,
                retries=self.settings.retries,
                progress=_both(progress, part.notify),
            )
        except BaseException:
            part.restarted = True  # stops the extraction at its next read
            stop()
            for folder in extracted:
                shutil.rmtree(folder.parent, ignore_errors=True)
            raise
        stop()
        return archive, (extracted[0] if extracted else None)

    def install_archive(self, path: str | Path) -> InstalledAtlas:
        """Install a local package archive (``NAME_RESum_vM.m.tar.gz``), offline.

        Its sha256 is checked against the cached repository index when that lists the
        version, and its files against its ``manifest.json`` when it has one.
        """
        archive = Path(path)
        top = top_folder(archive)
        parsed = split_folder_name(top)
        if parsed is None:
            raise ArchiveError(
                f"{archive}: its top folder {top!r} is not an atlas folder "
                "('<name>_<res>um_v<major>.<minor>'). Is this an atlas package?"
            )
        name, version = parsed
        trusted = self._check_known_hash(archive, name, version)
        with self._lock(name):
            self._recover(name)
            return self._install_archive_file(archive, name, self.find(name), trusted)

    def install_bundle(
        self, folder: str | Path, progress: ProgressCallback | None = None
    ) -> list[InstalledAtlas]:
        """Install the latest version of every atlas in a repository folder (an offline bundle:
        a copy of a repository's ``index.json`` and archives), verifying each sha256."""
        source = Path(folder)
        if not (source / "index.json").is_file():
            raise RepositoryError(
                f"{source} is not an offline bundle: it has no index.json. Copy a repository "
                "folder (index.json and the archives), or give the path of one archive."
            )
        bundle = AtlasCache(replace(self.settings, repository=str(source)), self.max_bytes)
        return [bundle.update(name, progress)[1] for name in bundle.catalog().names()]

    def _check_known_hash(self, archive: Path, name: str, version: str) -> bool:
        cached = self.cached_catalog()
        release = _exact(cached.versions(name), version) if cached else None
        if release is None or release.sha256 is None:
            return False
        got = sha256_file(archive)
        if got != release.sha256:
            raise IntegrityError(
                f"{archive} is not the published {name} {version}: sha256 expected "
                f"{release.sha256} (repository index), got {got}. Nothing was installed."
            )
        return True

    def _install_archive_file(
        self, archive: Path, name: str, old: InstalledAtlas | None, trusted: bool
    ) -> InstalledAtlas:
        staging = self._state("staging", name)
        folder = safe_extract(archive, staging, max_bytes=self.max_bytes)
        try:
            self._check_extracted(folder, archive, name, trusted)
            final = self.root / folder.name
            self._swap(folder, old, final)
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)
        parsed = split_folder_name(final.name)
        assert parsed is not None  # checked by _check_extracted
        return InstalledAtlas(parsed[0], parsed[1], final)

    def _check_extracted(self, folder: Path, archive: Path, name: str, trusted: bool) -> None:
        parsed = split_folder_name(folder.name)
        if parsed is None or parsed[0] != name:
            raise ArchiveError(
                f"{archive} holds the folder {folder.name!r}, expected {name}_v<version>. "
                "The archive does not match the atlas it was published as; nothing was installed."
            )
        if not (folder / "metadata.json").is_file():
            raise ArchiveError(
                f"{archive} has no metadata.json in {folder.name}: not an atlas package. "
                "Nothing was installed."
            )
        if not trusted and read_manifest(folder) is not None:
            problems = verify_folder(folder)
            if problems:
                raise IntegrityError(
                    f"{archive} does not match its own manifest: {'; '.join(problems[:5])}. "
                    "Nothing was installed; get the archive again."
                )

    def _swap(self, new: Path, old: InstalledAtlas | None, final: Path) -> None:
        """Move the verified new folder in; the old one goes to trash, then is deleted."""
        trash = None
        if old is not None:
            trash = self._state("trash", old.atlas_name) / f"{old.path.name}-{secrets.token_hex(4)}"
            os.rename(old.path, trash)
        os.rename(new, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def _recover(self, name: str) -> None:
        """Undo what a killed process left for ``name`` (called with its lock held)."""
        staging = self._state("staging", name)
        for leftover in staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        trash = self._state("trash", name)
        kept = sorted(trash.iterdir(), key=lambda p: p.stat().st_mtime)
        if kept and self.find(name) is None:  # killed between the two renames of _swap
            newest = kept.pop()
            os.rename(newest, self.root / newest.name.rsplit("-", 1)[0])
        for leftover in kept:
            shutil.rmtree(leftover, ignore_errors=True)

    # --- removing and checking ------------------------------------------------------------------

    def remove(self, name: str) -> Path:
        """Delete the installed atlas ``name`` (renamed away first, so it vanishes at once)."""
        with self._lock(name):
            found = self.require(name)
            trash = self._state("trash", name) / f"{found.path.name}-{secrets.token_hex(4)}"
            os.rename(found.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
            return found.path

    def verify(self, name: str) -> list[str]:
        """Re-hash the installed atlas ``name`` against its manifest; [] when intact."""
        return verify_folder(self.require(name).path)

    # --- small effects ----------------------------------------------------------------------------

    def _state(self, *parts: str) -> Path:
        path = self.root.joinpath(_STATE, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_state(self, name: str, data: bytes) -> None:
        atomic_write(self._state() / name, data)

    def _write_conf(self, catalog: Catalog) -> None:
        """Keep BrainGlobe's cached ``last_versions.conf`` in step (its offline fallback)."""
        latest = (catalog.latest(n) for n in catalog.names())
        lines = ["[atlases]", *(f"{r.atlas_name} = {r.version}" for r in latest if r)]
        atomic_write(self.root / "last_versions.conf", ("\n".join(lines) + "\n").encode())

    def _check_space(self, folder: Path, needed: int) -> None:
        free = shutil.disk_usage(folder).free
        if needed + DISK_MARGIN_BYTES > free:
            raise OSError(
                f"Not enough disk space in {folder}: the download needs {needed} bytes, "
                f"{free} are free. Free some space or set ATLASMITH_CACHE_DIR to a larger disk."
            )

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        check_atlas_name(name)
        path = self._state("locks") / f"{name}.lock"
        try:
            with FileLock(str(path), timeout=_LOCK_TIMEOUT):
                yield
        except Timeout as err:
            raise AtlasExistsError(
                f"Another process has held the lock {path} for {_LOCK_TIMEOUT:.0f} s while "
                f"installing {name}. If no such process runs, delete the lock file."
            ) from err


def _ignore(completed: int, total: int) -> None:
    """A progress callback that does nothing."""


def _both(first: ProgressCallback | None, second: ProgressCallback) -> ProgressCallback:
    """One progress callback that calls two."""

    def update(completed: int, total: int) -> None:
        if first is not None:
            first(completed, total)
        second(completed, total)

    return update


def read_installed_metadata(folder: Path) -> dict[str, Any]:
    """``metadata.json`` of an installed atlas as a dict ({} when unreadable)."""
    try:
        data = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- progress ----------------------------------------------------------------------------------


@contextmanager
def progress_bar(
    label: str, extra: ProgressCallback | None = None, enabled: bool | None = None
) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr (when it is a terminal) that also calls ``extra``.

    Yields the ``(completed, total)`` callback to pass to a download. Without a terminal
    (or a Jupyter kernel) rich is not even imported.
    """
    if enabled is None:
        enabled = sys.stderr.isatty() or "ipykernel" in sys.modules
    if not enabled:
        yield extra if extra is not None else _ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(
        "{task.description}", *columns, console=Console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(completed: int, total: int) -> None:
            bar.update(task, completed=completed, total=total or None)
            if extra is not None:
                extra(completed, total)

        yield update


# --- the user-facing entry points ----------------------------------------------------------------


def fetch(
    name: str,
    version: str | None = None,
    *,
    repository: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Atlas:
    """Open atlas ``name``, downloading and installing it on first use.

    Parameters
    ----------
    name : str
        Atlas name with resolution, e.g. ``"allen_mouse_25um"``.
    version : str, optional
        ``"M.m"``: this exact version (replacing another installed one); default: the
        installed version, or the repository's latest when none is installed.
    repository, cache_dir : optional
        Override the configured repository and cache folder.

    Returns
    -------
    Atlas

    Raises
    ------
    AtlasNotFoundError
        The repository has no such atlas or version.
    OfflineError
        A download is needed but offline mode is on.
    DownloadError, IntegrityError, ArchiveError
        The download failed, or its content is not the published one.

    Examples
    --------
    >>> atlas = fetch("allen_mouse_25um")  # doctest: +SKIP
    """
    from atlasmith.atlas import Atlas

    cache = AtlasCache(load_settings(repository=repository, cache_dir=cache_dir))
    with progress_bar(f"Downloading {name}") as update:
        installed = cache.fetch(name, version, progress=update)
    return Atlas(installed.path)


def _brainglobe_dirs(config_file: str | Path | None) -> dict[str, str]:
    """``[default_dirs]`` of a BrainGlobe config file (BrainGlobe passes a file as config_dir)."""
    if config_file is None:
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(config_file)
    except configparser.Error as err:
        from atlasmith.errors import ConfigError

        raise ConfigError(f"{config_file} is not a BrainGlobe config file: {err}") from err
    return dict(parser["default_dirs"]) if parser.has_section("default_dirs") else {}


def __getattr__(name: str) -> Any:
    """``BrainGlobeAtlas`` is built on first access, importing the reader only then."""
    if name == "BrainGlobeAtlas":
        made = _brainglobe_atlas_class()
        globals()[name] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _brainglobe_atlas_class() -> type[Atlas]:
    from atlasmith.atlas import Atlas

    class BrainGlobeAtlas(Atlas):
        """BrainGlobe 2.3.1's ``BrainGlobeAtlas``: an :class:`Atlas` downloaded on first use.

        Same constructor and members as BrainGlobe's; downloads are verified (sha256), resumable,
        locked against concurrent processes and installed atomically.

        Parameters
        ----------
        atlas_name : str
            Atlas name with resolution, e.g. ``"allen_mouse_25um"``.
        brainglobe_dir : str or Path, optional
            Cache folder (default: ``ATLASMITH_CACHE_DIR``, config file, ``~/.brainglobe``).
        interm_download_dir : str or Path, optional
            Where the archive is downloaded (default: inside the cache folder).
        check_latest : bool
            Warn (on stderr) when the repository has another version.
        config_dir : str or Path, optional
            A BrainGlobe config *file* (as BrainGlobe uses the argument): its ``[default_dirs]``
            give the folders not passed explicitly.
        fn_update : callable, optional
            ``fn_update(completed_bytes, total_bytes)`` during the download.

        Examples
        --------
        >>> atlas = BrainGlobeAtlas("allen_mouse_25um")  # doctest: +SKIP
        >>> atlas
        allen mouse atlas (res. 25um)
        """

        def __init__(
            self,
            atlas_name: str,
            brainglobe_dir: str | Path | None = None,
            interm_download_dir: str | Path | None = None,
            check_latest: bool = True,
            config_dir: str | Path | None = None,
            fn_update: ProgressCallback | None = None,
        ) -> None:
            self.atlas_name = atlas_name
            self.fn_update = fn_update
            dirs = _brainglobe_dirs(config_dir)
            settings = load_settings(cache_dir=brainglobe_dir or dirs.get("brainglobe_dir"))
            self.brainglobe_dir = settings.cache_dir
            interm = interm_download_dir or dirs.get("interm_download_dir")
            self.interm_download_dir = Path(interm) if interm else None
            self._cache = AtlasCache(settings, download_dir=self.interm_download_dir)
            with progress_bar(f"Downloading {atlas_name}", fn_update) as update:
                installed = self._cache.fetch(atlas_name, progress=update)
            self._open(installed.path)
            if check_latest:
                self.check_latest_version()

        def _open(self, path: Path) -> None:
            """Open the folder; a damaged one is downloaded again once (as BrainGlobe does)."""
            try:
                super().__init__(path)
            except (FileNotFoundError, ValueError) as err:
                warnings.warn(
                    f"Atlas {self.atlas_name} in {path} is damaged ({err}); downloading it again.",
                    UserWarning,
                    stacklevel=3,
                )
                self.download_extract_file()
                super().__init__(self._cache.require(self.atlas_name).path)

        def download_extract_file(self) -> None:
            """Download the atlas again and install it in place of the installed folder."""
            with progress_bar(f"Downloading {self.atlas_name}", self.fn_update) as update:
                self._cache.reinstall(self.atlas_name, progress=update)

        @property
        def local_full_name(self) -> str | None:
            """Installed folder name (``allen_mouse_25um_v1.2``) or None."""
            found = self._cache.find(self.atlas_name)
            return found.path.name if found else None

        @property
        def local_version(self) -> tuple[int, ...] | None:
            """Installed version as integers, e.g. ``(1, 2)``, or None."""
            found = self._cache.find(self.atlas_name)
            return parse_version(found.version) if found else None

        @property
        def remote_version(self) -> tuple[int, ...] | None:
            """The repository's latest version as integers; None when it cannot be read."""
            latest = self._cache.latest_version(self.atlas_name)
            return parse_version(latest) if latest else None

        @property
        def remote_url(self) -> str | None:
            """URL of the latest version's archive, or None."""
            latest = self._cache.latest_version(self.atlas_name)
            if latest is None:
                return None
            return join_location(
                self._cache.settings.repository, f"{self.atlas_name}_v{latest}.tar.gz"
            )

        def check_latest_version(self, print_warning: bool = True) -> bool | None:
            """True when the installed version is the repository's latest, False when it is not
            (with a message on stderr), None when the repository cannot be read."""
            remote, local = self.remote_version, self.local_version
            if remote is None or local is None:
                return None
            if local == remote:
                return True
            if print_warning:
                import sys

                print(
                    f"atlasmith: {self.atlas_name} version {'.'.join(map(str, local))} is not the "
                    f"latest available ({'.'.join(map(str, remote))}). To update it run:\n"
                    f"    atlasmith update {self.atlas_name}",
                    file=sys.stderr,
                )
            return False

        def __repr__(self) -> str:
            *words, resolution = self.atlas_name.split("_")
            return f"{' '.join(words)} atlas (res. {resolution})"

    return BrainGlobeAtlas


# --- what the command line shows ---------------------------------------------------------------


def list_rows(cache: AtlasCache, remote: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Rows for ``atlasmith list`` and a note when the repository could not be read.

    With ``remote``, one row per version in the repository; otherwise one row per atlas
    (installed or offered) with its local and latest versions.
    """
    catalog, note = _browse_catalog(cache)
    if remote and catalog is None:
        raise RepositoryError(f"Cannot list the repository's versions: {note}")
    if remote and catalog is not None:
        return [_release_row(cache, r) for n in catalog.names() for r in catalog.versions(n)], note
    return [row.to_dict() for row in status_rows(cache.installed(), catalog)], note


def _browse_catalog(cache: AtlasCache) -> tuple[Catalog | None, str | None]:
    """The repository's catalog for browsing (one quick attempt), else the cached index;
    with a note saying which, when it is not the live one."""
    try:
        return cache.catalog(quick=True), None
    except (OfflineError, ConnectionError, RepositoryError) as err:
        cached = cache.cached_catalog()
        if cached is None:
            return None, f"the repository could not be read ({err}); showing installed atlases"
        return cached, f"the repository could not be read ({err}); showing its cached index"


def _release_row(cache: AtlasCache, release: Release) -> dict[str, Any]:
    local = cache.find(release.atlas_name)
    return {
        "name": release.atlas_name,
        "version": release.version,
        "installed": local is not None and local.version == release.version,
        "yanked": release.yanked,
        "size_mb": None if release.size is None else round(release.size / 1e6, 1),
        "published": release.published,
        "sha256": release.sha256,
    }


def install_target(
    cache: AtlasCache, target: str, version: str | None, progress: ProgressCallback | None
) -> list[InstalledAtlas]:
    """Install by name, from a package archive path, or from an offline bundle folder."""
    path = Path(target)
    if path.is_dir():
        return cache.install_bundle(path, progress)
    if path.is_file():
        return [cache.install_archive(path)]
    if target.endswith((".tar.gz", ".tgz")) or "/" in target:
        raise ArchiveError(f"{target} does not exist: give an atlas name or an archive path.")
    pinned = split_folder_name(target)  # a folder name, e.g. allen_mouse_25um_v1.2
    if pinned is not None and version in (None, pinned[1]):
        return [cache.fetch(pinned[0], pinned[1], progress)]
    return [cache.fetch(target, version, progress)]


def atlas_info(cache: AtlasCache, name: str) -> dict[str, Any]:
    """What is known about ``name``: installed folder and metadata, published versions."""
    local = cache.find(name)
    info: dict[str, Any] = {"name": name, "installed": local is not None}
    if local is not None:
        info.update(
            version=local.version,
            path=str(local.path),
            manifest=local.has_manifest,
            metadata=read_installed_metadata(local.path),
        )
    catalog, note = _browse_catalog(cache)
    releases = catalog.versions(name) if catalog else []
    if note:
        info["repository"] = note
    if catalog and releases:
        latest = catalog.latest(name)
        info["latest_version"] = latest.version if latest else None
        info["versions"] = [_release_row(cache, r) for r in releases]
    if local is None and not releases:
        raise AtlasNotFoundError(
            f"{name} is neither installed in {cache.root} nor offered by "
            f"{cache.settings.repository}. Run `atlasmith list` to see the atlases."
        )
    return info


def settings_info(cache: AtlasCache) -> dict[str, Any]:
    """The client settings in use and where they came from."""
    from atlasmith.config import config_path

    settings = cache.settings
    return {
        "repository": settings.repository,
        "cache_dir": str(settings.cache_dir),
        "offline": settings.offline,
        "timeout_s": settings.timeout,
        "retries": settings.retries,
        "config_file": str(config_path()),
        "installed": [a.path.name for a in cache.installed()],
    }
