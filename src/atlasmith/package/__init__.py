"""The package format: an atlas folder with its ``manifest.json``, packed into a deterministic
``.tar.gz`` archive, and archives from anywhere read back safely.

An atlas package is one folder (``NAME_RESum_vM.m/``) in BrainGlobe's v1.2 layout plus a
``manifest.json`` that records the sha256 and size of every other file and how the package was
built (:func:`write_manifest`, :func:`verify_folder`). :func:`make_archive` turns the folder
into a byte-reproducible ``NAME_RESum_vM.m.tar.gz``. Archives are untrusted:
:func:`inspect_archive`, :func:`safe_extract` and :func:`top_folder` check every member
before anything of it is written.
"""

from atlasmith.package._archive import make_archive
from atlasmith.package._extract import ArchiveInfo, inspect_archive, safe_extract, top_folder
from atlasmith.package._hashes import hash_files, sha256_file
from atlasmith.package._manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    read_manifest,
    verify_folder,
    write_manifest,
)

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "ArchiveInfo",
    "hash_files",
    "inspect_archive",
    "make_archive",
    "read_manifest",
    "safe_extract",
    "sha256_file",
    "top_folder",
    "verify_folder",
    "write_manifest",
]
