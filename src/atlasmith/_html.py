"""The HTML that atlasmith's pages share (the repository site and the inspection report):
one stylesheet, a self-contained page, escaping, safe links and small formatters.

Every value from an index or an atlas is escaped: atlas metadata is untrusted input.
"""

from __future__ import annotations

import html
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "credits_html",
    "esc",
    "external_link",
    "facts",
    "human_size",
    "linkify",
    "page",
    "png_size",
]

_URL_RE = re.compile(r"https?://[^\s<>\"'()\[\]{}]+[^\s<>\"'()\[\]{}.,;:!?]")
_DOI_RE = re.compile(r"\bdoi:\s*(10\.\d{4,9}/[^\s<>\"']+[^\s<>\"'.,;:!?)])", re.IGNORECASE)

CSS = """
:root { color-scheme: light; --fg: #1b1f24; --muted: #4b5563; --link: #0b57a4;
  --border: #d0d7de; --soft: #f3f5f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: #fff; }
header, main, footer { max-width: 72rem; margin: 0 auto; padding: 0.75rem 1rem; }
header { border-bottom: 1px solid var(--border); }
footer { color: var(--muted); font-size: 0.875rem; }
h1 { font-size: 1.6rem; margin: 0.25rem 0; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 0 0 0.5rem; overflow-wrap: anywhere; }
h3 { font-size: 1.05rem; margin: 1rem 0 0.25rem; }
a { color: var(--link); }
a:focus-visible, input:focus-visible, summary:focus-visible { outline: 3px solid #b45309;
  outline-offset: 2px; }
img { max-width: 100%; height: auto; display: block; }
[hidden] { display: none !important; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 0.85rem; overflow-wrap: anywhere; }
pre { background: var(--soft); padding: 0.5rem 0.75rem; border-radius: 6px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.hash { overflow-wrap: anywhere; word-break: break-all; }
.muted { color: var(--muted); }
.atlases { list-style: none; padding: 0; margin: 1rem 0; display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 24rem), 1fr)); }
.atlases > li { min-width: 0; }
article.card { border: 1px solid var(--border); border-radius: 8px; padding: 1rem;
  height: 100%; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr);
  gap: 0.15rem 0.75rem; margin: 0.75rem 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
@media (max-width: 30rem) {
  dl.facts { grid-template-columns: minmax(0, 1fr); }
  dl.facts dd { margin: 0 0 0.35rem; }
}
.download { display: inline-block; padding: 0.4rem 0.8rem; border-radius: 6px;
  background: #0b57a4; color: #fff; text-decoration: none; font-weight: 600; }
.download:hover { background: #094a8c; }
.filter label { display: block; font-weight: 600; margin-bottom: 0.25rem; }
.filter input { width: 100%; max-width: 28rem; font-size: 1rem; padding: 0.45rem 0.6rem;
  border: 1px solid #6b7280; border-radius: 6px; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--border);
  vertical-align: top; overflow-wrap: break-word; }
.versions { list-style: none; padding: 0; margin: 0; }
.versions > li { border-top: 1px solid var(--border); }
.tree, .tree ul { list-style: none; padding-left: 1.1rem; margin: 0; }
.tree { padding-left: 0; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; border: 1px solid #555;
  vertical-align: -0.1rem; margin-right: 0.3rem; }
.ok { color: #166534; } .bad { color: #991b1b; font-weight: 600; }
"""


def esc(value: object) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, script: str = "", lang: str = "en") -> str:
    """A complete, self-contained HTML page (``title`` is escaped, ``body`` is trusted HTML).

    >>> "<title>a &lt;b&gt;</title>" in page("a <b>", "<main></main>")
    True
    """
    tail = f"<script>{script}</script>\n" if script else ""
    return (
        f'<!doctype html>\n<html lang="{esc(lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n{tail}"
        "</body>\n</html>\n"
    )


def external_link(url: object, text: object | None = None) -> str:
    """A link to an http(s) URL, or the escaped text when the URL is anything else."""
    value = str(url or "").strip()
    label = esc(value if text is None else text)
    if not re.match(r"^https?://[^\s<>\"']+$", value):
        return label
    return f'<a href="{esc(value)}" rel="noopener noreferrer">{label}</a>'


def linkify(text: object) -> str:
    """Escape ``text`` and turn its http(s) URLs and ``doi:`` references into links.

    >>> linkify("doi:10.1038/n1 <b>")
    '<a href="https://doi.org/10.1038/n1" rel="noopener noreferrer">doi:10.1038/n1</a> &lt;b&gt;'
    """
    source = str(text or "")
    pattern = re.compile(f"{_URL_RE.pattern}|{_DOI_RE.pattern}", re.IGNORECASE)
    out, last = [], 0
    for match in pattern.finditer(source):
        out.append(esc(source[last : match.start()]))
        doi = match.group(1)
        url = f"https://doi.org/{doi}" if doi else match.group(0)
        out.append(external_link(url, match.group(0)))
        last = match.end()
    out.append(esc(source[last:]))
    return "".join(out)


def credits_html(metadata: Mapping[str, Any]) -> str:
    """Citation (with links), atlas website, packager and licence as a definition list."""
    rows = [("Citation", linkify(metadata.get("citation", "")))]
    link = metadata.get("atlas_link")
    if link:
        rows.append(("Atlas website", external_link(link)))
    rows.append(("Packaged by", esc(metadata.get("atlas_packager") or "not recorded")))
    if metadata.get("license"):
        rows.append(("Licence", linkify(metadata["license"])))
    return facts(rows)


def facts(rows: Iterable[tuple[str, str]]) -> str:
    """A ``<dl>`` of (escaped label, trusted HTML value) rows."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'


def human_size(size: int | None) -> str:
    """Bytes as a short human-readable size ("unknown size" for None).

    >>> human_size(3_456_789)
    '3.5 MB'
    """
    if size is None:
        return "unknown size"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG from its header, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
