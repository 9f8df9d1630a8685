"""Source files of atlas scripts: declared with their sha256, found offline, verified.

An atlas script declares the files it reads::

    SOURCES = {
        "annotation": Source("allen_ccf2017_25um/annotation_25.nrrd", sha256="c620cbcc..."),
    }

and its loaders ask the build context for a verified path (``ctx.source("annotation")``). A
source is looked up, in order, under ``--source-dir`` (a folder holding the declared paths), next to
the script, in the project the script lives in and its ``data/`` folder (the folder above
``atlas_scripts/``, so that bundled scripts find the project's own copies under the same
relative paths), and in the download cache. When none has it and the source
declares a ``url``, it is downloaded into the cache by atlasmith's download engine (resumed,
retried; never in offline mode, ``ATLASMITH_OFFLINE=1`` or the config file's ``offline``). Every
file is checked against its sha256 before a loader sees it: a wrong hash is a
:class:`~atlasmith.errors.SourceError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from atlasmith.errors import IntegrityError, OfflineError, SourceError
from atlasmith.package import sha256_file

__all__ = ["Source", "SourceResolver", "source_cache_dir"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    """A file an atlas script reads, with the sha256 it must have.

    Parameters
    ----------
    path : str
        Relative POSIX path, looked up under each search folder (e.g.
        ``"allen_ccf2017_25um/annotation_25.nrrd"``).
    sha256 : str
        Lowercase hex sha256 of the file.
    url : str, optional
        Where to download the file when no search folder has it.

    Examples
    --------
    >>> Source("data/x.nrrd", sha256="0" * 64).name
    'x.nrrd'
    """

    path: str
    sha256: str
    url: str | None = None

    def __post_init__(self) -> None:
        pure = PurePosixPath(self.path)
        if not self.path or pure.is_absolute() or ".." in pure.parts or "\\" in self.path:
            raise SourceError(
                f"source path {self.path!r} must be a relative POSIX path inside a source "
                "folder (no '..', no leading '/'), e.g. 'allen_ccf2017_25um/annotation_25.nrrd'."
            )
        if not isinstance(self.sha256, str) or not _SHA256_RE.match(self.sha256):
            raise SourceError(
                f"source {self.path!r}: sha256 must be 64 lowercase hex digits, got "
                f"{self.sha256!r}. Compute it with `sha256sum {pure.name}`."
            )
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise SourceError(f"source {self.path!r}: url must be http(s), got {self.url!r}.")

    @property
    def name(self) -> str:
        """The file name."""
        return PurePosixPath(self.path).name


def source_cache_dir() -> Path:
    """The download cache of source files (``<user cache>/atlasmith/sources``)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("atlasmith")) / "sources"


@dataclass
class SourceResolver:
    """Finds and verifies the declared sources of one script; remembers what it resolved.

    Parameters
    ----------
    sources : Mapping[str, Source]
        The script's ``SOURCES``.
    search_dirs : sequence of Path
        Folders to look in, in order.
    cache_dir : Path, optional
        Download cache (default :func:`source_cache_dir`).
    """

    sources: Mapping[str, Source]
    search_dirs: Sequence[Path]
    cache_dir: Path | None = None
    resolved: dict[str, Path] = field(default_factory=dict)

    def path(self, key: str) -> Path:
        """Return the verified path of source ``key``; raise SourceError when impossible."""
        if key in self.resolved:
            return self.resolved[key]
        source = self._declared(key)
        found = self._find(source)
        if found is None:
            found = self._download(key, source)  # verified: a wrong download is never kept
        else:
            check_hash(found, source, key)
        self.resolved[key] = found
        return found

    def _declared(self, key: str) -> Source:
        if key not in self.sources:
            raise SourceError(
                f"the script asked for source {key!r}, which SOURCES does not declare "
                f"(declared: {sorted(self.sources)}). Add it to SOURCES with its sha256."
            )
        return self.sources[key]

    def _cache(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else source_cache_dir()

    def _candidates(self, source: Source) -> list[Path]:
        dirs = [*self.search_dirs, self._cache() / source.sha256]
        return [Path(d) / source.path for d in dirs] + [self._cache() / source.sha256 / source.name]

    def _find(self, source: Source) -> Path | None:
        return next((p for p in self._candidates(source) if p.is_file()), None)

    def _download(self, key: str, source: Source) -> Path:
        searched = ", ".join(str(p) for p in dict.fromkeys(self._candidates(source)))
        if source.url is None:
            raise SourceError(
                f"source {key!r} ({source.path}) was not found; looked at: {searched}. Pass "
                f"--source-dir pointing at the folder that holds {source.path} (the path the "
                "script declares, relative to that folder)."
            )
        from atlasmith.config import load_settings
        from atlasmith.download import download_file

        settings = load_settings()
        if settings.offline:
            why, undo = settings.offline_reason()
            raise OfflineError(
                f"source {key!r} ({source.path}) is not available locally (looked at: "
                f"{searched}) and offline mode is on ({why}), so {source.url} is not "
                f"downloaded. Pass --source-dir, or {undo}."
            )
        target = self._cache() / source.sha256 / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return download_file(
                source.url,
                target,
                sha256=source.sha256,
                timeout=settings.timeout,
                retries=settings.retries,
            )
        except IntegrityError as err:
            raise SourceError(
                f"source {key!r} downloaded from {source.url} is not the file the script "
                f"declares: {err} Check the url and sha256 in the script's SOURCES."
            ) from err


def check_hash(path: Path, source: Source, key: str) -> None:
    """Raise SourceError when ``path`` does not have the sha256 ``source`` declares."""
    actual = sha256_file(path)
    if actual != source.sha256:
        raise SourceError(
            f"source {key!r} at {path} has sha256 {actual}, expected {source.sha256}. The file "
            "is corrupt or a different version: replace it with the file the script expects, "
            "or (if the new file is right) update the sha256 in the script's SOURCES."
        )
