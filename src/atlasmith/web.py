"""The repository's web pages: a browsable, filterable list of atlases and one page per atlas.

:func:`render_site` turns a :class:`~atlasmith.repository.RepositoryIndex` into static HTML
pages (``index.html`` and ``atlases/<atlas_name>.html``). ``publish``, ``yank`` and ``unyank``
write them into the repository and ``atlasmith serve`` serves them at ``/``, so a plain static
host shows the same site. A yanked version is shown with its reason and never offered by a
Download button (when every version is yanked, the page says how to install one exactly).
Every page is self-contained (inline CSS and script), every link is relative, and every value
from the index or from an atlas is escaped: atlas metadata is untrusted input.
The HTML they share with the inspection report is in :mod:`atlasmith._html`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from atlasmith._html import credits_html, esc, facts, human_size, page, png_size
from atlasmith.names import is_atlas_name

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.repository import IndexEntry, RepositoryIndex

__all__ = ["render_site", "structure_tree_html"]

ReadFile = Callable[[str], bytes | None]


_FILTER_JS = """
(function () {
  var input = document.getElementById("filter");
  var items = Array.prototype.slice.call(document.querySelectorAll("#atlases > li"));
  var count = document.getElementById("count");
  var none = document.getElementById("no-match");
  function apply() {
    var terms = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    items.forEach(function (li) {
      var text = li.getAttribute("data-search");
      var match = terms.every(function (t) { return text.indexOf(t) !== -1; });
      li.hidden = !match;
      if (match) { shown += 1; }
    });
    count.textContent = shown + " of " + items.length + " atlases shown";
    none.hidden = shown !== 0;
  }
  input.addEventListener("input", apply);
  apply();
  var origin = document.getElementById("repo-url");
  if (origin && /^https?:$/.test(location.protocol)) {
    origin.textContent = new URL(".", location.href).href;
  }
})();
"""


_TREE_JS = """
(function () {
  var input = document.getElementById("tree-filter");
  var items = Array.prototype.slice.call(document.querySelectorAll(".tree li"));
  var count = document.getElementById("tree-count");
  var labels = items.map(function (li) {
    var summary = li.querySelector(":scope > details > summary");
    return (summary ? summary.textContent : li.textContent).toLowerCase();
  });
  function apply() {
    var query = input.value.trim().toLowerCase();
    var visible = new Map();
    var matches = 0;
    for (var i = items.length - 1; i >= 0; i -= 1) {  /* children come after parents */
      var li = items[i];
      var own = !query || labels[i].indexOf(query) !== -1;
      var kids = li.querySelectorAll(":scope > details > ul > li");
      var child = Array.prototype.some.call(kids, function (k) { return visible.get(k); });
      visible.set(li, own || child);
      li.hidden = !(own || child);
      if (query && own) { matches += 1; }
      var details = li.querySelector(":scope > details");
      if (details && query) { details.open = child; }
    }
    count.textContent = query ? matches + " structure(s) match" : "";
  }
  input.addEventListener("input", apply);
})();
"""


def _format_resolution(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        parts = [f"{float(v):g}" for v in value]
        return (parts[0] if len(set(parts)) == 1 else " \u00d7 ".join(parts)) + " \u00b5m"
    return esc(value)


# --- the site --------------------------------------------------------------------------------


def render_site(index: RepositoryIndex, read_file: ReadFile) -> dict[str, bytes]:
    """Render the repository's static pages.

    Parameters
    ----------
    index : RepositoryIndex
        The repository index (every atlas and version).
    read_file : callable
        ``read_file(path) -> bytes | None`` reads a file of the repository layout (e.g.
        ``"structures/allen_mouse_100um_v1.2.json"``), None when it is absent.

    Returns
    -------
    dict of str to bytes
        ``"index.html"`` and ``"atlases/<atlas_name>.html"`` for each atlas, UTF-8 HTML.
    """
    names = [name for name in index.names() if is_atlas_name(name)]
    cards = {name: _AtlasView(name, index.versions(name), read_file) for name in names}
    pages = {"index.html": render_index(list(cards.values())).encode()}
    for name, view in cards.items():
        pages[f"atlases/{name}.html"] = render_detail(view, read_file).encode()
    return pages


class _AtlasView:
    """What the pages show of one atlas: its versions, newest first, and the one to offer."""

    def __init__(self, name: str, versions: Sequence[IndexEntry], read_file: ReadFile) -> None:
        self.name = name
        self.versions = sorted(versions, key=lambda e: e.version_key, reverse=True)
        available = [e for e in self.versions if not e.yanked]
        self.current = available[0] if available else self.versions[0]
        self.all_yanked = not available
        data = read_file(self.current.preview) if self.current.preview else None
        self.preview_size = png_size(data) if data else None

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.current.metadata

    def search_text(self) -> str:
        meta = self.metadata
        return " ".join(
            str(x) for x in (self.name, meta.get("name", ""), meta.get("species", ""))
        ).lower()


def _href(path: str, prefix: str) -> str:
    return esc(prefix + quote(path))


def _python_line(view: _AtlasView) -> str:
    """How to open the atlas from Python: by name, or (every version yanked) pinned to the
    newest version, which installs with a warning showing why it was yanked."""
    if not view.all_yanked:
        return f'from atlasmith import BrainGlobeAtlas\natlas = BrainGlobeAtlas("{view.name}")'
    entry = view.current
    return (
        f'from atlasmith import fetch\natlas = fetch("{view.name}", "{entry.version}")'
        f"  # yanked: {entry.yank_note}"
    )


def _preview_img(view: _AtlasView, prefix: str, *, lazy: bool) -> str:
    entry = view.current
    if not entry.preview or view.preview_size is None:
        return '<p class="muted">No preview image was published for this version.</p>'
    width, height = view.preview_size
    alt = (
        f"Section preview of {view.name} version {entry.version}: frontal, sagittal and "
        "horizontal sections with the annotation in colour"
    )
    loading = ' loading="lazy"' if lazy else ""
    return (
        f'<img src="{_href(entry.preview, prefix)}" alt="{esc(alt)}" width="{width}" '
        f'height="{height}"{loading}>'
    )


def _summary_rows(view: _AtlasView) -> list[tuple[str, str]]:
    meta, entry = view.metadata, view.current
    status = f" (yanked: {entry.yank_note}; no version is available)" if view.all_yanked else ""
    return [
        ("Species", esc(meta.get("species", "unknown"))),
        ("Resolution", _format_resolution(meta.get("resolution", "unknown"))),
        ("Shape", esc(" \u00d7 ".join(str(s) for s in meta.get("shape", [])) or "unknown")),
        ("Structures", esc(meta.get("structures", "unknown"))),
        ("Latest version", esc(entry.version) + esc(status)),
        ("Size", esc(human_size(entry.size))),
        ("sha256", f'<code class="hash">{esc(entry.sha256)}</code>'),
        ("Published", esc(entry.published)),
    ]


def _download(view: _AtlasView, prefix: str) -> str:
    """The Download button of the latest version; none when every version is yanked (PEP
    592: a yanked version is for those who name it exactly), but what to do instead."""
    entry = view.current
    if view.all_yanked:
        listed = ", ".join(f"v{e.version} ({e.yank_note})" for e in view.versions)
        command = f"atlasmith install {view.name} --version {entry.version}"
        return (
            f'<p class="bad">Every version of {esc(view.name)} is yanked: {esc(listed)}.</p>'
            "<p>A yanked version is installed only when named exactly, e.g. "
            f"<code>{esc(command)}</code>.</p>"
        )
    label = f"Download {view.name} v{entry.version} ({human_size(entry.size)})"
    button = f'<a class="download" href="{_href(entry.archive, prefix)}" download>{esc(label)}</a>'
    return f"<p>{button}</p>"


def _older_versions(view: _AtlasView, prefix: str) -> str:
    older = [e for e in view.versions if e is not view.current]
    if not older:
        return '<p class="muted">No older versions.</p>'
    items = "".join(
        f'<li><a href="{_href(e.archive, prefix)}" download>v{esc(e.version)}</a> '
        f"({esc(human_size(e.size))}{esc(f', yanked: {e.yank_note}' if e.yanked else '')}) "
        "sha256 "
        f'<code class="hash">{esc(e.sha256)}</code></li>'
        for e in older
    )
    return f"<details><summary>Older versions ({len(older)})</summary><ul>{items}</ul></details>"


def _card(view: _AtlasView) -> str:
    heading = f"h-{view.name}"
    return (
        f'<li data-search="{esc(view.search_text())}">'
        f'<article class="card" aria-labelledby="{esc(heading)}">'
        f'<h2 id="{esc(heading)}"><a href="{_href(f"atlases/{view.name}.html", "")}">'
        f"{esc(view.name)}</a></h2>"
        f"{_preview_img(view, '', lazy=True)}"
        f"{facts(_summary_rows(view))}"
        f"<h3>Credits</h3>{credits_html(view.metadata)}"
        f"{_download(view, '')}"
        f"<pre><code>{esc(_python_line(view))}</code></pre>"
        f"{_older_versions(view, '')}"
        "</article></li>"
    )


def render_index(views: Sequence[_AtlasView]) -> str:
    """The front page: every atlas as a card, with a filter box."""
    cards = "\n".join(_card(v) for v in views)
    header = (
        "<header><h1>Brain atlases</h1>"
        f"<p>{len(views)} atlas{'es' if len(views) != 1 else ''} in BrainGlobe's format. "
        "Use them from Python with atlasmith (or BrainGlobe's own tools) after pointing "
        'them at this repository: <code>ATLASMITH_REPOSITORY=<span id="repo-url">'
        "this page's address</span></code>.</p></header>"
    )
    body = (
        f"{header}\n<main>"
        '<form class="filter" role="search" onsubmit="return false">'
        '<label for="filter">Filter by name or species</label>'
        '<input id="filter" type="search" autocomplete="off" '
        'placeholder="e.g. mouse, allen, 25um">'
        '<p id="count" class="muted" aria-live="polite"></p></form>'
        f'<ul id="atlases" class="atlases">\n{cards}\n</ul>'
        '<p id="no-match" hidden>No atlas matches the filter.</p></main>'
        "<footer><p>Published with atlasmith. Each download is a BrainGlobe atlas folder "
        "(tar.gz); check it against its sha256.</p></footer>"
    )
    return page("Brain atlases", body, script=_FILTER_JS)


# --- detail page -------------------------------------------------------------------------------


def render_detail(view: _AtlasView, read_file: ReadFile) -> str:
    """The page of one atlas: preview sheet, facts, credits, versions and structure tree."""
    prefix = "../"
    entry = view.current
    structures = _read_structures(read_file, entry.structures)
    body = (
        f'<header><p><a href="{prefix}index.html">All atlases</a></p>'
        f"<h1>{esc(view.name)}</h1></header>\n<main>"
        f"{_preview_img(view, prefix, lazy=False)}"
        f"<h2>Summary</h2>{facts(_summary_rows(view))}"
        f"{_download(view, prefix)}"
        f"<pre><code>{esc(_python_line(view))}</code></pre>"
        f"<h2>Credits</h2>{credits_html(view.metadata)}"
        f"<h2>Versions</h2>{_versions_table(view, prefix)}"
        f"<h2>Structures</h2>{_tree_section(structures)}"
        "</main><footer><p>Published with atlasmith.</p></footer>"
    )
    return page(f"{view.name}: brain atlas", body, script=_TREE_JS if structures else "")


def _versions_table(view: _AtlasView, prefix: str) -> str:
    """Every version, newest first, as a list of short fact lists (readable on a phone)."""
    items = "".join(
        f'<li><h3 id="v-{esc(e.version)}">Version {esc(e.version)}</h3>'
        + facts(
            [
                ("Status", _status(e)),
                ("Published", esc(e.published)),
                ("Size", esc(human_size(e.size))),
                ("Archive", f'<a href="{_href(e.archive, prefix)}" download>{esc(e.archive)}</a>'),
                ("sha256", f'<code class="hash">{esc(e.sha256)}</code>'),
            ]
        )
        + "</li>"
        for e in view.versions
    )
    return f'<ul class="versions">{items}</ul>'


def _status(entry: IndexEntry) -> str:
    if not entry.yanked:
        return "available"
    return "yanked" + (f": {esc(entry.yank_reason)}" if entry.yank_reason else "")


def _read_structures(read_file: ReadFile, path: str | None) -> list[Mapping[str, Any]] | None:
    data = read_file(path) if path else None
    if data is None:
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    if not isinstance(parsed, list):
        return None
    return [s for s in parsed if _structure_ok(s)]


def _structure_ok(s: object) -> bool:
    if not isinstance(s, Mapping):
        return False
    path = s.get("structure_id_path")
    return isinstance(path, list) and bool(path) and all(isinstance(i, int) for i in path)


def _tree_section(structures: list[Mapping[str, Any]] | None) -> str:
    if structures is None:
        return '<p class="muted">The structure list of this version is not available.</p>'
    finder = (
        '<form class="filter" role="search" onsubmit="return false">'
        '<label for="tree-filter">Find a structure (acronym or name)</label>'
        '<input id="tree-filter" type="search" autocomplete="off" placeholder="e.g. CA1, thalamus">'
        '<p id="tree-count" class="muted" aria-live="polite"></p></form>'
    )
    return (
        f"<p>{len(structures)} structures. Open a branch to see its sub-regions; each "
        "swatch shows the structure's colour.</p>" + finder + structure_tree_html(structures)
    )


def structure_tree_html(structures: Sequence[Mapping[str, Any]], open_depth: int = 1) -> str:
    """A nested list of the structure hierarchy (``<details>`` for branches).

    Built without recursion from each structure's ``structure_id_path``; structures whose
    parent is missing are shown at the top level.
    """
    by_id = {int(s["structure_id_path"][-1]): s for s in structures}
    children: dict[int | None, list[int]] = {}
    for sid, s in by_id.items():
        path = s["structure_id_path"]
        parent = int(path[-2]) if len(path) > 1 and int(path[-2]) in by_id else None
        children.setdefault(parent, []).append(sid)
    out: list[str] = ['<ul class="tree">']
    stack: list[tuple[int, int] | str] = [(sid, 0) for sid in reversed(children.get(None, []))]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        sid, depth = item
        if sid in seen:
            continue
        seen.add(sid)
        kids = [k for k in children.get(sid, []) if k != sid]
        label = _structure_label(by_id[sid])
        if not kids:
            out.append(f"<li>{label}</li>")
            continue
        opened = " open" if depth < open_depth else ""
        out.append(f"<li><details{opened}><summary>{label}</summary><ul>")
        stack.append("</ul></details></li>")
        stack.extend((k, depth + 1) for k in reversed(kids))
    out.append("</ul>")
    return "".join(out)


def _structure_label(s: Mapping[str, Any]) -> str:
    rgb = s.get("rgb_triplet")
    swatch = ""
    if isinstance(rgb, list) and len(rgb) == 3 and all(isinstance(c, int) for c in rgb):
        r, g, b = (max(0, min(255, c)) for c in rgb)
        swatch = (
            f'<span class="swatch" style="background:#{r:02x}{g:02x}{b:02x}" '
            'aria-hidden="true"></span>'
        )
    return (
        f"{swatch}<strong>{esc(s.get('acronym', '?'))}</strong> {esc(s.get('name', ''))} "
        f'<span class="muted">({esc(s["structure_id_path"][-1])})</span>'
    )
