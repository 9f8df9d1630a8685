"""Serving and fetching BrainGlobe 3 atlases piece by piece.

Publishing stores the v3 components beside the archive (every backend); ``atlasmith serve``
answers BrainGlobe 3's S3 subset; BrainGlobe 3.0.2's own client (its venv, unpatched apart from
``atlasmith.compat.use_repository``) lists, opens and queries atlases from ``atlasmith serve``
and from an S3 endpoint (moto); atlasmith's client fetches pieces lazily, each verified, and
survives broken and hostile servers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from atlasmith import Atlas, fetch
from atlasmith.cache import AtlasCache
from atlasmith.config import load_settings
from atlasmith.errors import (
    AtlasExistsError,
    AtlasFormatError,
    AtlasNotFoundError,
    DownloadError,
    IntegrityError,
    OfflineError,
    YankedVersionWarning,
)
from atlasmith.repository import LocalRepository, S3Repository
from atlasmith.server import serve_in_thread
from test_download import Fault, RepoServer
from test_repository import MOTO_LOGS, moto_url  # noqa: F401 - the moto server fixture

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "allen_mouse_100um"
MESHES = (997, 8, 567)  # root, grey, CH: the test packages mesh every structure
_NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}


@pytest.fixture(scope="module")
def packages(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid packages (the real Allen data coarsened to ~20 structures, each meshed), as the
    repository tests publish them: versions 1.1 and 1.2."""
    from repo_helpers import package_factory

    factory = package_factory(example_atlas_dir, tmp_path_factory.mktemp("packages"))
    return {version: factory(version=version) for version in ("1.1", "1.2")}


@pytest.fixture(scope="module")
def published(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository folder with versions 1.1 and 1.2 published (read-only use)."""
    root = tmp_path_factory.mktemp("v3repo") / "repo"
    repository = LocalRepository(root)
    for version in ("1.1", "1.2"):
        repository.publish(packages[version])
    return root


def _entry(root: Path, version: str = "1.2") -> dict[str, Any]:
    index = json.loads((root / "index.json").read_text())
    return dict(index["atlases"][NAME]["versions"][version])


# --- publishing ---------------------------------------------------------------------------------


def test_publish_stores_the_v3_copy_with_a_hashed_file_list(published: Path) -> None:
    v3 = _entry(published)["v3"]
    assert v3["version"] == "3.2"
    assert v3["manifest"] == f"atlas/atlases/{NAME}/3_2/manifest.json"
    manifest_path = published / v3["manifest"]
    import hashlib

    assert hashlib.sha256(manifest_path.read_bytes()).hexdigest() == v3["sha256"]
    files = json.loads(manifest_path.read_text())["atlasmith"]["files"]
    assert v3["files"] == len(files) + 1
    for relative, listed in files.items():
        data = (published / "atlas" / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == listed["sha256"], relative
    conf = (published / "atlas/atlases/last_versions.conf").read_text()
    assert conf == f"[atlases]\n{NAME} = 3.2\n"
    assert not list(published.rglob(".atlasmith-v3-*"))  # no staging left


def test_published_versions_stay_immutable(published: Path, packages: dict[str, Path]) -> None:
    before = (published / f"atlas/atlases/{NAME}/3_2/manifest.json").read_bytes()
    with pytest.raises(AtlasExistsError):
        LocalRepository(published).publish(packages["1.2"])
    assert (published / f"atlas/atlases/{NAME}/3_2/manifest.json").read_bytes() == before


def _public_bucket(endpoint: str) -> Any:
    """Bucket ``brainglobe`` on the S3 endpoint, readable by anyone (BrainGlobe's client reads
    anonymously), as a lab serving atlases from S3 sets it up; returns a boto3 client."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    if "brainglobe" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket="brainglobe")
        statement = {
            "Effect": "Allow",
            "Principal": "*",
            # moto checks HEAD against its own action name; AWS needs only the first two
            "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject"],
            "Resource": ["arn:aws:s3:::brainglobe", "arn:aws:s3:::brainglobe/*"],
        }
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        client.put_bucket_policy(Bucket="brainglobe", Policy=json.dumps(policy))
    return client


def test_publish_to_s3_stores_the_v3_copy(moto_url: str, packages: dict[str, Path]) -> None:  # noqa: F811
    client = _public_bucket(moto_url)
    repository = S3Repository(
        "s3://brainglobe", key="testing", secret="testing", endpoint_url=moto_url
    )
    entry = repository.read_index().get(NAME, "1.2") or repository.publish(packages["1.2"])
    manifest = client.get_object(Bucket="brainglobe", Key=entry.v3["manifest"])["Body"].read()
    listed = json.loads(manifest)["atlasmith"]["files"]
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket="brainglobe", Prefix="atlas/"
    ):
        keys |= {item["Key"] for item in page.get("Contents", [])}
    assert {f"atlas/{k}" for k in listed} <= keys
    assert entry.v3["manifest"] in keys


# --- the S3 subset of atlasmith serve ------------------------------------------------------------


@pytest.fixture(scope="module")
def served(published: Path) -> Iterator[str]:
    with serve_in_thread(published, access_log=True) as url:
        yield url.rstrip("/")


def _list(url: str, **params: str) -> ET.Element:
    response = httpx.get(f"{url}/brainglobe", params={"list-type": "2", **params})
    assert response.status_code == 200, response.text
    return ET.fromstring(response.text)


def _keys(tree: ET.Element) -> list[str]:
    return [e.text or "" for e in tree.findall("s3:Contents/s3:Key", _NS)]


def _prefixes(tree: ET.Element) -> list[str]:
    return [e.text or "" for e in tree.findall("s3:CommonPrefixes/s3:Prefix", _NS)]


def test_list_objects_v2(served: str, published: Path) -> None:
    top = _list(served, prefix="", delimiter="/")
    assert _prefixes(top) == ["atlas/"]
    assert _keys(top) == []  # nothing outside atlas/ is in the bucket
    versions = _list(served, prefix=f"atlas/atlases/{NAME}/", delimiter="/")
    assert _prefixes(versions) == [f"atlas/atlases/{NAME}/3_1/", f"atlas/atlases/{NAME}/3_2/"]
    flat = _list(served, prefix="atlas/terminologies/")
    assert _keys(flat) == sorted(_keys(flat))
    assert all(k.endswith("terminology.csv") for k in _keys(flat))
    size = int(flat.findall("s3:Contents/s3:Size", _NS)[0].text or 0)
    assert size == (published / _keys(flat)[0]).stat().st_size
    # pagination: two at a time until done, the same keys as one listing
    whole = _keys(_list(served, prefix="atlas/coordinate-spaces/"))
    seen: list[str] = []
    token: str | None = None
    while True:
        extra = {"continuation-token": token} if token else {}
        page = _list(served, prefix="atlas/coordinate-spaces/", **{"max-keys": "1"}, **extra)
        seen += _keys(page)
        if page.findtext("s3:IsTruncated", namespaces=_NS) != "true":
            break
        token = page.findtext("s3:NextContinuationToken", namespaces=_NS)
    assert seen == whole
    assert len(whole) == 2
    encoded = _list(served, prefix="atlas/atlases/", delimiter="/", **{"encoding-type": "url"})
    assert encoded.findtext("s3:EncodingType", namespaces=_NS) == "url"
    for hostile in ("../", "atlas/../", ".atlasmith", "atlas/.hidden/"):
        assert _keys(_list(served, prefix=hostile)) == [], hostile


def test_head_get_range_and_missing_keys(served: str, published: Path) -> None:
    key = f"atlas/atlases/{NAME}/3_2/manifest.json"
    head = httpx.head(f"{served}/brainglobe/{key}")
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == (published / key).stat().st_size
    assert head.headers["etag"].startswith('"')
    part = httpx.get(f"{served}/brainglobe/{key}", headers={"Range": "bytes=2-9"})
    assert part.status_code == 206
    assert part.content == (published / key).read_bytes()[2:10]
    for missing in (
        f"atlas/atlases/{NAME}/3_2",  # a "folder": S3 has no such object
        "atlas/nothing",
        "index.json",  # not under atlas/
        "atlas/../index.json",
        "atlas/atlases/.hidden",
    ):
        answer = httpx.get(f"{served}/brainglobe/{missing}")
        assert answer.status_code == 404, missing
        assert "NoSuchKey" in answer.text or answer.status_code == 404
    assert httpx.head(f"{served}/brainglobe").status_code == 200
    assert httpx.put(f"{served}/brainglobe/atlas/x", content=b"x").status_code in (404, 405)


def test_yanked_versions_leave_the_listing_but_stay_readable(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    repository = LocalRepository(tmp_path / "repo")
    repository.publish(packages["1.1"])
    repository.publish(packages["1.2"])
    repository.yank(NAME, "1.2", "wrong orientation")
    assert (tmp_path / "repo/atlas/atlases/last_versions.conf").read_text().endswith("= 3.1\n")
    with serve_in_thread(tmp_path / "repo") as url:
        base = url.rstrip("/")
        listing = _list(base, prefix=f"atlas/atlases/{NAME}/", delimiter="/")
        assert _prefixes(listing) == [f"atlas/atlases/{NAME}/3_1/"]
        key = f"atlas/atlases/{NAME}/3_2/manifest.json"
        assert httpx.get(f"{base}/brainglobe/{key}").status_code == 200  # named exactly
        # atlasmith's lazy client opens it only when named exactly, with the reason
        cache = tmp_path / "c"
        with pytest.raises(AtlasNotFoundError, match="no version '1.3'"):
            fetch(NAME, "1.3", repository=url, cache_dir=cache, lazy=True)
        with pytest.warns(YankedVersionWarning, match="1.2 is yanked: wrong orientation"):
            atlas = fetch(NAME, "1.2", repository=url, cache_dir=cache, lazy=True)
        assert atlas.structure_from_coords((66, 40, 57)) > 0
        repository.unyank(NAME, "1.2")  # offered again: back in the listing and the .conf
        listing = _list(base, prefix=f"atlas/atlases/{NAME}/", delimiter="/")
        assert _prefixes(listing) == [f"atlas/atlases/{NAME}/3_1/", f"atlas/atlases/{NAME}/3_2/"]
    assert (tmp_path / "repo/atlas/atlases/last_versions.conf").read_text().endswith("= 3.2\n")


# --- BrainGlobe 3.0.2's own client --------------------------------------------------------------

BG3_SCRIPT = r"""
import json, sys
request = json.loads(sys.argv[1])
from atlasmith.compat import use_repository  # atlasmith's source on PYTHONPATH: only this
use_repository(request["url"])
from brainglobe_atlasapi import BrainGlobeAtlas
from brainglobe_atlasapi.list_atlases import get_all_atlases_lastversions
import numpy as np
out = {"listed": get_all_atlases_lastversions()}
atlas = BrainGlobeAtlas(request["atlas"], brainglobe_dir=request["dir"], check_latest=False)
points = np.random.default_rng(3).integers(0, atlas.shape, size=(200, 3))
out["ids"] = [int(atlas.structure_from_coords(tuple(p))) for p in points]
out["acronym"] = atlas.structure_from_coords((66, 40, 57), as_acronym=True)
out["mask"] = int(atlas.get_structure_mask(request["mask"]).sum())
out["mesh"] = np.asarray(atlas.mesh_from_structure(request["mesh"]).points).round(3).tolist()
print(json.dumps(out))
"""


def _bg3_client(python: Path, url: str, brainglobe_dir: Path) -> dict[str, Any]:
    request = {"url": url, "atlas": NAME, "dir": str(brainglobe_dir), "mask": "CH", "mesh": 567}
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("AWS_ENDPOINT_URL", None)
    run = subprocess.run(
        [str(python), "-c", BG3_SCRIPT, json.dumps(request)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _same_as_atlasmith(result: dict[str, Any], published: Path) -> None:
    ours = Atlas(published / f"atlas/atlases/{NAME}/3_2/manifest.json")
    points = np.random.default_rng(3).integers(0, ours.shape, size=(200, 3))
    assert result["listed"] == {NAME: "3.2"}
    assert result["ids"] == ours.structure_from_coords(points).tolist()
    assert result["acronym"] == ours.structure_from_coords((66, 40, 57), as_acronym=True)
    assert result["mask"] == int(ours.get_structure_mask("CH").sum())
    assert np.abs(np.asarray(result["mesh"]) - ours.mesh_from_structure(567).points).max() < 2e-3


class _Requests(logging.Handler):
    """Counts the requests uvicorn's access log records, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def count(self, word: str) -> int:
        return sum(f'"{word} ' in line for line in self.lines)


def test_brainglobe3_client_reads_atlasmith_serve(
    published: Path, bg3_python: Path, tmp_path: Path
) -> None:
    counter = _Requests()
    access = logging.getLogger("uvicorn.access")
    with serve_in_thread(published, access_log=True) as url:
        access.addHandler(counter)  # after the server configured its logging
        access.setLevel(logging.INFO)
        try:
            result = _bg3_client(bg3_python, url.rstrip("/"), tmp_path / "bg")
        finally:
            access.removeHandler(counter)
    _same_as_atlasmith(result, published)
    lists = sum("list-type=2" in line for line in counter.lines)
    print(
        f"\nBrainGlobe 3.0.2 against atlasmith serve: {len(counter.lines)} requests "
        f"({counter.count('HEAD')} HEAD, {counter.count('GET') - lists} GET, {lists} List)"
    )
    assert counter.count("GET") > 0


def test_brainglobe3_client_reads_an_s3_repository(
    moto_url: str,  # noqa: F811
    packages: dict[str, Path],
    bg3_python: Path,
    tmp_path: Path,
    published: Path,
) -> None:
    _public_bucket(moto_url)
    repository = S3Repository(
        "s3://brainglobe", key="testing", secret="testing", endpoint_url=moto_url
    )
    if repository.read_index().get(NAME, "1.2") is None:
        repository.publish(packages["1.2"])
    log = MOTO_LOGS[moto_url]
    before = len(log.read_bytes().splitlines())
    result = _bg3_client(bg3_python, moto_url, tmp_path / "bg")
    lines = [
        line.decode("utf-8", "replace")
        for line in log.read_bytes().splitlines()[before:]
        if b'HTTP/1.1"' in line
    ]
    _same_as_atlasmith(result, published)
    lists = sum("list-type=2" in line for line in lines)
    gets = sum('"GET ' in line for line in lines)
    heads = sum('"HEAD ' in line for line in lines)
    print(
        f"\nBrainGlobe 3.0.2 against an S3 endpoint (moto): {len(lines)} requests "
        f"({heads} HEAD, {gets - lists} GET, {lists} List)"
    )
    assert gets > 0


# --- atlasmith's own client, piece by piece ------------------------------------------------------


def _lazy_cache(url: str, cache_dir: Path, **extra: Any) -> AtlasCache:
    settings = load_settings(repository=url, cache_dir=cache_dir)
    for key, value in extra.items():
        settings = type(settings)(**{**settings.__dict__, key: value})
    return AtlasCache(settings)


def test_lazy_open_downloads_the_manifest_only(published: Path, tmp_path: Path) -> None:
    server = RepoServer(published).start()
    try:
        atlas = fetch(NAME, repository=server.url, cache_dir=tmp_path / "c", lazy=True)
        opened = {path for path, _ in server.log}
        assert opened == {  # the index, the manifest and the structures: nothing else
            "/index.json",
            f"/atlas/atlases/{NAME}/3_2/manifest.json",
            f"/atlas/terminologies/{NAME}-terminology/3_2/terminology.csv",
        }
        assert atlas.format == "brainglobe-v3"
        before = len(server.log)
        label = atlas.structure_from_coords((66, 40, 57), as_acronym=True)
        pieces = [p for p, _ in server.log[before:]]
        assert all(p.startswith("/atlas/") for p in pieces)
        assert any("annotations_compressed.ome.zarr/s0/c/" in p for p in pieces)
        assert label == Atlas(published / f"atlas/atlases/{NAME}/3_2").structure_from_coords(
            (66, 40, 57), as_acronym=True
        )
        atlas.mesh_from_structure(567)
        atlas.get_structure_mask("CH")
        fetched = [p for p, _ in server.log]
        assert len(fetched) == len(set(fetched))  # each piece once
    finally:
        server.stop()
    # offline now: what was fetched is used, anything else is refused clearly
    offline = _lazy_cache(server.url, tmp_path / "c", offline=True).open_lazy(NAME)
    again = Atlas(offline)
    assert again.structure_from_coords((66, 40, 57), as_acronym=True) == label
    with pytest.raises(OfflineError, match="not downloaded yet"):
        again.mesh_from_structure(8)


def test_a_listing_naming_keys_outside_the_root_is_refused(published: Path, tmp_path: Path) -> None:
    """The client's listing is the manifest's file list (it never lists the server): a
    repository whose manifest (hashed consistently in its index) names keys outside the atlas
    root is refused before any piece is read, and nothing lands outside the cache."""
    hostile = tmp_path / "hostile"
    shutil.copytree(published, hostile)
    manifest_key = f"atlas/atlases/{NAME}/3_2/manifest.json"
    manifest = json.loads((hostile / manifest_key).read_text())
    files = manifest["atlasmith"]["files"]
    files["../../../escaped.txt"] = {"sha256": "0" * 64, "size": 1}
    data = json.dumps(manifest).encode()
    (hostile / manifest_key).write_bytes(data)
    index = json.loads((hostile / "index.json").read_text())
    for entry in index["atlases"][NAME]["versions"].values():
        if entry.get("v3", {}).get("manifest") == manifest_key:
            entry["v3"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (hostile / "index.json").write_text(json.dumps(index))
    server = RepoServer(hostile).start()
    try:
        cache = _lazy_cache(server.url, tmp_path / "cache")
        with pytest.raises(AtlasFormatError, match="not a path inside the atlas root"):
            Atlas(cache.open_lazy(NAME)).structure_from_coords((66, 40, 57))
        assert not any("list-type" in path for path, _ in server.log)
    finally:
        server.stop()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_damaged_cached_piece_is_fetched_again(published: Path, tmp_path: Path) -> None:
    server = RepoServer(published).start()
    try:
        cache = _lazy_cache(server.url, tmp_path / "c")
        atlas = Atlas(cache.open_lazy(NAME))
        mesh = atlas.files.mesh_path(567)
        first = atlas.mesh_from_structure(567).points
        data = bytearray(mesh.read_bytes())
        data[50] ^= 0xFF
        mesh.write_bytes(bytes(data))
        assert cache.verify_v3(NAME) != []  # verify sees it
        fresh = Atlas(cache.open_lazy(NAME))
        assert np.array_equal(fresh.mesh_from_structure(567).points, first)
        assert cache.verify_v3(NAME) == []
    finally:
        server.stop()


def _piece(published: Path, part: str) -> str:
    files = json.loads((published / f"atlas/atlases/{NAME}/3_2/manifest.json").read_text())
    return next(f"/atlas/{k}" for k in files["atlasmith"]["files"] if part in k)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=404), DownloadError),
        (Fault(body=b"<html><body>Service unavailable</body></html>"), IntegrityError),
    ],
    ids=["missing", "html-error-page"],
)
def test_broken_pieces_are_errors_never_zeros(
    published: Path, tmp_path: Path, fault: Fault, error: type[Exception]
) -> None:
    server = RepoServer(published).start()
    key = _piece(published, "annotations_compressed.ome.zarr/s0/c/1/0/0")
    server.faults[key] = fault
    try:
        cache = _lazy_cache(server.url, tmp_path / "c")
        cache = AtlasCache(type(cache.settings)(**{**cache.settings.__dict__, "retries": 2}))
        atlas = Atlas(cache.open_lazy(NAME))
        with pytest.raises(error):
            atlas.structure_from_coords((130, 40, 57))
        assert not (cache.v3_root / key.removeprefix("/atlas/")).exists()
    finally:
        server.stop()


def test_a_piece_cut_off_is_resumed(published: Path, tmp_path: Path) -> None:
    server = RepoServer(published).start()
    key = _piece(published, "annotations_compressed.ome.zarr/s0/c/1/0/0")
    server.faults[key] = Fault(drop_after=100, times=1)
    try:
        atlas = fetch(NAME, repository=server.url, cache_dir=tmp_path / "c", lazy=True)
        reference = Atlas(published / f"atlas/atlases/{NAME}/3_2")
        assert atlas.structure_from_coords((130, 40, 57)) == reference.structure_from_coords(
            (130, 40, 57)
        )
        assert server.gets(key.lstrip("/")) == [None, "bytes=100-"]
    finally:
        server.stop()


def test_bit_flipped_piece_is_refused(published: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(published, mirror)
    key = _piece(published, "annotations_compressed.ome.zarr/s0/c/1/0/0")
    path = mirror / key.lstrip("/")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    server = RepoServer(mirror).start()
    try:
        atlas = fetch(NAME, repository=server.url, cache_dir=tmp_path / "c", lazy=True)
        with pytest.raises(IntegrityError, match="sha256"):
            atlas.structure_from_coords((130, 40, 57))
    finally:
        server.stop()


def test_a_server_that_hangs_mid_piece_is_given_up_on_then_resumed(
    published: Path, tmp_path: Path
) -> None:
    server = RepoServer(published).start()
    key = _piece(published, "mesh/567")
    server.faults[key] = Fault(drop_after=200, stall=60.0, times=1)  # 200 bytes, then silence
    try:
        settings = load_settings(repository=server.url, cache_dir=tmp_path / "c")
        settings = type(settings)(**{**settings.__dict__, "timeout": 1.0})
        atlas = Atlas(AtlasCache(settings).open_lazy(NAME))
        started = time.monotonic()
        mesh = atlas.mesh_from_structure(567)
        assert time.monotonic() - started < 30  # the silent transfer was abandoned after 1 s
        reference = Atlas(published / f"atlas/atlases/{NAME}/3_2").mesh_from_structure(567)
        assert np.array_equal(mesh.points, reference.points)
        assert server.gets(key.lstrip("/")) == [None, "bytes=200-"]
    finally:
        server.stop()


KILL_SCRIPT = r"""
import sys
from atlasmith import fetch
atlas = fetch(sys.argv[2], repository=sys.argv[1], cache_dir=sys.argv[3], lazy=True)
print("open", flush=True)
atlas.structure_from_coords((130, 40, 57))
for sid in (997, 8, 567):
    atlas.mesh_from_structure(sid)
atlas.get_structure_mask("CH")
print("done", flush=True)
"""


def test_clients_killed_mid_piece_leave_nothing_wrong(published: Path, tmp_path: Path) -> None:
    server = RepoServer(published, throttle=400_000.0).start()
    cache_dir = tmp_path / "c"
    rng = np.random.default_rng(11)
    try:
        for _ in range(10):
            process = subprocess.Popen(
                [sys.executable, "-c", KILL_SCRIPT, server.url, NAME, str(cache_dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(float(rng.uniform(0.3, 2.0)))
            process.send_signal(signal.SIGKILL)
            process.wait()
            cache = _lazy_cache(server.url, cache_dir)
            assert cache.verify_v3(NAME) == []  # every piece there is whole and right
        atlas = fetch(NAME, repository=server.url, cache_dir=cache_dir, lazy=True)
        reference = Atlas(published / f"atlas/atlases/{NAME}/3_2")
        points = rng.integers(0, reference.shape, size=(5000, 3))
        assert np.array_equal(
            atlas.structure_from_coords(points), reference.structure_from_coords(points)
        )
        for sid in MESHES:
            assert np.array_equal(
                atlas.mesh_from_structure(sid).points, reference.mesh_from_structure(sid).points
            )
    finally:
        server.stop()


def test_fifty_clients_open_one_atlas_and_each_piece_comes_once(
    published: Path, tmp_path: Path
) -> None:
    server = RepoServer(published).start()
    cache_dir = tmp_path / "c"
    errors: list[BaseException] = []
    results: list[str] = []

    def client() -> None:
        try:
            atlas = fetch(NAME, repository=server.url, cache_dir=cache_dir, lazy=True)
            results.append(str(atlas.structure_from_coords((66, 40, 57), as_acronym=True)))
            atlas.mesh_from_structure(567)
        except BaseException as err:  # noqa: BLE001 - collected and reported below
            errors.append(err)

    try:
        threads = [threading.Thread(target=client) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        server.stop()
    assert errors == []
    assert len(results) == 50
    assert len(set(results)) == 1
    pieces = [p for p, _ in server.log if p.startswith("/atlas/") and "manifest" not in p]
    assert pieces
    assert len(pieces) == len(set(pieces))  # each piece downloaded once for the cache
