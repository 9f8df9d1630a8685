"""Check an archive before a repository accepts it: safe, complete, valid, hashes matching."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlasmith._fs import temporary_folder
from atlasmith.errors import ArchiveError, AtlasmithError, IntegrityError, ValidationError
from atlasmith.limits import MAX_PUBLISHED_BYTES
from atlasmith.names import archive_name, folder_name, split_archive_name
from atlasmith.repository._index import IndexEntry

__all__ = ["V3_PREFIX", "CheckedArchive", "StagedV3", "check_archive", "summary_metadata"]

#: Where a repository keeps BrainGlobe 3 components: the keys BrainGlobe 3's client reads
#: under its bucket (``s3://brainglobe/atlas/...``).
V3_PREFIX = "atlas"


@dataclass(frozen=True)
class StagedV3:
    """A checked archive's atlas written as BrainGlobe 3 components, ready to store.

    ``files`` maps each component file (relative to ``root``, the v3 root) to its sha256 and
    size; ``manifest`` is the manifest's path relative to ``root`` (it lists ``files``)."""

    root: Path
    version: str
    manifest: str
    files: Mapping[str, Mapping[str, Any]]

    def index_entry(self) -> dict[str, Any]:
        """The ``v3`` part of the index entry."""
        from atlasmith.package import sha256_file

        path = self.root / self.manifest
        return {
            "version": self.version,
            "manifest": f"{V3_PREFIX}/{self.manifest}",
            "sha256": sha256_file(path),
            "size": path.stat().st_size,
            "files": len(self.files) + 1,
            "bytes": sum(int(f["size"]) for f in self.files.values()) + path.stat().st_size,
        }


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class CheckedArchive:
    """An archive that passed every check, with what the repository stores beside it."""

    path: Path
    atlas_name: str
    version: str
    sha256: str
    size: int
    metadata: Mapping[str, Any]
    build: Mapping[str, Any]
    structures_json: bytes
    preview_png: bytes | None = field(default=None)
    v3: StagedV3 | None = field(default=None)

    @property
    def stem(self) -> str:
        """``<atlas_name>_v<version>``."""
        return folder_name(self.atlas_name, self.version)

    def entry(self, published: str) -> IndexEntry:
        """The index entry for this archive, published at ``published``."""
        return IndexEntry(
            atlas_name=self.atlas_name,
            version=self.version,
            archive=archive_name(self.atlas_name, self.version),
            sha256=self.sha256,
            size=self.size,
            published=published,
            preview=f"previews/{self.stem}.png" if self.preview_png else None,
            structures=f"structures/{self.stem}.json",
            metadata=self.metadata,
            build=self.build,
            v3=self.v3.index_entry() if self.v3 is not None else {},
        )


def check_archive(
    path: str | Path,
    preview: str | Path | None = None,
    max_bytes: int = MAX_PUBLISHED_BYTES,
    work_dir: Path | None = None,
    v3_dir: Path | None = None,
) -> CheckedArchive:
    """Check an archive the way a repository must before accepting it.

    The archive must have an atlas archive name, be safe to extract (no links, absolute
    paths, ``..`` or oversized members), hold one folder named like the archive whose files
    match its ``manifest.json``, and pass every check of ``validate_folder``.

    Parameters
    ----------
    path
        The ``.tar.gz`` archive.
    preview
        Optional PNG to use as the preview instead of the package's own ``preview.png``.
    max_bytes
        Size cap for the archive and for its extracted content.
    work_dir
        Where to extract for the checks (default: the system's temporary folder).
    v3_dir
        An empty folder: the checked package is also written there as BrainGlobe 3
        components (``CheckedArchive.v3``), re-read and checked against the sha256 they were
        written with, for the repository to store beside the archive.

    Raises
    ------
    ArchiveError
        Bad name, unsafe or corrupt archive, wrong top folder, oversized.
    IntegrityError
        Files that differ from the manifest.
    ValidationError
        A package that fails validation (``.report`` has every check).
    """
    from atlasmith.package import inspect_archive, sha256_file

    path = Path(path)
    atlas_name, version = split_archive_name(path.name)
    if not path.is_file():
        raise ArchiveError(f"{path} does not exist or is not a file.")
    size = path.stat().st_size
    if size > max_bytes:
        raise ArchiveError(f"{path.name} is {size} bytes, over the limit of {max_bytes} bytes.")
    stem = folder_name(atlas_name, version)
    # every member checked (count, sizes, paths, types) before anything is written: an archive
    # of too many or too large members is refused having written nothing
    inspect_archive(path, max_bytes=max_bytes)
    contents = _check_contents(path, stem, max_bytes, work_dir, v3_dir)
    return CheckedArchive(
        path=path,
        atlas_name=atlas_name,
        version=version,
        sha256=sha256_file(path),
        size=size,
        metadata=contents["metadata"],
        build=contents["build"],
        structures_json=contents["structures"],
        preview_png=_read_preview(Path(preview)) if preview else contents["preview"],
        v3=contents["v3"],
    )


def _check_contents(
    path: Path, stem: str, max_bytes: int, work_dir: Path | None, v3_dir: Path | None
) -> dict[str, Any]:
    """Extract to a temporary folder, verify and validate it, and read what the index needs."""
    from atlasmith.package import safe_extract

    with temporary_folder(work_dir or tempfile.gettempdir(), "atlasmith-check-") as tmp:
        try:
            folder = safe_extract(path, Path(tmp), max_bytes=max_bytes)
        except AtlasmithError:
            raise
        except (OSError, EOFError, ValueError) as err:
            raise ArchiveError(f"{path.name} cannot be extracted: {err}") from err
        if folder.name != stem:
            raise ArchiveError(
                f"{path.name} holds the folder {folder.name!r}, expected {stem!r}: the archive "
                "name and the atlas folder inside it must agree (rebuild with `atlasmith build`)."
            )
        _verify(folder, path.name)
        _validate(folder, path.name)
        contents = _read_contents(folder)
        contents["v3"] = _stage_v3(folder, v3_dir) if v3_dir is not None else None
        return contents


def _stage_v3(folder: Path, v3_dir: Path) -> StagedV3:
    """Write the package as BrainGlobe 3 components (deterministic: the same bytes as the
    build's own v3 tree) and check every file against the sha256 it was written with."""
    from atlasmith.formats import V1Folder, V3Atlas, write_v3

    writer = write_v3(V1Folder(folder), v3_dir)
    manifest = writer.layout.manifest
    problems = V3Atlas(v3_dir / manifest).problems()
    if problems:  # the disk changed what was just written
        raise IntegrityError(f"the BrainGlobe 3 copy could not be written intact: {problems[0]}")
    return StagedV3(v3_dir, writer.version, manifest, dict(writer.out.files))


def _verify(folder: Path, archive_name: str) -> None:
    from atlasmith.package import MANIFEST_NAME, verify_folder

    if not (folder / MANIFEST_NAME).is_file():
        raise ArchiveError(
            f"{archive_name} has no {MANIFEST_NAME}: only packages made by `atlasmith build` "
            "(or with atlasmith.package.write_manifest) can be published."
        )
    problems = verify_folder(folder)
    if problems:
        listed = "; ".join(problems[:10])
        raise IntegrityError(f"{archive_name} does not match its manifest: {listed}.")


def _validate(folder: Path, archive_name: str) -> None:
    from atlasmith.validation import validate_folder  # numpy and tifffile: only when publishing

    report = validate_folder(folder)
    if not report.ok:
        failed = "; ".join(f"{r.name}: {r.message}" for r in report.failures)
        raise ValidationError(f"{archive_name} is not a valid atlas package: {failed}", report)


def _read_contents(folder: Path) -> dict[str, Any]:
    from atlasmith.formats import PREVIEW, STRUCTURES, V1Folder
    from atlasmith.package import read_manifest

    atlas = V1Folder(folder)
    if atlas.metadata.folder_name != folder.name:
        raise ArchiveError(
            f"its metadata describes {atlas.metadata.folder_name!r} but the folder is "
            f"{folder.name!r}."
        )
    manifest = read_manifest(folder) or {}
    preview = folder / PREVIEW
    return {
        "metadata": summary_metadata(atlas.metadata_dict, len(atlas.structures_list)),
        "build": dict(manifest.get("build") or {}),
        "structures": (folder / STRUCTURES).read_bytes(),  # the copy the site shows
        "preview": _read_preview(preview) if preview.is_file() else None,
    }


def summary_metadata(metadata: Mapping[str, Any], n_structures: int) -> dict[str, Any]:
    """The metadata the index shows without a download."""
    keys = ("name", "species", "resolution", "shape", "symmetric", "citation", "atlas_link")
    summary = {k: metadata[k] for k in keys if k in metadata}
    summary["atlas_packager"] = metadata.get("atlas_packager")
    summary["additional_references"] = list(metadata.get("additional_references") or [])
    summary["license"] = metadata.get("license")
    summary["structures"] = n_structures
    return summary


def _read_preview(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(_PNG_MAGIC):
        raise ArchiveError(f"{path} is not a PNG image; a preview must be a PNG.")
    return data
