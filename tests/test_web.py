"""The repository web pages (atlasmith.web), rendered from a repository built from the real
bundled Allen atlas: two atlases (100 um and a 200 um subsample), the 100 um one in two
versions."""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import tifffile

from atlasmith._html import human_size, linkify
from atlasmith.package import make_archive, sha256_file, write_manifest
from atlasmith.previews import write_package_preview
from atlasmith.repository import IndexEntry, RepositoryIndex
from atlasmith.repository._check import summary_metadata
from atlasmith.web import render_site


def _variant(source: Path, parent: Path, version: str, step: int = 1) -> Path:
    """A copy of an atlas folder with another version and (for step > 1) subsampled stacks."""
    meta = json.loads((source / "metadata.json").read_text())
    resolution = meta["resolution"][0] * step
    folder = parent / f"{meta['name']}_{resolution:g}um_v{version}"
    shutil.copytree(source, folder)
    if step > 1:
        for name in ("reference.tiff", "annotation.tiff"):
            stack = tifffile.imread(folder / name)[::step, ::step, ::step]
            tifffile.imwrite(folder / name, np.ascontiguousarray(stack))
        meta["resolution"] = [r * step for r in meta["resolution"]]
        meta["shape"] = list(stack.shape)
        shutil.rmtree(folder / "meshes")
        (folder / "meshes").mkdir()
    meta["version"] = version
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def publish_into(repo: Path, folder: Path, published: str) -> IndexEntry:
    """Publish a folder the way ``Repository.publish`` lays it out (without its validation
    gate, which needs every structure's mesh): archive, preview, structures copy."""
    write_package_preview(folder)
    write_manifest(folder, {"script": "tests/test_web.py"})
    archive = make_archive(folder, repo)
    stem = folder.name
    (repo / "previews").mkdir(exist_ok=True)
    (repo / "structures").mkdir(exist_ok=True)
    shutil.copyfile(folder / "preview.png", repo / "previews" / f"{stem}.png")
    shutil.copyfile(folder / "structures.json", repo / "structures" / f"{stem}.json")
    raw = json.loads((folder / "metadata.json").read_text())
    n_structures = len(json.loads((folder / "structures.json").read_text()))
    name, version = stem.rsplit("_v", 1)
    return IndexEntry(
        atlas_name=name,
        version=version,
        archive=archive.name,
        sha256=sha256_file(archive),
        size=archive.stat().st_size,
        published=published,
        preview=f"previews/{stem}.png",
        structures=f"structures/{stem}.json",
        metadata=summary_metadata(raw, n_structures),
    )


def read_from(repo: Path):  # type: ignore[no-untyped-def]
    def read_file(name: str) -> bytes | None:
        path = repo / name
        return path.read_bytes() if path.is_file() else None

    return read_file


def write_site(repo: Path, index: RepositoryIndex) -> dict[str, bytes]:
    (repo / "index.json").write_bytes(index.to_json())
    pages = render_site(index, read_from(repo))
    for name, data in pages.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    return pages


def build_repository(example: Path, root: Path) -> tuple[Path, RepositoryIndex]:
    """A repository folder with allen_mouse_100um 1.1 and 1.2 and allen_mouse_200um 1.2."""
    work, repo = root / "work", root / "repo"
    work.mkdir()
    repo.mkdir()
    folders = [
        (_variant(example, work, "1.1"), "2026-01-05T10:00:00Z"),
        (_variant(example, work, "1.2"), "2026-03-01T10:00:00Z"),
        (_variant(example, work, "1.2", step=2), "2026-03-02T10:00:00Z"),
    ]
    index = RepositoryIndex(tuple(publish_into(repo, f, when) for f, when in folders))
    write_site(repo, index)
    return repo, index


@pytest.fixture(scope="module")
def repository(
    example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RepositoryIndex]:
    return build_repository(example_atlas_dir, tmp_path_factory.mktemp("webrepo"))


class _Links(HTMLParser):
    """Collects hrefs, image sources and list items of a page; checks tags are balanced."""

    VOID = {"meta", "img", "input", "br", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
        if tag == "img":
            self.images.append(values)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()


def _parse(data: bytes) -> _Links:
    parser = _Links()
    parser.feed(data.decode("utf-8"))
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert len(parser.ids) == len(set(parser.ids)), "duplicate ids"
    return parser


def test_site_lists_every_atlas_with_versions_credits_and_downloads(
    repository: tuple[Path, RepositoryIndex],
) -> None:
    repo, index = repository
    pages = render_site(index, read_from(repo))
    assert sorted(pages) == [
        "atlases/allen_mouse_100um.html",
        "atlases/allen_mouse_200um.html",
        "index.html",
    ]
    front = pages["index.html"].decode()
    links = _parse(pages["index.html"])
    for entry in index.entries:
        assert f'href="{entry.archive}"' in front
        assert entry.sha256 in front
        assert (repo / entry.archive).is_file()
        assert sha256_file(repo / entry.archive) == entry.sha256
    latest = index.latest("allen_mouse_100um")
    assert latest is not None
    assert latest.version == "1.2"
    assert f"Download allen_mouse_100um v1.2 ({human_size(latest.size)})" in front
    assert "Older versions (1)" in front
    assert "BrainGlobeAtlas(&quot;allen_mouse_200um&quot;)" in front
    assert '<a href="https://doi.org/10.1016/j.cell.2020.04.007"' in front
    assert '<a href="http://www.brain-map.org"' in front
    assert "Mus musculus" in front
    assert "atlases/allen_mouse_200um.html" in links.hrefs


def test_links_are_relative_and_resolve_to_files(repository: tuple[Path, RepositoryIndex]) -> None:
    repo, _ = repository
    for page_name in ("index.html", "atlases/allen_mouse_100um.html"):
        page = repo / page_name
        links = _parse(page.read_bytes())
        local = [h for h in links.hrefs if not h.startswith(("http://", "https://", "#"))]
        assert local
        for href in local + [str(img["src"]) for img in links.images]:
            assert not href.startswith("/")
            assert (page.parent / href).resolve().is_file(), href


def test_preview_images_carry_size_and_alt_text(repository: tuple[Path, RepositoryIndex]) -> None:
    from PIL import Image

    repo, _ = repository
    page = repo / "atlases" / "allen_mouse_200um.html"
    images = _parse(page.read_bytes()).images
    assert len(images) == 1
    with Image.open(page.parent / str(images[0]["src"])) as image:
        assert (int(str(images[0]["width"])), int(str(images[0]["height"]))) == image.size
    assert "allen_mouse_200um" in str(images[0]["alt"])


def test_detail_page_shows_the_whole_structure_tree(
    repository: tuple[Path, RepositoryIndex],
) -> None:
    repo, index = repository
    structures = json.loads((repo / "structures" / "allen_mouse_100um_v1.2.json").read_text())
    page = (repo / "atlases" / "allen_mouse_100um.html").read_text()
    _parse(page.encode())
    tree = page[page.index('<ul class="tree">') :]
    assert tree.count("<li>") == len(structures)
    acronyms = re.findall(r"<li>(?:<details(?: open)?><summary>)?.*?<strong>(.*?)</strong>", tree)
    assert sorted(acronyms) == sorted(html.escape(s["acronym"]) for s in structures)
    assert f"{len(structures)} structures" in page
    # every version, newest first, with its hash
    versions = re.findall(r"<h3 id=\"v-[^\"]+\">Version (1\.\d)</h3>", page)
    assert versions == ["1.2", "1.1"]
    assert index.entry("allen_mouse_100um", "1.1").sha256 in page


def test_yanked_version_is_marked_and_not_offered(
    repository: tuple[Path, RepositoryIndex],
) -> None:
    repo, index = repository
    yanked = index.with_yanked("allen_mouse_100um", "1.2", reason="wrong <orientation>")
    pages = render_site(yanked, read_from(repo))
    front = pages["index.html"].decode()
    assert "Download allen_mouse_100um v1.1" in front
    assert "Download allen_mouse_100um v1.2" not in front
    assert "v1.2</a> (" in front
    assert "yanked: wrong &lt;orientation&gt;)" in front  # in the card's older versions
    detail = pages["atlases/allen_mouse_100um.html"].decode()
    assert "yanked: wrong &lt;orientation&gt;" in detail
    assert "BrainGlobeAtlas(&quot;allen_mouse_100um&quot;)" in detail  # 1.1 is offered


def test_an_atlas_whose_every_version_is_yanked_offers_no_download(
    repository: tuple[Path, RepositoryIndex],
) -> None:
    """No Download button and no unpinned Python line (it would fail); the reasons, and the
    exact-version install instead, on the card and on the atlas's page."""
    repo, index = repository
    yanked = index.with_yanked("allen_mouse_100um", "1.2", reason="wrong <orientation>")
    yanked = yanked.with_yanked("allen_mouse_100um", "1.1")
    pages = render_site(yanked, read_from(repo))
    detail = pages["atlases/allen_mouse_100um.html"].decode()
    front = pages["index.html"].decode()
    card = front[front.index('id="h-allen_mouse_100um"') : front.index('id="h-allen_mouse_200um"')]
    _parse(pages["index.html"])
    _parse(pages["atlases/allen_mouse_100um.html"])
    for text in (card, detail):
        assert 'class="download"' not in text
        assert "BrainGlobeAtlas(&quot;allen_mouse_100um&quot;)" not in text
        assert (
            "Every version of allen_mouse_100um is yanked: v1.2 (wrong &lt;orientation&gt;), "
            "v1.1 (no reason given)." in text
        )
        assert "<code>atlasmith install allen_mouse_100um --version 1.2</code>" in text
        pinned = "fetch(&quot;allen_mouse_100um&quot;, &quot;1.2&quot;)  # yanked: wrong &lt;"
        assert pinned in text
        assert "1.2 (yanked: wrong &lt;orientation&gt;; no version is available)" in text
    assert 'class="download"' in front  # the other atlas still has its button


def test_untrusted_metadata_is_escaped(repository: tuple[Path, RepositoryIndex]) -> None:
    repo, index = repository
    entry = index.entry("allen_mouse_200um", "1.2")
    hostile = dict(entry.metadata)
    hostile.update(
        citation='<script>alert(1)</script> see "https://example.org/a?b=1&c=2"',
        atlas_link="javascript:alert(1)",
        species='Mus <img src=x onerror="alert(1)">',
        atlas_packager="<b>me</b>",
    )
    bad = IndexEntry(**{**entry.__dict__, "metadata": hostile})
    pages = render_site(RepositoryIndex((bad,)), read_from(repo))
    for data in pages.values():
        text = data.decode()
        _parse(data)
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert 'href="javascript:' not in text
        assert "&lt;b&gt;me&lt;/b&gt;" in text
    assert 'href="https://example.org/a?b=1&amp;c=2"' in pages["index.html"].decode()


def test_linkify_links_dois_and_urls_only() -> None:
    text = linkify("Doe (2020) doi:10.1234/abc.5. Also ftp://x.org and https://a.org/b.")
    assert '<a href="https://doi.org/10.1234/abc.5"' in text
    assert '<a href="https://a.org/b"' in text
    assert "ftp://x.org" in text
    assert 'href="ftp' not in text


def test_empty_repository_renders_a_page() -> None:
    pages = render_site(RepositoryIndex(), lambda name: None)
    assert list(pages) == ["index.html"]
    assert "0 atlases" in pages["index.html"].decode()
