"""The repository web page end to end: the real server (atlasmith.server) on loopback serving
a repository with two atlases built from the real bundled Allen data, driven by Debian's
headless Chromium through Playwright, checked with axe-core."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlasmith.repository import RepositoryIndex
from test_web import build_repository, write_site

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).parent / "web" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def site_root(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    build_repository(example_atlas_dir, root)
    return root


@pytest.fixture(scope="module")
def site(site_root: Path) -> Iterator[tuple[str, RepositoryIndex]]:
    """`atlasmith serve` (the real command, in its own process) on a free loopback port."""
    repo = site_root / "repo"
    index = RepositoryIndex.from_json((repo / "index.json").read_bytes())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "atlasmith",
        "serve",
        str(repo),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--token-file",
        str(site_root / "tokens.json"),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, server)
        yield url, index
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        try:
            if httpx.get(url + "health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"atlasmith serve did not answer at {url} within 60 s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "install Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield tab
    context.close()
    assert errors == []  # no script errors, no failed loads reported by the page


def _visible_cards(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "#atlases > li:not([hidden]) h2", "els => els.map(e => e.textContent.trim())"
        )
    )


def _images_loaded(page: Any) -> list[int]:
    page.wait_for_load_state("load")
    return list(
        page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    )


def test_front_page_lists_both_atlases_with_credits(
    page: Any, site: tuple[str, RepositoryIndex]
) -> None:
    url, index = site
    page.goto(url)
    assert _visible_cards(page) == index.names()
    assert page.title() == "Brain atlases"
    doi = page.locator('a[href="https://doi.org/10.1016/j.cell.2020.04.007"]')
    assert doi.count() == len(index.names())
    assert page.locator('a[href="http://www.brain-map.org"]').count() == len(index.names())
    assert page.locator("#count").inner_text() == "2 of 2 atlases shown"
    widths = _images_loaded(page)
    assert len(widths) == 2
    assert all(w > 0 for w in widths)
    assert page.locator("#repo-url").inner_text() == url


def test_filter_narrows_the_list(page: Any, site: tuple[str, RepositoryIndex]) -> None:
    url, _ = site
    page.goto(url)
    box = page.get_by_label("Filter by name or species")
    box.fill("200um")
    assert _visible_cards(page) == ["allen_mouse_200um"]
    assert page.locator("#count").inner_text() == "1 of 2 atlases shown"
    box.fill("MUS musculus")
    assert len(_visible_cards(page)) == 2
    box.fill("danio")
    assert _visible_cards(page) == []
    assert page.locator("#no-match").is_visible()
    box.fill("")
    assert len(_visible_cards(page)) == 2
    # how long the list takes to update after a keystroke (reported, not asserted)
    elapsed = page.evaluate(
        """() => new Promise(done => {
            const input = document.getElementById('filter');
            const t0 = performance.now();
            input.value = '100um';
            input.dispatchEvent(new Event('input', {bubbles: true}));
            requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
        })"""
    )
    assert _visible_cards(page) == ["allen_mouse_100um"]
    print(f"\nfilter update: {elapsed:.1f} ms (input event to next frame)")


def test_detail_page_images_and_verified_download(
    page: Any, site: tuple[str, RepositoryIndex], site_root: Path, tmp_path: Path
) -> None:
    url, index = site
    page.goto(url)
    page.get_by_role("link", name="allen_mouse_200um", exact=True).click()
    page.wait_for_url(f"{url}atlases/allen_mouse_200um.html")
    assert page.locator("h1").inner_text() == "allen_mouse_200um"
    widths = _images_loaded(page)
    assert widths
    assert all(w > 0 for w in widths)
    assert (
        page.locator(".tree li").count()
        == index.entry("allen_mouse_200um", "1.2").metadata["structures"]
    )
    # the structure finder narrows the tree and opens the branches that lead to matches
    tree_file = site_root / "repo" / "structures" / "allen_mouse_200um_v1.2.json"
    structures = json.loads(tree_file.read_text())
    query = "ca1"
    expected = [s for s in structures if query in f"{s['acronym']} {s['name']} ({s['id']})".lower()]
    assert expected
    page.get_by_label("Find a structure (acronym or name)").fill(query.upper())
    assert page.locator("#tree-count").inner_text() == f"{len(expected)} structure(s) match"
    assert page.locator(".tree strong", has_text=re.compile("^CA1$")).is_visible()
    assert not page.locator(".tree strong", has_text=re.compile("^VISp$")).is_visible()
    entry = index.latest("allen_mouse_200um")
    assert entry is not None
    with page.expect_download() as info:
        page.locator("a.download").click()
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert target.name == entry.archive
    assert hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256
    page.get_by_role("link", name="All atlases").click()
    page.wait_for_url(f"{url}index.html")
    assert len(_visible_cards(page)) == 2


def _serious_violations(page: Any) -> list[str]:
    assert AXE.is_file(), "run `npm ci` in tests/web to install axe-core"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    assert result["passes"]  # axe really ran its rules
    return [
        f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("path", ["", "atlases/allen_mouse_100um.html"])
def test_no_serious_accessibility_violations(
    page: Any, site: tuple[str, RepositoryIndex], path: str
) -> None:
    page.goto(site[0] + path)
    assert _serious_violations(page) == []


def test_an_atlas_with_every_version_yanked_offers_no_download(
    page: Any, site_root: Path, tmp_path: Path
) -> None:
    """Its page (served by the real server) shows the reasons and the exact-version install
    instead of a Download button, stays accessible and fits a phone."""
    from atlasmith.server import serve_in_thread

    name = "allen_mouse_100um"
    repo = tmp_path / "repo"
    shutil.copytree(site_root / "repo", repo)
    index = RepositoryIndex.from_json((repo / "index.json").read_bytes())
    index = index.with_yanked(name, "1.2", "wrong orientation").with_yanked(name, "1.1")
    write_site(repo, index)
    with serve_in_thread(repo, token_file=tmp_path / "tokens.json") as url:
        page.goto(f"{url}/atlases/{name}.html")
        assert page.locator("a.download").count() == 0
        notice = page.get_by_text(f"Every version of {name} is yanked")
        assert notice.inner_text() == (
            f"Every version of {name} is yanked: v1.2 (wrong orientation), v1.1 (no reason given)."
        )
        assert page.locator("code", has_text=f"atlasmith install {name} --version 1.2").count()
        assert "BrainGlobeAtlas(" not in page.locator("main").inner_text()
        assert _serious_violations(page) == []
        page.set_viewport_size({"width": 360, "height": 740})
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.goto(f"{url}/")
        assert page.locator("a.download").count() == 1  # the other atlas's
        assert _serious_violations(page) == []


def test_inspection_report_is_accessible_and_fits_a_phone(
    page: Any, site_root: Path, tmp_path: Path
) -> None:
    from atlasmith.inspection import inspect_atlas

    result = inspect_atlas(site_root / "work" / "allen_mouse_200um_v1.2", tmp_path / "report")
    page.goto(result.report.as_uri())
    assert all(w > 0 for w in _images_loaded(page))
    assert _serious_violations(page) == []
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


@pytest.mark.parametrize("path", ["", "atlases/allen_mouse_100um.html"])
def test_no_horizontal_scrolling_at_360_px(
    page: Any, site: tuple[str, RepositoryIndex], path: str
) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(site[0] + path)
    page.wait_for_load_state("load")
    for details in page.locator("details").all()[:40]:  # open the collapsed parts too
        details.evaluate("d => d.open = true")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
