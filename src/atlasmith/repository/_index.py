"""The repository index (``index.json``): every atlas, version, archive, hash and status.

``index.json`` is the repository's source of truth; ``last_versions.conf`` and
``latest_versions.conf`` (BrainGlobe's ``[atlases]`` INI) are rendered from it. One model
serves both sides: publishing writes it, the client reads it to choose, download and verify.
A repository of BrainGlobe's own (GIN) has only ``last_versions.conf``:
:meth:`RepositoryIndex.from_conf` reads it as an index of latest versions without hashes
(``verified`` is False).
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any

from atlasmith._fs import is_safe_relpath
from atlasmith.errors import (
    AtlasExistsError,
    AtlasNotFoundError,
    RepositoryError,
    UnknownAtlasError,
)
from atlasmith.names import archive_name, folder_name, is_atlas_name, is_version, parse_version

__all__ = ["INDEX_FORMAT", "IndexEntry", "RepositoryIndex", "utc_now"]

INDEX_FORMAT = "atlasmith-index/1"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a ``Z`` suffix, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _bad(where: str, problem: str) -> RepositoryError:
    return RepositoryError(
        f"index.json: {where}: {problem}. The repository index is damaged or was written by an "
        "incompatible tool; republish from a clean repository or restore index.json."
    )


@dataclass(frozen=True)
class IndexEntry:
    """One published version of one atlas.

    Attributes
    ----------
    atlas_name : str
        Atlas name with resolution, e.g. ``"allen_mouse_100um"``.
    version : str
        Atlas data version ``"M.m"``.
    archive : str
        File name of the archive in the repository: ``<atlas_name>_v<version>.tar.gz``.
    sha256, size
        Hash and size in bytes of the archive (None only in an index read from BrainGlobe's
        ``last_versions.conf``, which has neither).
    published : str or None
        Publication time, ISO 8601 UTC.
    yanked : bool
        Withdrawn: still downloadable by exact version, never chosen as latest.
    yank_reason : str or None
        Why it was yanked, for people who pinned it.
    preview, structures : str or None
        Repository paths of the preview image and of the copy of ``structures.json``.
    v3 : Mapping
        The same version as BrainGlobe 3 components (empty when not published so):
        ``version`` ("3.m"), ``manifest`` (its repository path, under ``atlas/``),
        ``sha256`` and ``size`` of that manifest (which lists every component file's sha256),
        ``files`` and ``bytes`` (how many files, how many bytes in all).
    metadata : Mapping
        Summary metadata (name, species, resolution, shape, citation, licence...).
    build : Mapping
        The ``build`` section of the package manifest (script and source hashes, parameters),
        used by ``release`` to notice a script that changed without a version bump.
    """

    atlas_name: str
    version: str
    archive: str
    sha256: str | None
    size: int | None
    published: str | None
    yanked: bool = False
    yank_reason: str | None = None
    preview: str | None = None
    structures: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    build: Mapping[str, Any] = field(default_factory=dict)
    v3: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"{self.atlas_name} {self.version}"
        if not is_atlas_name(self.atlas_name):
            raise _bad(where, "the atlas name must look like 'allen_mouse_25um'")
        if not is_version(self.version):
            raise _bad(where, "the version must be '<major>.<minor>', e.g. '1.2'")
        if self.archive != archive_name(self.atlas_name, self.version):
            raise _bad(where, f"archive must be {archive_name(self.atlas_name, self.version)!r}")
        if self.sha256 is not None and _SHA256_RE.match(self.sha256) is None:
            raise _bad(where, "sha256 must be 64 lowercase hex digits")
        size = self.size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise _bad(where, "size must be a non-negative integer")
        if self.yank_reason is not None and not isinstance(self.yank_reason, str):
            raise _bad(where, "yank_reason must be a string")
        for path in (self.preview, self.structures):
            if path is not None and not is_safe_relpath(path):
                raise _bad(where, f"{path!r} is not a safe relative path")
        if self.v3:
            _check_v3(where, self.v3)
        object.__setattr__(self, "metadata", _frozen(self.metadata))
        object.__setattr__(self, "build", _frozen(self.build))
        object.__setattr__(self, "v3", _frozen(self.v3))

    @property
    def folder_name(self) -> str:
        """Folder (and archive stem) name, e.g. ``allen_mouse_100um_v1.2``."""
        return folder_name(self.atlas_name, self.version)

    @property
    def verified(self) -> bool:
        """Whether the archive can be checked against a published sha256 and size."""
        return self.sha256 is not None and self.size is not None

    @property
    def yank_note(self) -> str:
        """Why the version was yanked, for messages ("no reason given" when none was)."""
        return self.yank_reason or "no reason given"

    @property
    def version_key(self) -> tuple[int, int]:
        """The version as integers, for numeric ordering."""
        return parse_version(self.version)

    @classmethod
    def from_dict(cls, atlas_name: str, version: str, d: Mapping[str, Any]) -> IndexEntry:
        """Parse one version's JSON object (the value under ``versions[version]``): its
        sha256 and size are required."""
        try:
            entry = cls(
                atlas_name=atlas_name,
                version=version,
                archive=str(d["archive"]),
                sha256=str(d["sha256"]),
                size=d["size"],
                published=str(d["published"]),
                yanked=bool(d.get("yanked", False)),
                yank_reason=d.get("yank_reason"),
                preview=d.get("preview"),
                structures=d.get("structures"),
                metadata=dict(d.get("metadata") or {}),
                build=dict(d.get("build") or {}),
                v3=dict(d.get("v3") or {}),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise _bad(f"{atlas_name} {version}", f"missing or malformed field {err}") from err
        if not entry.verified:
            raise _bad(f"{atlas_name} {version}", "sha256 and size are required")
        return entry

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored under ``versions[version]``."""
        d: dict[str, Any] = {
            "archive": self.archive,
            "sha256": self.sha256,
            "size": self.size,
            "published": self.published,
            "yanked": self.yanked,
            "metadata": _plain(self.metadata),
            "build": _plain(self.build),
        }
        optional = {"yank_reason": self.yank_reason, "preview": self.preview}
        optional["structures"] = self.structures
        d.update({k: v for k, v in optional.items() if v is not None})
        if self.v3:
            d["v3"] = _plain(self.v3)
        return d


def _check_v3(where: str, v3: Mapping[str, Any]) -> None:
    """The ``v3`` part of an entry: a v3 version, a manifest path under ``atlas/atlases/``,
    its sha256 and size."""
    manifest = v3.get("manifest")
    size = v3.get("size")
    if not is_version(v3.get("version")):
        raise _bad(where, "v3.version must be '<major>.<minor>'")
    if not (isinstance(manifest, str) and is_safe_relpath(manifest)) or not manifest.startswith(
        "atlas/atlases/"
    ):
        raise _bad(where, "v3.manifest must be a path under 'atlas/atlases/'")
    if not isinstance(v3.get("sha256"), str) or _SHA256_RE.match(v3["sha256"]) is None:
        raise _bad(where, "v3.sha256 must be 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(where, "v3.size must be a non-negative integer")


def _plain(value: Any) -> Any:
    """Turn mapping proxies and tuples back into JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sort_key(entry: IndexEntry) -> tuple[str, tuple[int, int]]:
    return entry.atlas_name, entry.version_key


@dataclass(frozen=True)
class RepositoryIndex:
    """All published versions of all atlases in a repository (immutable).

    Examples
    --------
    >>> index = RepositoryIndex()
    >>> index.names(), index.render_conf()
    ([], '[atlases]\\n')
    """

    entries: tuple[IndexEntry, ...] = ()
    #: Where the index was read from, for messages (not part of the index).
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.entries, key=_sort_key))
        keys = [(e.atlas_name, e.version) for e in ordered]
        if len(set(keys)) != len(keys):
            raise _bad("entries", "a version is listed twice")
        object.__setattr__(self, "entries", ordered)

    # --- parsing and writing ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> RepositoryIndex:
        """Parse the JSON object of ``index.json``; raises RepositoryError when malformed."""
        if not isinstance(d, Mapping) or d.get("format") != INDEX_FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise _bad("format", f"expected {INDEX_FORMAT!r}, got {got!r}")
        atlases = d.get("atlases", {})
        if not isinstance(atlases, Mapping):
            raise _bad("atlases", "expected an object")
        entries = []
        for name, atlas in atlases.items():
            versions = atlas.get("versions") if isinstance(atlas, Mapping) else None
            if not isinstance(versions, Mapping):
                raise _bad(str(name), "expected an object with 'versions'")
            entries += [IndexEntry.from_dict(name, v, e) for v, e in versions.items()]
        return cls(tuple(entries), source)

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "") -> RepositoryIndex:
        """Parse the text of ``index.json`` (read from ``source``)."""
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise _bad("JSON", f"not valid JSON ({err})") from err
        return cls.from_dict(parsed, source)

    @classmethod
    def from_conf(cls, text: str, source: str = "") -> RepositoryIndex:
        """Read BrainGlobe's ``last_versions.conf``: the latest version of each atlas, with no
        hashes (``verified`` is False)."""
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
            atlases = parser["atlases"]
        except (configparser.Error, KeyError) as err:
            raise RepositoryError(
                f"{source or 'last_versions.conf'} is not a versions file (an error page in its "
                f"place?): {err}. Check the repository URL or try again later."
            ) from err
        entries = []
        for name, value in atlases.items():
            version = value.strip().strip('"')
            archive = archive_name(name, version)
            entries.append(IndexEntry(name, version, archive, None, None, None))
        return cls(tuple(entries), source)

    @property
    def verified(self) -> bool:
        """Whether every archive can be checked against a published sha256 and size."""
        return all(e.verified for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``index.json``."""
        atlases: dict[str, Any] = {}
        for e in self.entries:
            atlases.setdefault(e.atlas_name, {"versions": {}})["versions"][e.version] = e.to_dict()
        return {"format": INDEX_FORMAT, "atlases": atlases}

    def to_json(self) -> bytes:
        """``index.json`` bytes: keys sorted, indent 2, trailing newline."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()

    # --- queries ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Atlas names (with resolution), sorted."""
        return list(self._by_name)  # entries are sorted by name

    def versions(self, atlas_name: str) -> list[IndexEntry]:
        """Every version of ``atlas_name`` (yanked included), oldest first."""
        return list(self._by_name.get(atlas_name, ()))

    @cached_property
    def _by_name(self) -> dict[str, tuple[IndexEntry, ...]]:
        """The entries grouped by atlas (built once: every query is then O(versions), so an
        index of 100,000 atlases costs linear time, not quadratic)."""
        groups: dict[str, list[IndexEntry]] = {}
        for e in self.entries:  # sorted by name, then version
            groups.setdefault(e.atlas_name, []).append(e)
        return {name: tuple(found) for name, found in groups.items()}

    def get(self, atlas_name: str, version: str) -> IndexEntry | None:
        """The entry for an exact version, or None."""
        for e in self.versions(atlas_name):
            if e.version == version:
                return e
        return None

    def entry(self, atlas_name: str, version: str | None = None) -> IndexEntry:
        """The entry for an exact version (yanked ones too), or the latest when version is None.

        Raises
        ------
        UnknownAtlasError
            When the repository has no such atlas (an AtlasNotFoundError and a ValueError, as
            BrainGlobe raises for a name it does not know).
        AtlasNotFoundError
            When it has no such version, or every version is yanked.
        """
        found = self.latest(atlas_name) if version is None else self.get(atlas_name, version)
        if found is not None:
            return found
        known = [e.version for e in self.versions(atlas_name)]
        if not known:
            names = ", ".join(self.names()) or "none"
            where = f" {self.source}" if self.source else ""
            raise UnknownAtlasError(
                f"No atlas {atlas_name!r} in the repository{where}: {atlas_name} is not a valid "
                f"atlas name there. Available: {names}. Run `atlasmith list` to see them."
            )
        if version is None:
            raise AtlasNotFoundError(self._all_yanked(atlas_name))
        raise AtlasNotFoundError(
            f"{atlas_name!r} has no version {version!r}; available: {', '.join(known)} (yanked "
            "versions are installed only when named exactly)."
        )

    def _all_yanked(self, atlas_name: str) -> str:
        """The message for an atlas whose every version is yanked: each with its reason, and
        how to install one anyway (by naming it exactly, as pip installs a yanked release)."""
        newest_first = self.versions(atlas_name)[::-1]
        listed = ", ".join(f"{e.version} ({e.yank_note})" for e in newest_first)
        where = f" in {self.source}" if self.source else ""
        pick = newest_first[0].version
        return (
            f"Every version of {atlas_name}{where} is yanked: {listed}. A yanked version is "
            f"installed only when named exactly: `atlasmith install {atlas_name} --version "
            f"{pick}` (Python: fetch({atlas_name!r}, {pick!r}))."
        )

    def latest(self, atlas_name: str) -> IndexEntry | None:
        """The highest non-yanked version of ``atlas_name`` (numeric order), or None."""
        live = [e for e in self.versions(atlas_name) if not e.yanked]
        return live[-1] if live else None

    def latest_versions(self) -> dict[str, str]:
        """``{atlas_name: latest version}`` for every atlas with a non-yanked version."""
        latest = (self.latest(name) for name in self.names())
        return {e.atlas_name: e.version for e in latest if e is not None}

    def render_conf(self) -> str:
        """``last_versions.conf`` / ``latest_versions.conf`` text (BrainGlobe's INI)."""
        lines = ["[atlases]", *(f"{k} = {v}" for k, v in self.latest_versions().items())]
        return "\n".join(lines) + "\n"

    def render_v3_conf(self) -> str:
        """BrainGlobe 3's ``atlases/last_versions.conf``: the v3 version of each atlas's
        latest non-yanked version that has one."""
        latest = (self.latest(name) for name in self.names())
        pairs = [(e.atlas_name, e.v3["version"]) for e in latest if e is not None and e.v3]
        return "\n".join(["[atlases]", *(f"{k} = {v}" for k, v in pairs)]) + "\n"

    # --- changes (return a new index) -------------------------------------------------------

    def with_entry(self, entry: IndexEntry) -> RepositoryIndex:
        """A new index with ``entry`` added; AtlasExistsError if that version is published."""
        if self.get(entry.atlas_name, entry.version) is not None:
            raise AtlasExistsError(
                f"{entry.atlas_name} version {entry.version} is already published and published "
                "versions are immutable. Bump the atlas script's __version__ and publish the new "
                "version instead (yank the old one if it is bad)."
            )
        return RepositoryIndex((*self.entries, entry), self.source)

    def with_yanked(
        self, atlas_name: str, version: str, reason: str | None = None
    ) -> RepositoryIndex:
        """A new index where ``atlas_name`` ``version`` is yanked (AtlasNotFoundError if absent).

        Without ``reason`` (None or blank) a version yanked before keeps its reason, so that
        yanking again never erases what people who pinned it are told.
        """
        old = self.entry(atlas_name, version)
        given = reason.strip() if reason is not None else ""
        return self._replaced(old, replace(old, yanked=True, yank_reason=given or old.yank_reason))

    def with_unyanked(self, atlas_name: str, version: str) -> RepositoryIndex:
        """A new index where ``atlas_name`` ``version`` is offered again, its reason dropped
        (the same index when it was not yanked; AtlasNotFoundError if absent)."""
        old = self.entry(atlas_name, version)
        return self._replaced(old, replace(old, yanked=False, yank_reason=None))

    def _replaced(self, old: IndexEntry, new: IndexEntry) -> RepositoryIndex:
        return RepositoryIndex(tuple(new if e is old else e for e in self.entries), self.source)
