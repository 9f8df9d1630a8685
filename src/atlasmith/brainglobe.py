"""Atlases by name, downloaded on first use: :func:`fetch`, and :class:`BrainGlobeAtlas` with
BrainGlobe 2.3.1's signature.

Both install the atlas into the cache (:class:`atlasmith.cache.AtlasCache`: verified,
resumable, locked, atomic) and open it as an :class:`atlasmith.Atlas`. A download bar is shown
in terminals and notebooks, as BrainGlobe's client shows one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atlasmith._types import PathLike, ProgressCallback
from atlasmith.atlas import Atlas
from atlasmith.cache import AtlasCache
from atlasmith.config import DEFAULT_REPOSITORY, brainglobe_dir, brainglobe_dirs, load_settings
from atlasmith.download import join_location
from atlasmith.errors import (
    AtlasExistsError,
    ConfigError,
    OfflineError,
    RepositoryError,
    UnknownAtlasError,
)
from atlasmith.names import archive_name, check_atlas_name, parse_version
from atlasmith.progress import download_bar
from atlasmith.repository import CONF_NAMES, RepositoryIndex

__all__ = ["BrainGlobeAtlas", "fetch"]


def fetch(
    name: str,
    version: str | None = None,
    *,
    repository: PathLike | None = None,
    cache_dir: PathLike | None = None,
    lazy: bool = False,
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
    lazy : bool
        Open the atlas as published in BrainGlobe 3's format, downloading only its manifest
        now and each other piece (stack chunk, mesh, mask) on first use, verified; pieces
        already downloaded are used offline. Default: install the whole v1.2 package.

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
    cache = AtlasCache(load_settings(repository=repository, cache_dir=cache_dir))
    if lazy:
        return Atlas(cache.open_lazy(name, version))
    with download_bar(f"Downloading {name}") as update:
        installed = cache.fetch(name, version, progress=update)
    return Atlas(installed.path)


#: BrainGlobe 2.3.1's ``_remote_url_base``: a file of its repository (GIN), ``{}`` its name.
_GIN_URL_BASE = join_location(DEFAULT_REPOSITORY, "{}")
_VERSIONS_FILE = CONF_NAMES[0]  # last_versions.conf


class BrainGlobeAtlas(Atlas):
    """BrainGlobe 2.3.1's ``BrainGlobeAtlas``: an :class:`Atlas` downloaded on first use.

    Same constructor and members as BrainGlobe's; downloads are verified (sha256), resumable,
    locked against concurrent processes and installed atomically.

    Folders, as 2.3.1 chooses them: the arguments, else the ``[default_dirs]`` of BrainGlobe's
    config file (``config_dir``, else ``bg_config.conf`` in ``$BRAINGLOBE_CONFIG_DIR`` or
    ``~/.config/brainglobe``), else atlasmith's settings (``ATLASMITH_CACHE_DIR``, its config
    file, ``~/.brainglobe``). The repository: the class's ``_remote_url_base`` when code set it
    (as BrainGlobe's tests do), else atlasmith's settings (``ATLASMITH_REPOSITORY``, else
    BrainGlobe's GIN).

    Parameters
    ----------
    atlas_name : str
        Atlas name with resolution, e.g. ``"allen_mouse_25um"``.
    brainglobe_dir : str or Path, optional
        Folder of the installed atlases (see above for the default).
    interm_download_dir : str or Path, optional
        Where the archive is downloaded (default: the ``config_dir`` file's, else inside the
        cache folder). BrainGlobe's own config is not read for it: it usually names
        ``brainglobe_dir``, where a resumable partial download would look like another
        version to BrainGlobe's tools.
    check_latest : bool
        Warn (on stderr) when the repository has another version.
    config_dir : str or Path, optional
        A BrainGlobe config *file* (as BrainGlobe uses the argument) to read instead of
        BrainGlobe's own.
    fn_update : callable, optional
        ``fn_update(completed_bytes, total_bytes)`` during the download.
    lazy : bool
        Open the BrainGlobe 3 copy piece by piece instead of installing the package (see
        :func:`fetch`); atlasmith's extension.

    Raises
    ------
    UnknownAtlasError
        (a ValueError, as BrainGlobe raises) for a name the repository does not have; the
        message ends as 2.3.1's: ``"<name> is not a valid atlas name!"``.
    AtlasExistsError
        (a FileExistsError, as BrainGlobe raises) when the folder holds several
        ``<name>_v*`` entries ("Multiple versions").
    ConfigError
        For an unreadable BrainGlobe config, or a ``_remote_url_base`` without ``{}``.

    Examples
    --------
    >>> atlas = BrainGlobeAtlas("allen_mouse_25um")  # doctest: +SKIP
    >>> atlas
    allen mouse atlas (res. 25um)
    """

    #: The atlas's name (set on each object; None on the class, as in BrainGlobe).
    atlas_name: str | None = None
    #: URL of a file of the repository, ``{}`` standing for the file name (BrainGlobe's GIN
    #: on the class). Set it on the class to read another repository; on each object it is
    #: the repository that object reads, and ``remote_url`` is made from it.
    _remote_url_base: str = _GIN_URL_BASE

    def __init__(
        self,
        atlas_name: str,
        brainglobe_dir: PathLike | None = None,
        interm_download_dir: PathLike | None = None,
        check_latest: bool = True,
        config_dir: PathLike | None = None,
        fn_update: ProgressCallback | None = None,
        lazy: bool = False,
    ) -> None:
        self.atlas_name = atlas_name
        self.fn_update = fn_update
        dirs = brainglobe_dirs(config_dir)  # BrainGlobe's own config when config_dir is None
        settings = load_settings(
            repository=self._repository_override(),
            cache_dir=brainglobe_dir or dirs.get("brainglobe_dir"),
        )
        self.brainglobe_dir = settings.cache_dir
        self._remote_url_base = join_location(settings.repository, "{}")
        # BrainGlobe's own config usually sets interm_download_dir to brainglobe_dir, where
        # atlasmith's resumable NAME_vM.m.tar.gz.part would look like another version to
        # BrainGlobe's tools: only a config file given as config_dir is followed for it
        interm = interm_download_dir or (
            dirs.get("interm_download_dir") if config_dir is not None else None
        )
        self.interm_download_dir = Path(interm) if interm else None
        self._cache = AtlasCache(settings, download_dir=self.interm_download_dir)
        if lazy:
            with self._name_errors():
                Atlas.__init__(self, self._cache.open_lazy(atlas_name))
            return
        with self._name_errors():
            self._check_one_version()
            with download_bar(f"Downloading {atlas_name}", fn_update) as update:
                installed = self._cache.fetch(atlas_name, progress=update)
        self._open(installed.path)
        if check_latest:
            self.check_latest_version()

    @classmethod
    def _repository_override(cls) -> str | None:
        """The repository ``_remote_url_base`` names when code changed it on the class."""
        base = cls._remote_url_base
        if base == _GIN_URL_BASE:
            return None
        if not isinstance(base, str) or not base.endswith("{}") or base.count("{}") != 1:
            raise ConfigError(
                f"{cls.__name__}._remote_url_base must be the URL of a repository file with "
                f"'{{}}' at the end for the file name, e.g. 'https://host/atlases/{{}}'; got "
                f"{base!r}."
            )
        return base[:-2]

    @property
    def _name(self) -> str:
        return str(self.atlas_name)

    @contextmanager
    def _name_errors(self) -> Iterator[None]:
        """End an unknown-name error as BrainGlobe 2.3.1 ends it, after atlasmith's advice."""
        try:
            check_atlas_name(self.atlas_name)
            yield
        except UnknownAtlasError as err:
            message = str(err).rstrip()
            raise UnknownAtlasError(f"{message} {self._name} is not a valid atlas name!") from err

    def _check_one_version(self) -> None:
        """BrainGlobe's rule: one ``<name>_v*`` entry in the folder, whatever follows ``_v``."""
        entries = self.brainglobe_dir.glob(f"{self._name}_v*")
        # a partial download of atlasmith's own (interm_download_dir there) is not a version
        found = sorted(p.name for p in entries if not p.name.endswith(".part"))
        if len(found) > 1:
            raise AtlasExistsError(
                f"Multiple versions of atlas {self._name} in {self.brainglobe_dir}: "
                f"{', '.join(found)}. BrainGlobe's tools (and this class) need exactly one: "
                f"move or delete the others (keep the version folder, e.g. {self._name}_v1.2), "
                f"or run `atlasmith remove {self._name}` and install it again."
            )

    def _open(self, path: Path) -> None:
        """Open the folder; a damaged one is downloaded again once (as BrainGlobe does)."""
        try:
            super().__init__(path)
        except (FileNotFoundError, ValueError) as err:
            warnings.warn(
                f"Atlas {self._name} in {path} is damaged ({err}); downloading it again.",
                UserWarning,
                stacklevel=3,
            )
            self.download_extract_file()
            super().__init__(self._cache.require(self._name).path)

    def download_extract_file(self) -> None:
        """Download the atlas again and install it in place of the installed folder."""
        with download_bar(f"Downloading {self._name}", self.fn_update) as update:
            self._cache.reinstall(self._name, progress=update)

    @property
    def local_full_name(self) -> str | None:
        """Installed folder name (``allen_mouse_25um_v1.2``) or None.

        Raises AtlasExistsError (a FileExistsError) when several ``<name>_v*`` entries are
        there, as BrainGlobe does.
        """
        self._check_one_version()
        found = self._cache.find(self._name)
        return found.path.name if found else None

    @property
    def local_version(self) -> tuple[int, ...] | None:
        """Installed version as integers, e.g. ``(1, 2)``, or None."""
        found = self._cache.find(self._name)
        return parse_version(found.version) if found else None

    @property
    def remote_version(self) -> tuple[int, ...] | None:
        """The repository's latest version as integers.

        Read from the repository (one quick attempt); when it cannot be reached, as last read:
        the cached index, else the ``last_versions.conf`` kept in the atlas folder (where
        BrainGlobe 2.3.1 keeps its copy; also BrainGlobe's configured ``brainglobe_dir``).
        None when the atlas is in none of them (2.3.1 raises FileNotFoundError when it is
        offline with no such file).
        """
        latest = self._latest_version()
        return parse_version(latest) if latest else None

    def _latest_version(self) -> str | None:
        try:
            index = self._cache.index(quick=True)
        except (OfflineError, ConnectionError, RepositoryError):
            return self._last_read_version()
        latest = index.latest(self._name)
        return latest.version if latest else None

    def _last_read_version(self) -> str | None:
        """The latest version as last read from the repository, offline."""
        cached = self._cache.cached_index()
        latest = cached.latest(self._name) if cached is not None else None
        if latest is not None:
            return latest.version
        for folder in dict.fromkeys([self.brainglobe_dir, brainglobe_dir()]):
            path = None if folder is None else folder / _VERSIONS_FILE
            try:
                text = path.read_text(encoding="utf-8") if path is not None else ""
                listed = RepositoryIndex.from_conf(text, str(path)).latest(self._name)
            except (OSError, UnicodeDecodeError, RepositoryError):
                continue  # absent or damaged: the next place, as if never read
            if listed is not None:
                return listed.version
        return None

    @property
    def remote_url(self) -> str | None:
        """URL of the latest version's archive (made from ``_remote_url_base``), or None."""
        latest = self._latest_version()
        if latest is None:
            return None
        return self._remote_url_base.format(archive_name(self._name, latest))

    def check_latest_version(self, print_warning: bool = True) -> bool | None:
        """True when the installed version is the repository's latest non-yanked version or
        newer, False when a newer version is published (with a message on stderr), None when
        the repository cannot be read (or has no version that is not yanked).

        Versions compare by number, not by equality (BrainGlobe 2.3.1 says False whenever
        they differ): an installed version newer than the latest non-yanked one (it was
        yanked since, or came from another repository) has nothing to update to, and
        ``atlasmith update`` never downgrades. An installed version that is yanked is said so
        on stderr, with the publisher's reason.
        """
        remote, local = self.remote_version, self.local_version
        if remote is None or local is None:
            return None
        latest = local >= remote
        if print_warning:
            import sys

            shown = ".".join(map(str, local))
            if not latest:
                print(
                    f"atlasmith: {self._name} version {shown} is not the latest available "
                    f"({'.'.join(map(str, remote))}). To update it run:\n"
                    f"    atlasmith update {self._name}",
                    file=sys.stderr,
                )
            yanked = self._yanked_note(shown)
            if yanked is not None:
                print(f"atlasmith: {yanked}", file=sys.stderr)
        return latest

    def _yanked_note(self, version: str) -> str | None:
        """The notice for an installed version that is yanked, from the index as last read
        (the call before read it when the repository could be reached): no second attempt."""
        from atlasmith._install import yanked_notice

        index = self._cache.cached_index()
        entry = None if index is None else index.get(self._name, version)
        if index is None or entry is None or not entry.yanked:
            return None
        latest = index.latest(self._name)
        if latest is not None and parse_version(latest.version) > parse_version(version):
            return f"{self._name} {version} (installed) is yanked: {entry.yank_note}."
        return yanked_notice(entry, latest, installed=True)

    def __repr__(self) -> str:
        *words, resolution = self._name.split("_")
        return f"{' '.join(words)} atlas (res. {resolution})"
