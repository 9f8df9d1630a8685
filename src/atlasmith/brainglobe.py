"""Atlases by name, downloaded on first use: :func:`fetch`, and :class:`BrainGlobeAtlas` with
BrainGlobe 2.3.1's signature.

Both install the atlas into the cache (:class:`atlasmith.cache.AtlasCache`: verified,
resumable, locked, atomic) and open it as an :class:`atlasmith.Atlas`. A download bar is shown
in terminals and notebooks, as BrainGlobe's client shows one.
"""

from __future__ import annotations

import configparser
import warnings
from pathlib import Path

from atlasmith._types import PathLike, ProgressCallback
from atlasmith.atlas import Atlas
from atlasmith.cache import AtlasCache
from atlasmith.config import load_settings
from atlasmith.download import join_location
from atlasmith.errors import ConfigError
from atlasmith.names import archive_name, parse_version
from atlasmith.progress import download_bar

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


def _brainglobe_dirs(config_file: PathLike | None) -> dict[str, str]:
    """``[default_dirs]`` of a BrainGlobe config file (BrainGlobe passes a file as config_dir)."""
    if config_file is None:
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(config_file)
    except configparser.Error as err:
        raise ConfigError(f"{config_file} is not a BrainGlobe config file: {err}") from err
    return dict(parser["default_dirs"]) if parser.has_section("default_dirs") else {}


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
    lazy : bool
        Open the BrainGlobe 3 copy piece by piece instead of installing the package (see
        :func:`fetch`); atlasmith's extension.

    Examples
    --------
    >>> atlas = BrainGlobeAtlas("allen_mouse_25um")  # doctest: +SKIP
    >>> atlas
    allen mouse atlas (res. 25um)
    """

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
        dirs = _brainglobe_dirs(config_dir)
        settings = load_settings(cache_dir=brainglobe_dir or dirs.get("brainglobe_dir"))
        self.brainglobe_dir = settings.cache_dir
        interm = interm_download_dir or dirs.get("interm_download_dir")
        self.interm_download_dir = Path(interm) if interm else None
        self._cache = AtlasCache(settings, download_dir=self.interm_download_dir)
        if lazy:
            Atlas.__init__(self, self._cache.open_lazy(atlas_name))
            return
        with download_bar(f"Downloading {atlas_name}", fn_update) as update:
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
        with download_bar(f"Downloading {self.atlas_name}", self.fn_update) as update:
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
        return join_location(self._cache.settings.repository, archive_name(self.atlas_name, latest))

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
