"""The local atlas cache: install, update, remove and verify atlases, safely and atomically.

Layout (BrainGlobe's, so that its own tools read what we install)::

    <cache_dir>/                      BrainGlobe's brainglobe_dir, else ~/.brainglobe
        allen_mouse_25um_v1.2/        one folder per atlas, one version per atlas (v1.2)
        last_versions.conf            latest versions (BrainGlobe 2.3.1 reads it)
        brainglobe-atlasapi/          the same atlases for BrainGlobe 3 (its own layout):
            atlases/allen_mouse_25um/3_2/manifest.json, atlases/last_versions.conf,
            templates/, annotation-sets/, terminologies/, coordinate-spaces/
        .atlasmith/
            index.json                last index read from the repository (offline use)
            locks/<atlas>.lock        one lock per atlas: concurrent processes download once
            downloads/<archive>.part  partial downloads, resumed by the next attempt
            staging/<atlas>/          extraction in progress (same disk: the rename is atomic)
            trash/<atlas>/            removed and replaced versions, being deleted
            swaps/<atlas>.json        the journal of an update in progress

An install downloads and checks the archive and extracts it into ``staging``
(:mod:`atlasmith._install`), then moves the folder into place, and (format v3, the default)
writes the same atlas as BrainGlobe 3 components in ``staging`` and moves them into
``brainglobe-atlasapi/``, the manifest last; an update moves the new
version in before the old one goes, so there is always an installed version, and a process
killed at any point leaves either the old version, the new one, or a journal that the next
locked operation on the atlas completes (:func:`atlasmith._install.recover`).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from atlasmith import _install, _trust
from atlasmith._cache_v3 import STATE, V3_ROOT, V3Cache, is_v3_atlas
from atlasmith._fs import atomic_write, file_lock, remove_tree
from atlasmith._install import Action, InstalledAtlas, Plan, plan
from atlasmith._types import PathLike, ProgressCallback
from atlasmith.config import Settings, load_settings
from atlasmith.download import fetch_bytes, is_remote, join_location
from atlasmith.errors import (
    ArchiveError,
    AtlasExistsError,
    AtlasmithError,
    AtlasNotFoundError,
    IntegrityError,
    OfflineError,
    RepositoryError,
    UnknownAtlasError,
    YankedVersionWarning,
)
from atlasmith.names import (
    ARCHIVE_SUFFIX,
    check_atlas_name,
    is_atlas_name,
    parse_version,
    split_folder_name,
)
from atlasmith.package import safe_extract, sha256_file, top_folder, verify_folder
from atlasmith.repository import CONF_NAMES, INDEX_NAME, IndexEntry, RepositoryIndex

if TYPE_CHECKING:  # pragma: no cover
    import httpx


__all__ = [
    "Action",
    "AtlasCache",
    "InstalledAtlas",
    "Plan",
    "plan",
]

_LOCK_TIMEOUT = 3600.0
_SWAPS = "swaps"  # journals of updates in progress
_CONF = CONF_NAMES[0]  # last_versions.conf: the name BrainGlobe's client reads


def _warn_yanked(message: str) -> None:
    """Warn about a yanked version, pointing at the caller of ``fetch``/``update``."""
    warnings.warn(message, YankedVersionWarning, stacklevel=5)


# --- the cache ---------------------------------------------------------------------------------


class AtlasCache(V3Cache):
    """Installed atlases in one cache folder, and the repository they come from.

    Parameters
    ----------
    settings : Settings, optional
        Repository, cache folder, offline flag, timeouts (default: :func:`load_settings`).
    max_bytes : int, optional
        Cap on the uncompressed size of one atlas archive (default: the settings').
    download_dir : Path, optional
        Where partial downloads are kept (default ``<cache>/.atlasmith/downloads``).
    client : httpx.Client, optional
        The HTTP client for every download (e.g. with a custom transport, proxy or
        certificates; the caller closes it); by default each download makes its own.
    formats : sequence of str
        ``("v1", "v3")`` (default): every install also writes the atlas as BrainGlobe 3
        components into ``brainglobe-atlasapi/``, where brainglobe-atlasapi 3.x looks;
        ``("v1",)``: the v1.2 folder only.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        max_bytes: int | None = None,
        download_dir: Path | None = None,
        client: httpx.Client | None = None,
        formats: Sequence[str] = ("v1", "v3"),
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.root = self.settings.cache_dir
        #: ``v1`` is always installed (the verified package); ``v3`` adds BrainGlobe 3's copy.
        self.formats = tuple(formats)
        self.v3_root = self.root / V3_ROOT
        self.max_bytes = max_bytes or self.settings.max_archive_bytes
        self.download_dir = download_dir
        self.client = client
        # a repository in a local folder (a mounted copy, an offline bundle) is usable offline
        self.blocked = self.settings.offline and is_remote(self.settings.repository)
        self._index: RepositoryIndex | None = None

    @classmethod
    def from_options(
        cls,
        repository: str | None,
        cache_dir: PathLike | None,
        offline: bool | None,
        allow_unverified: bool | None = None,
    ) -> AtlasCache:
        """A cache for command-line options (None: from the environment or config file)."""
        settings = load_settings(
            repository=repository,
            cache_dir=cache_dir,
            offline=offline,
            allow_unverified=allow_unverified,
        )
        return cls(settings)

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
            if parsed and path.is_dir():
                found.append(InstalledAtlas(parsed[0], parsed[1], path))
        return sorted(found, key=lambda a: (a.atlas_name, parse_version(a.version)))

    def find(self, name: str) -> InstalledAtlas | None:
        """The installed version of ``name``, or None.

        Raises
        ------
        UnknownAtlasError
            When ``name`` cannot be an atlas name.
        AtlasExistsError
            When several versions are installed (BrainGlobe's FileExistsError).
        """
        check_atlas_name(name)
        if (self.root / STATE / _SWAPS / f"{name}.json").is_file():
            with self._lock(name):  # an update was killed between its two renames
                self._recover(name)
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
        found = self.find(name) if is_atlas_name(name) else None
        if found is None:
            raise self._not_installed(name)
        return found

    def _not_installed(self, name: str) -> AtlasNotFoundError:
        """The error for an atlas that is not installed (an UnknownAtlasError for a name no
        atlas can have), naming installed atlases whose names are close: a misspelt name is
        more likely than a wish to install it."""
        here = sorted({a.atlas_name for a in [*self.installed(), *self.installed_v3()]})
        close = difflib.get_close_matches(name, here, n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        message = f"{name} is not installed in {self.root}.{hint}"
        try:
            check_atlas_name(name)
        except UnknownAtlasError as invalid:  # says why, and what to run
            return UnknownAtlasError(f"{message} {invalid}")
        return AtlasNotFoundError(
            f"{message} Run `atlasmith list` to see the installed atlases (and those the "
            "repository offers)."
        )

    def cached_index(self) -> RepositoryIndex | None:
        """The index last read from the repository, or None."""
        path = self.root / STATE / INDEX_NAME  # no mkdir: a shared cache may be read-only
        if not path.is_file():
            return None
        try:
            return RepositoryIndex.from_json(path.read_bytes(), f"{path} (cached)")
        except RepositoryError:  # a damaged copy is ignored; the next online call rewrites it
            return None

    # --- reading the repository ----------------------------------------------------------------

    def index(self, quick: bool = False) -> RepositoryIndex:
        """What the repository offers (read once per AtlasCache; cached for offline use).

        Offline, the copy cached by the last online call is used. ``quick``: one attempt
        with a short timeout (for version checks that must not hold the user up).
        """
        if self._index is None:
            self._index = self._offline_index() if self.blocked else self._load(quick)
        return self._index

    def _offline_index(self) -> RepositoryIndex:
        cached = self.cached_index()
        if cached is None:
            why, undo = self.settings.offline_reason()
            raise OfflineError(
                f"Offline mode is on ({why}) and no repository index is cached in {self.root}: "
                f"only installed atlases can be used. To read the repository, {undo}."
            )
        return cached

    def _load(self, quick: bool = False) -> RepositoryIndex:
        repo = self.settings.repository
        timeout = min(5.0, self.settings.timeout) if quick else self.settings.timeout
        retries = 1 if quick else self.settings.retries

        def read(name: str) -> bytes | None:
            return fetch_bytes(join_location(repo, name), timeout, retries, client=self.client)

        data = read(INDEX_NAME)
        if data is not None:
            index = RepositoryIndex.from_json(data, repo)
            self._write_state(INDEX_NAME, data)
            _trust.remember_verified(self._state(), repo)  # never downgraded from now on
            atomic_write(self.root / _CONF, index.render_conf().encode())  # BrainGlobe's copy
            return index
        conf = read(_CONF)
        if conf is None:
            raise RepositoryError(
                f"{repo} is not an atlas repository: it has neither {INDEX_NAME} nor {_CONF}. "
                "Check ATLASMITH_REPOSITORY or --repository."
            )
        _trust.check_unverified(self.root / STATE, self.settings)  # or refuses
        return RepositoryIndex.from_conf(conf.decode("utf-8", "replace"), repo)

    def latest_version(self, name: str) -> str | None:
        """The repository's latest version of ``name`` (one quick attempt, then the cached
        index); None when neither is available."""
        try:
            index: RepositoryIndex | None = self.index(quick=True)
        except (OfflineError, ConnectionError, RepositoryError):
            index = self.cached_index()
        latest = index.latest(name) if index else None
        return latest.version if latest else None

    # --- installing ---------------------------------------------------------------------------

    def fetch(
        self, name: str, version: str | None = None, progress: ProgressCallback | None = None
    ) -> InstalledAtlas:
        """Return the installed atlas ``name``, downloading it first if needed.

        An installed atlas is used as it is (no network) unless ``version`` names another
        version, which then replaces it (one version per atlas, as BrainGlobe keeps them).
        Without ``version`` the latest non-yanked version is installed; a yanked version is
        installed only when named exactly, with a :class:`YankedVersionWarning` that shows
        why it was yanked (PEP 592's rule).

        Raises
        ------
        OfflineError
            When a download is needed in offline mode.
        AtlasNotFoundError
            When the repository has no such atlas or version, or (without ``version``) every
            version is yanked: the message lists them with their reasons.
        DownloadError, IntegrityError, ArchiveError
        """
        found = self.find(name)
        if found is not None and version in (None, found.version):
            return found
        return self._ensure(name, version, upgrade=False, progress=progress)[1]

    def update(
        self, name: str, progress: ProgressCallback | None = None
    ) -> tuple[Action, InstalledAtlas]:
        """Move ``name`` to the repository's latest non-yanked version; the old one stays until
        then. Never to an older version: an installed version that was yanked stays (with a
        :class:`YankedVersionWarning` showing the reason) unless a newer one is published."""
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
        if self._untouched(check_atlas_name(name)):
            self._check_offered(name, version)
        with self._lock(name):
            self._recover(name)
            found = self.find(name)
            index = self.index()
            if version is not None or found is None or not index.versions(name):
                index.entry(name, version)  # nothing to install: an unknown or all-yanked atlas
            latest = index.latest(name)  # never a yanked version
            installed = found.version if found else None
            newest = latest.version if latest is not None else None
            decision = plan(installed, version, newest, upgrade, force)
            if decision.action == "use" and found is not None:
                kept = index.get(name, found.version)
                if upgrade and kept is not None and kept.yanked:
                    _warn_yanked(_install.yanked_notice(kept, latest, installed=True))
                return "use", found
            entry = index.entry(name, decision.version)
            done = self._install_entry(entry, found, progress)
            if entry.yanked:  # installed only because it was named exactly (PEP 592)
                _warn_yanked(_install.yanked_notice(entry, latest, installed=False))
            return decision.action, done

    def _untouched(self, name: str) -> bool:
        """Whether the cache holds nothing of ``name`` (no lock, staging, trash or journal):
        then no killed operation left anything that a lock holder must finish first, and a
        name that is not there (a typo) can be refused before anything is written for it."""
        state = self.root / STATE
        paths = [state / "locks" / f"{name}.lock", state / _SWAPS / f"{name}.json"]
        return not any(
            p.exists() for p in [*paths, state / "staging" / name, state / "trash" / name]
        )

    def _check_offered(self, name: str, version: str | None) -> None:
        """Raise the index's error for an atlas (or exact version) the repository does not
        have, or an atlas whose every version is yanked asked for without a version, before
        the lock and the staging folders exist: such a request leaves nothing in the cache
        but the repository's index."""
        index = self.index()
        if not index.versions(name) or (version is not None and index.get(name, version) is None):
            index.entry(name, version)
        if version is None and index.latest(name) is None and self.find(name) is None:
            index.entry(name, None)  # every version yanked and nothing installed to keep

    def _offline_error(self, name: str, version: str | None) -> OfflineError:
        cached = self.cached_index()
        entry = None
        if cached is not None:
            entry = cached.latest(name) if version is None else cached.get(name, version)
        wanted = f"{name} {version}" if version else name
        size = f" ({entry.size / 1e6:.1f} MB)" if entry and entry.size else ""
        why, undo = self.settings.offline_reason()
        return OfflineError(
            f"Atlas {wanted} is not installed in {self.root} and would need a download"
            f"{size} from {self.settings.repository}, but offline mode is on ({why}). "
            f"Install it on a machine with network access (`atlasmith install {name}`) and "
            f"copy the folder or the archive here (`atlasmith install ARCHIVE_PATH`), or {undo}."
        )

    def _install_entry(
        self, entry: IndexEntry, old: InstalledAtlas | None, progress: ProgressCallback | None
    ) -> InstalledAtlas:
        if entry.sha256 is None:
            warnings.warn(
                f"{self.settings.repository} publishes no sha256 for {entry.archive} "
                "(a BrainGlobe repository): the download cannot be verified, only safely "
                "extracted. Use an atlasmith repository for verified downloads.",
                UserWarning,
                stacklevel=4,
            )
        downloads = self.download_dir or self._state("downloads")
        downloads.mkdir(parents=True, exist_ok=True)
        _install.check_space(downloads, entry.size or 0)
        target = downloads / entry.archive
        paths = self._paths(entry.atlas_name)
        keep = False  # a verified download outlives an interruption: the next run uses it
        try:
            folder = _install.download_and_extract(
                join_location(self.settings.repository, entry.archive),
                target,
                paths.staging,
                sha256=entry.sha256,
                size=entry.size,
                timeout=self.settings.timeout,
                retries=self.settings.retries,
                max_bytes=self.max_bytes,
                progress=progress,
                client=self.client,
            )
            try:
                return self._move_in(folder, target, entry.atlas_name, old, entry.version)
            finally:
                remove_tree(folder.parent)
        except AtlasmithError:
            raise  # the archive itself is wrong (or never arrived): it goes
        except BaseException:  # Ctrl-C, SIGTERM, a full disk: a verified download stays
            installed = (self.root / entry.folder_name).is_dir()
            keep = entry.sha256 is not None and target.is_file() and not installed
            raise
        finally:
            if not keep:
                target.unlink(missing_ok=True)

    def _move_in(
        self,
        folder: Path,
        archive: Path,
        name: str,
        old: InstalledAtlas | None,
        expected: str,
    ) -> InstalledAtlas:
        """Check an extracted folder (it is version ``expected`` of ``name`` and matches its
        own manifest) and move it into place, retiring ``old``."""
        atlas, version = _install.check_extracted(folder, archive, name, expected)
        final = self.root / folder.name
        _install.swap_in(folder, final, None if old is None else old.path, self._paths(name))
        _install.note_version(self.root / _CONF, atlas, version)  # BrainGlobe 2.3.1, offline
        if "v3" in self.formats:
            self._write_v3(final, name)
        return InstalledAtlas(atlas, version, final)

    def install(
        self, target: str, version: str | None = None, progress: ProgressCallback | None = None
    ) -> list[InstalledAtlas]:
        """Install by atlas name (or folder name), from a package archive path, or from an
        offline bundle folder (every atlas in it)."""
        path = Path(target)
        if is_v3_atlas(path):
            return [self.install_v3(path)]
        if path.is_dir():
            return self.install_bundle(path, progress)
        if path.is_file():
            return [self.install_archive(path)]
        if target.endswith((ARCHIVE_SUFFIX, ".tgz")) or "/" in target:
            raise ArchiveError(f"{target} does not exist: give an atlas name or an archive path.")
        pinned = split_folder_name(target)  # a folder name, e.g. allen_mouse_25um_v1.2
        if pinned is not None and version in (None, pinned[1]):
            return [self.fetch(pinned[0], pinned[1], progress)]
        return [self.fetch(target, version, progress)]

    def install_archive(self, path: PathLike) -> InstalledAtlas:
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
        self._check_known_hash(archive, name, version)
        with self._lock(name):
            self._recover(name)
            old = self.find(name)
            folder = safe_extract(archive, self._paths(name).staging, max_bytes=self.max_bytes)
            try:
                return self._move_in(folder, archive, name, old, version)
            finally:
                remove_tree(folder.parent)

    def install_bundle(
        self, folder: PathLike, progress: ProgressCallback | None = None
    ) -> list[InstalledAtlas]:
        """Install the latest version of every atlas in a repository folder (an offline bundle:
        a copy of a repository's ``index.json`` and archives), verifying each sha256."""
        source = Path(folder)
        if not (source / INDEX_NAME).is_file():
            raise RepositoryError(
                f"{source} is not an offline bundle: it has no {INDEX_NAME}. Copy a repository "
                "folder (index.json and the archives), or give the path of one archive."
            )
        bundle = AtlasCache(replace(self.settings, repository=str(source)), self.max_bytes)
        # the bundle's latest version of each atlas, as asked (older than the installed one,
        # too); an atlas whose every version is yanked has none, and is skipped
        index = bundle.index()
        offered = index.latest_versions()
        for name in index.names():
            if name not in offered:
                newest = index.versions(name)[-1].version
                _warn_yanked(
                    f"{name} is not installed from {source}: every version of it is yanked. "
                    f"To install one, name it exactly: `atlasmith install {name} --version "
                    f"{newest} --repository {source}`."
                )
        return [bundle.fetch(name, version, progress) for name, version in offered.items()]

    def _check_known_hash(self, archive: Path, name: str, version: str) -> None:
        cached = self.cached_index()
        entry = cached.get(name, version) if cached else None
        if entry is None or entry.sha256 is None:
            return
        got = sha256_file(archive)
        if got != entry.sha256:
            raise IntegrityError(
                f"{archive} is not the published {name} {version}: sha256 expected "
                f"{entry.sha256} (repository index), got {got}. Nothing was installed."
            )

    # --- removing and checking ------------------------------------------------------------------

    def remove(self, name: str) -> Path:
        """Delete the installed atlas ``name``, and its BrainGlobe 3 copy (each renamed away
        first, so it vanishes at once). Returns the v1.2 folder (or the v3 manifest)."""
        if not is_atlas_name(name) or (self._untouched(name) and not self.installed_v3(name)):
            self.require(name)  # before the lock: a name not installed (a typo) writes nothing
        with self._lock(name):
            self._recover(name)
            found, copies = self.find(name), self.installed_v3(name)
            if found is None and not copies:
                self.require(name)  # raises AtlasNotFoundError
            folders = [f for c in copies for f in _install.v3_folders(self.v3_root, c.path, name)]
            if found is not None:
                folders.append(found.path)
            _install.retire(folders, self._paths(name))
            return copies[0].path if found is None else found.path

    def verify(self, name: str) -> list[str]:
        """Re-hash the installed atlas ``name`` against its manifest, and its BrainGlobe 3
        copy (or the pieces of it fetched so far) against the sha256 its manifest lists; []
        when intact."""
        found = self.find(name)
        if found is None and not self.installed_v3(name):
            self.require(name)  # raises AtlasNotFoundError
        problems = verify_folder(found.path) if found is not None else []
        return problems + self.verify_v3(name)

    # --- small effects ----------------------------------------------------------------------------

    def _state(self, *parts: str) -> Path:
        path = self.root.joinpath(STATE, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _paths(self, name: str) -> _install.Staging:
        return _install.Staging(
            root=self.root,
            staging=self._state("staging", name),
            trash=self._state("trash", name),
            journal=self._state(_SWAPS) / f"{name}.json",
        )

    def _recover(self, name: str) -> None:
        """Finish what a killed process left for ``name`` (called with its lock held)."""
        _install.recover(self._paths(name))

    def _write_state(self, name: str, data: bytes) -> None:
        atomic_write(self._state() / name, data)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        from filelock import Timeout

        check_atlas_name(name)
        path = self._state("locks") / f"{name}.lock"
        try:
            with file_lock(path, timeout=_LOCK_TIMEOUT):
                yield
        except Timeout as err:
            raise AtlasExistsError(
                f"Another process has held the lock {path} for {_LOCK_TIMEOUT:.0f} s while "
                f"installing {name}. If no such process runs, delete the lock file."
            ) from err
