"""The package format: manifest, deterministic archives, safe inspection and extraction.

Hostile archives are built here with tarfile and gzip; ``hostile_archives()`` is shared with
the client tests (test_cache.py, test_client_cli.py), which feed the same files through the
repository and through ``atlasmith install ARCHIVE_PATH``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, strategies as st

from atlasmith.errors import ArchiveError, AtlasFormatError, ConfigError
from atlasmith.package import (
    MANIFEST_NAME,
    inspect_archive,
    make_archive,
    read_manifest,
    safe_extract,
    sha256_file,
    verify_folder,
    write_manifest,
)

TOP = "evil_mouse_100um_v1.0"
SMALL_CAP = 8 * 1024 * 1024


# --- hostile archive builders (shared with the client tests) ----------------------------


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **extra: object
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, extra.pop("mode", 0o644)  # type: ignore[assignment]
    for key, value in extra.items():
        setattr(info, key, value)
    return info


def _file(
    name: str, data: bytes = b"payload\n", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, size=len(data), mode=mode), data


def _top() -> tuple[tarfile.TarInfo, None]:
    return _info(TOP, tarfile.DIRTYPE, mode=0o755), None


def _with_top(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    return _tar_gz([_top(), _file(f"{TOP}/metadata.json", b"{}"), *members])


def _bomb() -> bytes:
    """A gzip of a few kB whose tar member expands to 4x the small cap."""
    size = 4 * SMALL_CAP
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(_top()[0])
        tar.addfile(_info(f"{TOP}/annotation.tiff", size=size), io.BytesIO(bytes(size)))
    return buffer.getvalue()


def _declared_too_large() -> bytes:
    """A header that declares 1 TB while the real content is a few bytes."""
    raw = bytearray(_with_top(_file(f"{TOP}/reference.tiff", b"tiny")))
    data = gzip.decompress(bytes(raw))
    tar = bytearray(data)
    offset = _header_offset(bytes(tar), f"{TOP}/reference.tiff")
    tar[offset + 124 : offset + 136] = b"\x80" + (10**12).to_bytes(11, "big")  # GNU base-256
    _fix_checksum(tar, offset)
    return gzip.compress(bytes(tar), mtime=0)


def _declared_longer_than_data() -> bytes:
    """A header that declares 5 MB while the archive ends after a few bytes (truncated tar)."""
    data = gzip.decompress(_with_top(_file(f"{TOP}/reference.tiff", b"tiny")))
    tar = bytearray(data)
    offset = _header_offset(bytes(tar), f"{TOP}/reference.tiff")
    tar[offset + 124 : offset + 136] = b"%011o\x00" % (5 * 1024 * 1024)
    _fix_checksum(tar, offset)
    return gzip.compress(bytes(tar), mtime=0)


def _header_offset(tar: bytes, name: str) -> int:
    offset = tar.find(name.encode() + b"\x00")
    if offset < 0 or offset % 512:
        raise RuntimeError(f"header of {name} not found")
    return offset


def _fix_checksum(tar: bytearray, offset: int) -> None:
    header = tar[offset : offset + 512]
    header[148:156] = b" " * 8
    tar[offset + 148 : offset + 156] = b"%06o\x00 " % sum(header)


def _truncated() -> bytes:
    whole = _with_top(_file(f"{TOP}/reference.tiff", os.urandom(200_000)))
    return whole[: len(whole) // 2]


HTML_PAGE = b"<!DOCTYPE html><html><body><h1>504 Gateway Time-out</h1></body></html>\n"


def hostile_archives() -> dict[str, Callable[[], bytes]]:
    """Name -> builder of each hostile archive; every one must be refused."""
    return {
        "dotdot": lambda: _with_top(_file(f"{TOP}/../../escaped.txt")),
        "absolute": lambda: _with_top(_file("/tmp/atlasmith-absolute-escape.txt")),
        "symlink_out": lambda: _with_top(
            (_info(f"{TOP}/link", tarfile.SYMTYPE, linkname="/etc/passwd"), None)
        ),
        "symlink_relative": lambda: _with_top(
            (_info(f"{TOP}/link", tarfile.SYMTYPE, linkname="../../../escaped"), None)
        ),
        "hardlink_out": lambda: _with_top(
            (_info(f"{TOP}/hard", tarfile.LNKTYPE, linkname="/etc/passwd"), None)
        ),
        "char_device": lambda: _with_top(
            (_info(f"{TOP}/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)
        ),
        "block_device": lambda: _with_top(
            (_info(f"{TOP}/disk", tarfile.BLKTYPE, devmajor=8, devminor=0), None)
        ),
        "fifo": lambda: _with_top((_info(f"{TOP}/pipe", tarfile.FIFOTYPE), None)),
        "two_tops": lambda: _with_top(_file("other_folder/file.txt")),
        "duplicate": lambda: _with_top(_file(f"{TOP}/metadata.json", b"[]")),
        "bomb": _bomb,
        "declared_too_large": _declared_too_large,
        "declared_longer_than_data": _declared_longer_than_data,
        "not_gzip": lambda: b"just some text, not an archive\n" * 10,
        "html_page": lambda: HTML_PAGE,
        "truncated": _truncated,
        "empty_gzip": lambda: gzip.compress(b"", mtime=0),
        "file_then_folder": lambda: _with_top(
            _file(f"{TOP}/meshes"), _file(f"{TOP}/meshes/1.obj", b"v 0 0 0\n")
        ),
    }


#: A small cap that the bomb exceeds; honest test archives stay far below it.
HOSTILE_CAP = SMALL_CAP

#: What the refusal of each hostile archive says.
HOSTILE_REASONS = {
    "dotdot": "points outside the target folder",
    "absolute": "absolute path",
    "symlink_out": "is a link",
    "symlink_relative": "is a link",
    "hardlink_out": "is a link",
    "char_device": "device file or a FIFO",
    "block_device": "device file or a FIFO",
    "fifo": "device file or a FIFO",
    "two_tops": "outside the single top-level folder",
    "duplicate": "appears twice",
    "bomb": "over the cap",
    "declared_too_large": "over the cap",
    "declared_longer_than_data": "truncated or corrupt",
    "not_gzip": "not gzip data",
    "html_page": "not gzip data",
    "truncated": "truncated or corrupt",
    "empty_gzip": "truncated or corrupt",
    "file_then_folder": "is inside a path that is a file",
}


def tree_snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to prove that nothing was written."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# --- manifest -------------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_hash(example_atlas_copy: Path) -> None:
    manifest = write_manifest(example_atlas_copy, {"script": "allen_mouse.py"})
    on_disk = json.loads((example_atlas_copy / MANIFEST_NAME).read_text())
    assert on_disk == manifest == read_manifest(example_atlas_copy)
    files = sorted(
        p.relative_to(example_atlas_copy).as_posix()
        for p in example_atlas_copy.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )
    assert sorted(manifest["files"]) == files
    assert any(f.startswith("meshes/") and f.endswith(".obj") for f in files)
    ref = example_atlas_copy / "reference.tiff"
    assert manifest["files"]["reference.tiff"] == {
        "sha256": hashlib.sha256(ref.read_bytes()).hexdigest(),
        "size": ref.stat().st_size,
    }
    assert manifest["atlas"] == example_atlas_copy.name
    assert manifest["build"] == {"script": "allen_mouse.py"}
    text = (example_atlas_copy / MANIFEST_NAME).read_text()
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"


def test_manifest_is_byte_reproducible(example_atlas_copy: Path) -> None:
    write_manifest(example_atlas_copy, {"b": 1, "a": [1, 2]})
    first = (example_atlas_copy / MANIFEST_NAME).read_bytes()
    os.utime(example_atlas_copy / "reference.tiff", (1, 1))
    write_manifest(example_atlas_copy, {"a": [1, 2], "b": 1})
    assert (example_atlas_copy / MANIFEST_NAME).read_bytes() == first


def test_verify_folder_accepts_an_intact_folder(example_atlas_copy: Path) -> None:
    write_manifest(example_atlas_copy, {})
    assert verify_folder(example_atlas_copy) == []


def test_verify_folder_reports_each_kind_of_damage(example_atlas_copy: Path) -> None:
    write_manifest(example_atlas_copy, {})
    annotation = example_atlas_copy / "annotation.tiff"
    data = bytearray(annotation.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    annotation.write_bytes(bytes(data))
    (example_atlas_copy / "structures.csv").unlink()
    (example_atlas_copy / "README.txt").write_text("shorter")
    (example_atlas_copy / "stray.txt").write_text("not packaged")
    problems = verify_folder(example_atlas_copy)
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "changed content: annotation.tiff" in joined
    assert "missing file: structures.csv" in joined
    assert "changed size: README.txt" in joined
    assert "extra file not in the manifest: stray.txt" in joined


def test_verify_folder_says_plainly_when_there_is_no_manifest(example_atlas_copy: Path) -> None:
    (problem,) = verify_folder(example_atlas_copy)
    assert "no manifest.json" in problem
    assert "not installed by atlasmith" in problem


def test_read_manifest_rejects_garbage(example_atlas_copy: Path) -> None:
    (example_atlas_copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(AtlasFormatError, match="not valid JSON"):
        read_manifest(example_atlas_copy)
    (example_atlas_copy / MANIFEST_NAME).write_text("[]")
    with pytest.raises(AtlasFormatError, match="no 'files' table"):
        read_manifest(example_atlas_copy)


# --- deterministic archive ---------------------------------------------------------------


def test_archive_is_byte_reproducible(example_atlas_copy: Path, tmp_path: Path) -> None:
    write_manifest(example_atlas_copy, {})
    first = make_archive(example_atlas_copy, tmp_path / "one")
    for path in example_atlas_copy.rglob("*"):
        os.utime(path, (1_234_567, 1_234_567))
    (example_atlas_copy / "README.txt").chmod(0o600)
    second = make_archive(example_atlas_copy, tmp_path / "two")
    assert first.name == second.name == f"{example_atlas_copy.name}.tar.gz"
    assert sha256_file(first) == sha256_file(second)


def test_archive_headers_carry_nothing_machine_specific(
    example_atlas_copy: Path, tmp_path: Path
) -> None:
    archive = make_archive(example_atlas_copy, tmp_path)
    raw = archive.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] == 0  # no FNAME, no FEXTRA, no comment
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[0] == example_atlas_copy.name
    assert all(n == names[0] or n.startswith(names[0] + "/") for n in names)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert {m.mode for m in members if m.isdir()} == {0o755}
    on_disk = {
        p.relative_to(example_atlas_copy.parent).as_posix() for p in example_atlas_copy.rglob("*")
    }
    assert set(names[1:]) == on_disk


def test_archive_uses_source_date_epoch(
    example_atlas_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    archive = make_archive(example_atlas_copy, tmp_path)
    with tarfile.open(archive) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1_700_000_000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        make_archive(example_atlas_copy, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_archive_refuses_links_in_the_folder(example_atlas_copy: Path, tmp_path: Path) -> None:
    (example_atlas_copy / "link.tiff").symlink_to(example_atlas_copy / "reference.tiff")
    with pytest.raises(ArchiveError, match="link or a special file"):
        make_archive(example_atlas_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written


_PART = st.text("abcdefghij0123456789_-", min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(
    files=st.dictionaries(
        st.lists(_PART, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=3000),
        min_size=1,
        max_size=8,
    )
)
def test_any_package_tree_round_trips_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]
) -> None:
    paths = sorted(files)
    # a path cannot be both a file and a folder
    assume(not any(b.startswith(a + "/") for a in paths for b in paths))
    work = tmp_path_factory.mktemp("tree")
    folder = work / "tree_mouse_10um_v1.0"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    first = make_archive(folder, work / "a")
    second = make_archive(folder, work / "b")
    assert first.read_bytes() == second.read_bytes()
    info = inspect_archive(first)
    assert dict(info.files) == {rel: len(data) for rel, data in files.items()}
    out = safe_extract(first, work)
    assert {
        p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
    } == files


def test_round_trip_through_safe_extract(example_atlas_copy: Path, tmp_path: Path) -> None:
    write_manifest(example_atlas_copy, {})
    archive = make_archive(example_atlas_copy, tmp_path / "archives")
    info = inspect_archive(archive)
    assert info.top == example_atlas_copy.name
    assert info.has_manifest
    sizes = {
        p.relative_to(example_atlas_copy).as_posix(): p.stat().st_size
        for p in example_atlas_copy.rglob("*")
        if p.is_file()
    }
    assert dict(info.files) == sizes
    assert info.total_size == sum(sizes.values())
    assert "meshes" in info.folders
    cache = tmp_path / "cache"
    cache.mkdir()
    written: list[int] = []
    extracted = safe_extract(archive, cache, progress=written.append)
    assert extracted.name == example_atlas_copy.name
    assert extracted.parent.parent == cache
    assert sum(written) == info.total_size
    assert verify_folder(extracted) == []
    for name in sizes:
        assert (extracted / name).read_bytes() == (example_atlas_copy / name).read_bytes()


# --- hostile archives ---------------------------------------------------------------------


def test_every_hostile_archive_has_a_reason() -> None:
    assert set(HOSTILE_REASONS) == set(hostile_archives())


@pytest.mark.parametrize("case", sorted(hostile_archives()))
def test_hostile_archive_is_refused_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    archive = tmp_path / "incoming" / "atlas.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(hostile_archives()[case]())
    cache = tmp_path / "jail" / "cache"
    cache.mkdir(parents=True)
    with pytest.raises(ArchiveError, match=HOSTILE_REASONS[case]) as caught:
        inspect_archive(archive, max_bytes=HOSTILE_CAP)
    assert str(archive) in str(caught.value)
    with pytest.raises(ArchiveError, match=HOSTILE_REASONS[case]):
        safe_extract(archive, cache, max_bytes=HOSTILE_CAP)
    assert tree_snapshot(tmp_path / "jail") == {"cache"}
    assert not Path("/tmp/atlasmith-absolute-escape.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_setuid_bits_are_stripped(tmp_path: Path) -> None:
    archive = tmp_path / "setuid.tar.gz"
    archive.write_bytes(
        _with_top(
            _file(f"{TOP}/tool", b"#!/bin/sh\n", mode=0o6755),
            _file(f"{TOP}/sticky.txt", mode=0o1666),
        )
    )
    extracted = safe_extract(archive, tmp_path)
    tool_mode = stat.S_IMODE((extracted / "tool").stat().st_mode)
    assert tool_mode == 0o755
    assert stat.S_IMODE((extracted / "sticky.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(extracted.stat().st_mode) == 0o755


def test_member_cap_stops_archives_with_too_many_members(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(
        _with_top(*[_file(f"{TOP}/meshes/{i}.obj", b"v 0 0 0\n") for i in range(50)])
    )
    assert len(inspect_archive(archive).files) == 51

    with pytest.raises(ArchiveError, match="over the cap"):
        inspect_archive(_declared_too_large_path(tmp_path))  # even under the default cap
    with pytest.raises(ArchiveError, match="limit of 20 members"):
        inspect_archive(archive, max_members=20)


def test_inspect_accepts_a_stream(example_atlas_copy: Path, tmp_path: Path) -> None:
    archive = make_archive(example_atlas_copy, tmp_path)
    with open(archive, "rb") as stream:
        assert inspect_archive(stream).top == example_atlas_copy.name


def test_missing_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="Cannot read archive"):
        inspect_archive(tmp_path / "nope.tar.gz")


def _declared_too_large_path(tmp_path: Path) -> Path:
    path = tmp_path / "declared.tar.gz"
    path.write_bytes(_declared_too_large())
    return path
