"""The steps of an install into the cache, each safe to kill at any point.

1. :func:`download_and_extract`: download the archive to ``.part`` (resumed, retried, sha256
   and size checked) while a thread extracts the growing file safely into a staging folder
   on the cache's disk.
2. :func:`check_extracted`: the folder is the atlas and version it was published as, and
   matches its own manifest.
3. :func:`swap_in`: the new folder is renamed into place *before* the old version is moved
   away, so there is always an installed version; a journal records the swap so that a
   process killed between the two renames is finished by :func:`recover`, which the cache
   runs under the atlas's lock before anything else.

Removed and replaced folders go to ``trash`` and are deleted; a leftover in ``trash`` is
never brought back (it is what a killed ``remove`` or update left, half deleted perhaps).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, cast

import httpx

from atlasmith._fs import atomic_write, remove_tree, replace_path
from atlasmith._types import ProgressCallback
from atlasmith.download import GrowingFile, download_file
from atlasmith.errors import ArchiveError, DiskFullError, IntegrityError
from atlasmith.limits import DISK_MARGIN_BYTES
from atlasmith.names import parse_version, split_folder_name
from atlasmith.package import MANIFEST_NAME, read_manifest, safe_extract, verify_folder
from atlasmith.progress import both

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.repository import IndexEntry

__all__ = [
    "Action",
    "Plan",
    "plan",
    "InstalledAtlas",
    "Staging",
    "check_extracted",
    "check_space",
    "download_and_extract",
    "recover",
    "remove_unless_read",
    "retire",
    "swap_in",
    "trash_folder",
    "v3_folders",
    "yanked_notice",
]

_log = logging.getLogger("atlasmith.cache")


Action = Literal["install", "update", "use"]


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
        The repository's latest non-yanked version (None when unknown, e.g. offline, or when
        every version is yanked).
    upgrade : bool
        Move to the latest version (``atlasmith update``) rather than keep what is installed;
        never to an older one (an installed version newer than the latest, e.g. one that was
        yanked since, stays).
    force : bool
        Install again even when the installed version is the target (a repair).

    >>> plan(None, None, "1.2", False), plan("1.1", None, "1.2", False).action
    (Plan(action='install', version='1.2'), 'use')
    >>> plan("1.1", None, "1.2", True), plan("1.2", "1.2", "1.3", False).action
    (Plan(action='update', version='1.2'), 'use')
    >>> plan("1.3", None, "1.2", True)  # never downgraded
    Plan(action='use', version='1.3')
    """
    keep = installed if not upgrade or not _newer(latest, installed) else None
    target = wanted or keep or latest
    if installed is None:
        return Plan("install", target)
    if target is None or (target == installed and not force):
        return Plan("use", installed)
    return Plan("update", target)


def _newer(version: str | None, than: str | None) -> bool:
    """Whether ``version`` is a higher version than ``than`` (False when either is None)."""
    if version is None or than is None:
        return False
    return parse_version(version) > parse_version(than)


def yanked_notice(entry: IndexEntry, latest: IndexEntry | None, installed: bool) -> str:
    """The warning for a yanked version that is installed (it was named exactly) or kept by
    an update (``installed``: nothing newer is published), with the publisher's reason."""
    name, version = entry.atlas_name, entry.version
    if installed:
        what = f"{name} {version} (installed) is yanked: {entry.yank_note}. No newer version is "
        what += "published, so it stays installed."
    else:
        what = f"{name} {version} is yanked: {entry.yank_note}. It is installed because it was "
        what += "asked for exactly."
    if latest is None:
        return f"{what} Every version of {name} is yanked."
    other = latest.version
    return f"{what} To use version {other}: `atlasmith install {name} --version {other}`."


@dataclass(frozen=True)
class Staging:
    """The working folders of one atlas in the cache's state folder."""

    root: Path  # the cache folder (where atlases are installed)
    staging: Path  # extraction in progress
    trash: Path  # removed and replaced folders, deleted as soon as they are there
    journal: Path  # the swap in progress, if any


def download_and_extract(
    url: str,
    target: Path,
    staging: Path,
    *,
    sha256: str | None,
    size: int | None,
    timeout: float,
    retries: int,
    max_bytes: int,
    progress: ProgressCallback | None = None,
    client: httpx.Client | None = None,
) -> Path:
    """Download ``url`` to ``target`` while a thread extracts it into ``staging``; return the
    extracted top folder. Nothing is installed here: the caller moves the folder into place
    only after this has checked the archive's size and sha256."""
    part = GrowingFile(target.with_name(target.name + ".part"))
    extracted: list[Path] = []

    finished = threading.Event()

    def extract() -> None:
        try:
            with contextlib.suppress(Exception):  # extracted again from the whole file below
                stream = cast(IO[bytes], part)  # a RawIOBase: read, seek and tell are enough
                extracted.append(safe_extract(stream, staging, max_bytes=max_bytes))
        finally:
            finished.set()

    worker = threading.Thread(target=extract, daemon=True)
    worker.start()

    def stop() -> None:
        part.finish()
        # an Event, not Thread.join: a join interrupted by Ctrl-C can mark the still running
        # thread as finished (CPython 3.11), and a second join would then not wait for it
        finished.wait()
        part.close()

    try:
        archive = download_file(
            url,
            target,
            sha256=sha256,
            size=size,
            timeout=timeout,
            retries=retries,
            progress=both(progress, part.notify),
            client=client,
            max_size=max_bytes,  # no size listed (GIN): never more than an archive may hold
        )
        stop()  # waits for the extraction (a Ctrl-C here too removes what it wrote)
    except BaseException:
        part.restarted = True  # stops the extraction at its next read
        stop()
        for folder in extracted:
            remove_tree(folder.parent)
        raise
    if extracted:
        return extracted[0]
    return safe_extract(archive, staging, max_bytes=max_bytes)  # the streamed one failed


def check_extracted(folder: Path, archive: Path, name: str, version: str) -> tuple[str, str]:
    """Check that an extracted folder is ``version`` of atlas ``name`` (the one the index or
    the archive's name said) and that its files match its manifest when it has one; return
    its name and version. Nothing is installed otherwise."""
    from atlasmith.formats import METADATA  # imports the stack readers: only when installing

    parsed = split_folder_name(folder.name)
    if parsed is None or parsed[0] != name:
        raise ArchiveError(
            f"{archive} holds the folder {folder.name!r}, expected {name}_v<version>. "
            "The archive does not match the atlas it was published as; nothing was installed."
        )
    if not (folder / METADATA).is_file():
        raise ArchiveError(
            f"{archive} has no {METADATA} in {folder.name}: not an atlas package. "
            "Nothing was installed."
        )
    if parsed[1] != version:
        raise IntegrityError(
            f"{archive} holds version {parsed[1]} of {name} ({folder.name}), but version "
            f"{version} was asked for. Nothing was installed; the repository serves a "
            "mislabelled archive: tell its maintainers."
        )
    if read_manifest(folder) is not None:
        problems = verify_folder(folder)
        if problems:
            raise IntegrityError(
                f"{archive} does not match its own manifest: {'; '.join(problems[:5])}. "
                "Nothing was installed; get the archive again."
            )
    return parsed


def swap_in(new: Path, final: Path, old: Path | None, paths: Staging) -> None:
    """Install ``new`` as ``final`` and retire ``old`` (another version's folder, or None).

    The new folder goes in first (there is never a moment without an installed version),
    under a journal that :func:`recover` reads if the process is killed before the old one
    is gone.
    """
    if old is None or old == final:  # same name: swapped atomically, the old one trashed
        replace_path(new, final, discard=lambda held: trash_folder(held, paths.trash))
        return
    record = {"new": final.name, "old": old.name}
    atomic_write(paths.journal, json.dumps(record).encode())
    os.rename(new, final)
    trash_folder(old, paths.trash)
    paths.journal.unlink()


def trash_folder(folder: Path, trash: Path) -> None:
    """Make ``folder`` vanish at once (a rename into ``trash``), then delete it unless an open
    :class:`~atlasmith.atlas.Atlas` still reads it (then a later operation deletes it)."""
    trash.mkdir(parents=True, exist_ok=True)
    aside = trash / f"{folder.name}-{secrets.token_hex(4)}"
    os.rename(folder, aside)
    remove_unless_read(aside)


def remove_unless_read(folder: Path) -> bool:
    """Delete ``folder`` unless a reader holds it (a shared lock on the folder, taken by
    :class:`atlasmith.formats.V1Folder` when pinned); True when it was deleted. The exclusive
    lock is held while deleting, so no reader pins it half deleted."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a file, or gone
        remove_tree(folder)
        return True
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # still read: the next locked operation of the cache retries
        remove_tree(folder)
        return True
    finally:
        os.close(descriptor)


def note_version(conf: Path, atlas: str, version: str) -> None:
    """List an installed version in a ``last_versions.conf`` (BrainGlobe's clients read it;
    2.3.1 with ``check_latest=True`` fails offline without it), keeping newer entries."""
    from atlasmith.formats import merge_last_versions

    merge_last_versions(conf, {atlas: version})


def v3_folders(root: Path, manifest: Path, name: str) -> list[Path]:
    """The folders of one version of a BrainGlobe 3 atlas in ``root``: its manifest folder
    first (once it is gone BrainGlobe no longer sees the atlas), then the components that
    are this atlas's own (named after it, as atlasmith names them; components shared with
    other atlases, as BrainGlobe's packager makes them, are left alone)."""
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        listed = {}
    locations = []
    for key in ("template", "terminology", "annotation_set", "coordinate_space"):
        value = listed.get(key) if isinstance(listed, dict) else None
        locations.append(value.get("location") if isinstance(value, dict) else None)
    for reference in listed.get("additional_references", []) if isinstance(listed, dict) else []:
        locations.append(reference.get("location") if isinstance(reference, dict) else None)
    folders = [manifest.parent]
    for location in locations:
        parts = str(location or "").strip("/").split("/")
        if len(parts) != 3 or not parts[1].startswith(f"{name}-") or ".." in parts:
            continue
        folders.append(root.joinpath(*parts))
    return folders


def retire(folders: list[Path], paths: Staging) -> None:
    """Remove ``folders`` (an installed version, a BrainGlobe 3 copy) as one change: the list
    is recorded in the journal first, so that :func:`recover` finishes a removal a killed
    process began (never half a version left, never one brought back)."""
    record = {"remove": [str(f.relative_to(paths.root)) for f in folders]}
    atomic_write(paths.journal, json.dumps(record).encode())
    for folder in folders:
        if folder.is_dir():
            trash_folder(folder, paths.trash)
    paths.journal.unlink()


def recover(paths: Staging) -> None:
    """Finish or undo what a killed process left for one atlas (called with its lock held):
    extractions in progress are deleted, a swap is completed, the trash is emptied (each said
    in a warning line of the ``atlasmith.cache`` logger)."""
    for leftover in paths.staging.iterdir() if paths.staging.is_dir() else ():
        _log.warning("removing %s, left by an interrupted install", leftover)
        remove_tree(leftover)
    if paths.journal.is_file():
        for folder in _journalled(paths):
            if folder.is_dir():
                _log.warning("finishing an interrupted change: %s goes", folder.name)
                trash_folder(folder, paths.trash)
        paths.journal.unlink()
    for leftover in paths.trash.iterdir() if paths.trash.is_dir() else ():
        remove_unless_read(leftover)  # never restored; kept only while an Atlas reads it


def _journalled(paths: Staging) -> list[Path]:
    """The folders a killed swap or removal left to retire: the old version once the new one
    is in place, or every folder a removal listed."""
    try:
        record = json.loads(paths.journal.read_text())
        if "remove" in record:
            listed = [str(relative) for relative in record["remove"]]
            return [paths.root / r for r in listed if ".." not in Path(r).parts and r != "."]
        new, old = paths.root / record["new"], paths.root / record["old"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []  # a journal cut short: the change had not started
    return [old] if new.is_dir() and old.is_dir() else []


def check_space(folder: Path, needed: int) -> None:
    """DiskFullError when ``folder``'s disk cannot hold ``needed`` more bytes (and a margin)."""
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN_BYTES > free:
        raise DiskFullError(
            f"Not enough disk space in {folder}: the download needs {needed} bytes, "
            f"{free} are free. Free some space or set ATLASMITH_CACHE_DIR to a larger disk."
        )
