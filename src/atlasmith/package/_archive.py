"""Deterministic ``.tar.gz`` archives of a package folder: the same folder, the same bytes."""

from __future__ import annotations

import tarfile
from pathlib import Path

from atlasmith._fs import FILE_MODE, FOLDER_MODE, atomic_file
from atlasmith._types import PathLike
from atlasmith.config import source_date_epoch
from atlasmith.errors import AtlasFormatError
from atlasmith.names import ARCHIVE_SUFFIX
from atlasmith.package._hashes import folder_entries
from atlasmith.package._pgzip import ParallelGzipWriter

__all__ = ["make_archive"]

#: Level 5, zlib's first level with lazy matching: the Allen 100 um package with
#: ``--budget-um 200`` is 10.5 MB, against 11.2 MB at level 4 and 10.4 MB at level 6 (BrainGlobe
#: 2.3.1's: 11.1 MB); compressing its 39.9 MB of files takes 1.2 s of one core, against
#: 0.6 s at level 4 and 2.9 s at level 6.
_GZIP_LEVEL = 5
_EXEC_MODE = 0o755


def _member(name: str, size: int, mode: int, mtime: int, kind: bytes) -> tarfile.TarInfo:
    """A tar header with everything machine-specific zeroed."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, mtime, kind
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_entry(tar: tarfile.TarFile, name: str, path: Path, mtime: int) -> None:
    if path.is_dir():
        tar.addfile(_member(name, 0, FOLDER_MODE, mtime, tarfile.DIRTYPE))
        return
    stat = path.stat()
    mode = _EXEC_MODE if stat.st_mode & 0o111 else FILE_MODE
    info = _member(name, stat.st_size, mode, mtime, tarfile.REGTYPE)
    with open(path, "rb") as stream:
        tar.addfile(info, stream)


def make_archive(folder: PathLike, dest_dir: PathLike) -> Path:
    """Pack an atlas folder into a byte-reproducible ``dest_dir/<folder name>.tar.gz``.

    Entries are sorted, with one top-level folder; mtimes are ``SOURCE_DATE_EPOCH`` (or 0),
    owners 0 with no names, modes 0644/0755; the gzip header has no time and no file name.
    Compression runs on every core (a parallel gzip writer) without changing the bytes.
    The archive is written to a temporary file and renamed into place (an existing archive of
    the same name is replaced).

    Parameters
    ----------
    folder : str or Path
        The atlas folder to pack.
    dest_dir : str or Path
        Where to write the archive (created if missing).

    Returns
    -------
    Path
        The archive.
    """
    root = Path(folder)
    if not root.is_dir():
        raise AtlasFormatError(f"Cannot archive {root}: it is not a folder.")
    target = Path(dest_dir) / f"{root.name}{ARCHIVE_SUFFIX}"
    entries = [(root.name, root)]
    entries += [(f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in folder_entries(root)]
    mtime = source_date_epoch() or 0
    with (
        atomic_file(target) as tmp,
        open(tmp, "wb") as raw,
        ParallelGzipWriter(raw, level=_GZIP_LEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in entries:
            _add_entry(tar, name, path, mtime)
    return target
