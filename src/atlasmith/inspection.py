"""Inspect an atlas package: figures and one self-contained HTML report.

``atlasmith inspect FOLDER|ARCHIVE|NAME`` calls :func:`inspect_atlas`, which writes into one
output folder:

- ``sections.png``: frontal, sagittal and horizontal sections with the annotation in colour,
  outlines, direction labels from the metadata orientation and slice indices;
- ``meshes.png``: the root and top-level meshes from three directions;
- ``report.html``: metadata and credits, the structure tree summary (structures per level,
  largest regions by volume), the per-structure mesh check (missing, empty, open, unreadable,
  misplaced or extra meshes) and the validation results, with both figures embedded.

The output folder is written in a temporary place and renamed into place, so a failed run
leaves nothing half-written.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from atlasmith._fs import FOLDER_MODE, replace_path, temporary_folder
from atlasmith._html import credits_html, esc, facts, page
from atlasmith._types import ProgressCallback, StepProgress
from atlasmith.errors import AtlasExistsError, AtlasmithError, AtlasNotFoundError, MeshError
from atlasmith.formats import AtlasFiles
from atlasmith.meshes.obj import MeshData, read_obj
from atlasmith.names import ARCHIVE_SUFFIX, is_atlas_name, split_folder_name
from atlasmith.previews import (
    MeshReader,
    load_atlas_files,
    render_mesh_sheet,
    render_section_sheet,
    root_structure,
    top_level_structures,
)
from atlasmith.progress import ignore, ignore_step
from atlasmith.statistics import StructureStats, structure_stats
from atlasmith.validation import ValidationReport, validate_folder

__all__ = [
    "InspectionResult",
    "MeshCheck",
    "check_meshes",
    "inspect_atlas",
    "inspect_folder",
]

MeshStatus = Literal["ok", "missing", "empty", "open", "misplaced", "unreadable", "extra"]
#: Allowed distance between a mesh's bounds and its region's voxel bounds, in voxels.
BOUNDS_TOLERANCE_VOXELS = 2.0
OUTPUT_FILES = ("report.html", "sections.png", "meshes.png")
_STATUSES: tuple[MeshStatus, ...] = (
    "ok",
    "missing",
    "empty",
    "open",
    "misplaced",
    "unreadable",
    "extra",
)
_SECTIONS_ALT = (
    "Section sheet: frontal, sagittal and horizontal sections of the reference with the "
    "annotation in colour, region outlines, direction labels and slice indices"
)
_MESHES_ALT = "Root mesh and top-level region meshes seen from three directions"


@dataclass(frozen=True)
class MeshCheck:
    """The check of one structure's mesh (``status`` "ok" when nothing is wrong)."""

    id: int
    acronym: str
    status: MeshStatus
    detail: str


@dataclass(frozen=True)
class InspectionResult:
    """What :func:`inspect_atlas` wrote and found."""

    out: Path
    report: Path
    sections: Path
    meshes: Path
    mesh_checks: tuple[MeshCheck, ...]
    validation_ok: bool | None

    @property
    def mesh_problems(self) -> tuple[MeshCheck, ...]:
        """The mesh checks that found a problem."""
        return tuple(c for c in self.mesh_checks if c.status != "ok")


# --- resolving FOLDER | ARCHIVE | NAME ---------------------------------------------------------


@contextlib.contextmanager
def atlas_folder(source: str | Path, progress: StepProgress | None = None) -> Iterator[Path]:
    """Yield an atlas folder for a folder, a ``.tar.gz`` archive or an installed atlas name.

    An archive is extracted safely into a temporary folder that is removed afterwards.

    Raises
    ------
    AtlasNotFoundError
        When ``source`` is no folder, archive or installed atlas.
    """
    path = Path(source)
    if path.is_dir():
        yield path
        return
    if path.is_file() and path.name.endswith((ARCHIVE_SUFFIX, ".tgz")):
        from atlasmith.package import safe_extract

        if progress is not None:
            progress(f"extracting {path.name}", 0, 0)
        with tempfile.TemporaryDirectory(prefix="atlasmith-inspect-") as tmp:
            yield safe_extract(path, Path(tmp))
        return
    if not (is_atlas_name(str(source)) or split_folder_name(str(source))):
        raise AtlasNotFoundError(
            f"{source} is not a folder, not a .tar.gz archive and not an atlas name: check "
            "the path."
        )
    yield installed_folder(str(source))


def installed_folder(name: str) -> Path:
    """The cache folder of an installed atlas: ``allen_mouse_25um`` (its newest installed
    version) or ``allen_mouse_25um_v1.2`` (that version)."""
    from atlasmith.cache import AtlasCache

    cache = AtlasCache()
    atlas, version = split_folder_name(name) or (name, None)
    found = [a for a in cache.installed() if a.atlas_name == atlas and version in (None, a.version)]
    if not found:
        raise AtlasNotFoundError(
            f"{name!r} is not a folder, not a .tar.gz archive and not an atlas installed in "
            f"{cache.root}. Give an atlas folder or archive, or install it first with "
            f"`atlasmith install {name}`."
        )
    return found[-1].path  # the newest version


# --- mesh checks -------------------------------------------------------------------------------


def check_meshes(
    atlas: AtlasFiles,
    stats: StructureStats | None = None,
    read: MeshReader = read_obj,
    progress: ProgressCallback | None = None,
) -> list[MeshCheck]:
    """Check the mesh of every structure that has voxels, and flag meshes of no structure.

    A mesh is *missing* (no file), *unreadable*, *empty* (no triangles), *open* (an edge used
    by one triangle only), *misplaced* (it reaches more than :data:`BOUNDS_TOLERANCE_VOXELS`
    voxels beyond the bounding box of the region's voxels, descendants included), or *extra*
    (a mesh for a structure with no voxels or not in the structure list). ``progress(done,
    total)`` is called after each structure of the tree.
    """
    tree = atlas.tree
    stats = stats or structure_stats(atlas.annotation, tree)
    res = np.asarray(atlas.resolution)
    report = progress or ignore
    checks = []
    for i, s in enumerate(tree.structures):
        report(i, len(tree))
        has_voxels = bool(stats.voxels[i])
        file = atlas.mesh_path(s.id)
        if not has_voxels and not file.is_file():
            continue
        bounds = (stats.low[i] * res, stats.high[i] * res) if has_voxels else None
        checks.append(_check_one(s.id, s.acronym, file, bounds, res, read))
    report(len(tree), len(tree))
    strays = [p for sid, p in atlas.mesh_files().items() if sid not in tree]
    strays = sorted([*strays, *atlas.misnamed_mesh_files()])
    checks += [MeshCheck(-1, p.name, "extra", "mesh file of no structure") for p in strays]
    return checks


def _check_one(
    sid: int,
    acronym: str,
    file: Path,
    bounds: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None,
    res: npt.NDArray[np.float64],
    read: MeshReader,
) -> MeshCheck:
    def result(status: MeshStatus, detail: str) -> MeshCheck:
        return MeshCheck(sid, acronym, status, detail)

    if not file.is_file():
        return result("missing", f"no meshes/{file.name}")
    try:
        vertices, faces = read(file)
    except MeshError as err:
        return result("unreadable", str(err))
    if bounds is None:
        return result("extra", "the structure has no voxels in the annotation")
    if len(faces) == 0:
        return result("empty", f"{len(vertices)} vertices, no triangles")
    boundary = open_edges(vertices, faces)
    if boundary:
        return result("open", f"{boundary} boundary edge(s) (used by one triangle only)")
    used = vertices[np.unique(faces)]
    beyond = np.maximum(bounds[0] - used.min(axis=0), used.max(axis=0) - bounds[1]) / res
    worst = float(np.max(beyond))
    if worst > BOUNDS_TOLERANCE_VOXELS + 0.5:  # + half a voxel: surfaces wrap voxel centres
        return result("misplaced", f"extends {worst:.1f} voxels beyond the region's voxels")
    return result("ok", f"{len(faces)} triangles, closed, inside the region's bounds")


def open_edges(vertices: npt.NDArray[np.float64], faces: npt.NDArray[np.int64]) -> int:
    """Number of boundary edges (used by one triangle only): 0 for a closed surface.

    Vertices at the same position are merged first, so files that repeat vertices per face
    are not reported as open.
    """
    _, merged = np.unique(vertices, axis=0, return_inverse=True)
    tri = merged.reshape(-1)[faces]
    edges = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int(np.count_nonzero(counts == 1))


# --- the report --------------------------------------------------------------------------------


def inspect_atlas(
    source: str | Path, out: str | Path | None = None, progress: StepProgress | None = None
) -> InspectionResult:
    """Inspect an atlas folder, archive or installed atlas and write figures and a report.

    Parameters
    ----------
    source : str or Path
        An atlas folder, a ``.tar.gz`` package, or the name of an installed atlas.
    out : str or Path, optional
        Output folder; default ``./<atlas folder name>-inspection``. An existing folder is
        replaced only when it holds nothing but a previous inspection's files.
    progress : callable, optional
        Called as ``progress(step, done, total)`` as the inspection goes (extracting,
        measuring, drawing, checking meshes and validating: the last two count).

    Returns
    -------
    InspectionResult

    Raises
    ------
    AtlasNotFoundError, ArchiveError, AtlasFormatError, MetadataError
        When the source cannot be found or read.
    AtlasExistsError
        When ``out`` exists and holds other files.
    """
    with atlas_folder(source, progress) as folder:
        target = Path(out) if out is not None else Path.cwd() / f"{folder.name}-inspection"
        return inspect_folder(folder, target, progress)


def inspect_folder(
    folder: Path, out: Path, progress: StepProgress | None = None
) -> InspectionResult:
    """Inspect one atlas folder into ``out`` (see :func:`inspect_atlas`)."""
    step = progress or ignore_step
    _check_target(out)
    step("measuring structures", 0, 0)
    atlas = load_atlas_files(folder)
    with temporary_folder(out.parent, f"{out.name}.") as tmp:
        stats = structure_stats(atlas.annotation, atlas.tree)
        read = _caching_reader(atlas)
        step("drawing sections", 0, 0)
        render_section_sheet(atlas, tmp / "sections.png")
        step("drawing meshes", 0, 0)
        render_mesh_sheet(atlas, tmp / "meshes.png", read=read)
        checks = check_meshes(atlas, stats, read, functools.partial(step, "checking meshes"))
        validation = _validate(folder, functools.partial(step, "validating"))
        step("writing the report", 0, 0)
        html = report_html(atlas, stats, checks, validation, tmp)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        tmp.chmod(FOLDER_MODE)
        replace_path(tmp, out)
    ok = None if validation is None else bool(validation.ok)
    return InspectionResult(
        out, out / "report.html", out / "sections.png", out / "meshes.png", tuple(checks), ok
    )


def _caching_reader(atlas: AtlasFiles) -> MeshReader:
    """read_obj that keeps the root and top-level meshes (read by both the sheet and checks)."""
    kept = [root_structure(atlas), *top_level_structures(atlas)]
    keep = {atlas.mesh_path(int(s["id"])) for s in kept}
    store: dict[Path, MeshData] = {}

    def read(path: Path) -> MeshData:
        if path not in keep:
            return read_obj(path)
        if path not in store:
            store[path] = read_obj(path)
        return store[path]

    return read


def _check_target(out: Path) -> None:
    if out.exists() and not (out.is_dir() and all(p.name in OUTPUT_FILES for p in out.iterdir())):
        raise AtlasExistsError(
            f"{out} exists and is not a previous inspection output: choose another --out "
            "folder, or remove it first."
        )


def _validate(folder: Path, progress: ProgressCallback) -> ValidationReport | None:
    try:
        return validate_folder(folder, progress)
    except AtlasmithError:
        return None


def report_html(
    atlas: AtlasFiles,
    stats: StructureStats,
    checks: Sequence[MeshCheck],
    validation: ValidationReport | None,
    figures: Path,
) -> str:
    """The self-contained HTML report (figures embedded as data URIs)."""
    meta = atlas.metadata_dict
    title = f"Inspection of {atlas.path.name}"
    body = (
        f"<header><h1>{esc(title)}</h1><p>{esc(meta.get('species', ''))}, "
        f"{esc(' x '.join(f'{r:g}' for r in atlas.resolution))} \u00b5m, shape "
        f"{esc(' x '.join(str(s) for s in atlas.annotation.shape))}</p>"
        f"{_contents()}</header><main>"
        f'<section aria-labelledby="s-meta"><h2 id="s-meta">Metadata and credits</h2>'
        f"{credits_html(meta)}{_metadata_table(meta)}</section>"
        f'<section aria-labelledby="s-sections"><h2 id="s-sections">Sections</h2>'
        "<p>Check that frontal sections are upright (dorsal at the top) and that the labels "
        "on each panel match the anatomy: labels come from the metadata orientation.</p>"
        f"{_figure(figures / 'sections.png', _SECTIONS_ALT)}"
        "</section>"
        f'<section aria-labelledby="s-meshes"><h2 id="s-meshes">Meshes</h2>'
        f"{_figure(figures / 'meshes.png', _MESHES_ALT)}"
        f"{_mesh_table(checks)}</section>"
        f'<section aria-labelledby="s-tree"><h2 id="s-tree">Structure tree</h2>'
        f"{_tree_summary(atlas, stats)}</section>"
        f'<section aria-labelledby="s-valid"><h2 id="s-valid">Validation</h2>'
        f"{_validation_html(validation)}</section></main>"
    )
    return page(title, body)


def _contents() -> str:
    links = [
        ("s-meta", "Metadata"),
        ("s-sections", "Sections"),
        ("s-meshes", "Meshes"),
        ("s-tree", "Structure tree"),
        ("s-valid", "Validation"),
    ]
    items = "".join(f'<li><a href="#{k}">{esc(v)}</a></li>' for k, v in links)
    return f'<nav aria-label="Contents"><ul>{items}</ul></nav>'


def _figure(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
        f"<figcaption>{esc(path.name)}</figcaption></figure>"
    )


def _metadata_table(meta: Mapping[str, Any]) -> str:
    rows = [(str(k), esc(_short(v))) for k, v in meta.items()]
    return f"<h3>metadata.json</h3>{facts(rows)}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 400 else text[:400] + "\u2026"


def _mesh_table(checks: Sequence[MeshCheck]) -> str:
    problems = sorted(
        (c for c in checks if c.status != "ok"),
        key=lambda c: (c.status == "missing", c.status, c.acronym),
    )
    counts = {status: sum(c.status == status for c in checks) for status in _STATUSES}
    summary = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in counts.items() if v)
    table = (
        f'<div class="table-wrap"><table><caption>Mesh checks ({len(checks)} meshes)'
        '</caption><thead><tr><th scope="col">status</th><th scope="col">meshes</th></tr>'
        f"</thead><tbody>{summary}</tbody></table></div>"
    )
    if not problems:
        return table
    rows = "".join(
        f"<tr><td>{esc(c.id if c.id >= 0 else '')}</td><td>{esc(c.acronym)}</td>"
        f'<td class="bad">{esc(c.status)}</td><td>{esc(c.detail)}</td></tr>'
        for c in problems
    )
    head = (
        '<tr><th scope="col">id</th><th scope="col">acronym</th>'
        '<th scope="col">problem</th><th scope="col">detail</th></tr>'
    )
    opened = " open" if len(problems) <= 30 else ""
    return (
        f"{table}<details{opened}><summary>{len(problems)} mesh(es) with a problem"
        f'</summary><div class="table-wrap"><table><thead>{head}</thead><tbody>{rows}'
        "</tbody></table></div></details>"
    )


def _tree_summary(atlas: AtlasFiles, stats: StructureStats) -> str:
    depths = atlas.tree.depths[1:]
    present = stats.voxels > 0
    levels = "".join(
        f"<tr><td>{d}</td><td>{int(np.sum(depths == d))}</td>"
        f"<td>{int(np.sum(present & (depths == d)))}</td></tr>"
        for d in range(int(depths.max()) + 1)
    )
    level_table = (
        '<div class="table-wrap"><table><caption>Structures per level (root = 0)</caption>'
        '<thead><tr><th scope="col">level</th><th scope="col">structures</th>'
        f'<th scope="col">with voxels</th></tr></thead><tbody>{levels}</tbody></table></div>'
    )
    unknown = (
        f'<p class="bad">Annotation labels without a structure: '
        f"{esc(', '.join(map(str, stats.unknown_labels[:20])))}</p>"
        if stats.unknown_labels
        else ""
    )
    return (
        f"<p>{len(atlas.tree)} structures, {int(present.sum())} with voxels.</p>"
        f"{level_table}{_largest_table(atlas, stats, depths)}{unknown}"
    )


def _largest_table(
    atlas: AtlasFiles, stats: StructureStats, depths: npt.NDArray[np.int64], count: int = 15
) -> str:
    voxel_mm3 = float(np.prod(atlas.resolution)) / 1e9
    candidates = np.flatnonzero(depths > 0)
    largest = candidates[np.argsort(-stats.voxels[candidates], kind="stable")][:count]
    rows = "".join(
        f"<tr><td>{esc(atlas.tree.structures[i].acronym)}</td>"
        f"<td>{esc(atlas.tree.structures[i].name)}</td><td>{int(depths[i])}</td>"
        f"<td>{stats.voxels[i] * voxel_mm3:.2f}</td></tr>"
        for i in largest
    )
    return (
        '<div class="table-wrap"><table><caption>Largest regions (descendants included)'
        '</caption><thead><tr><th scope="col">acronym</th><th scope="col">name</th>'
        '<th scope="col">level</th><th scope="col">volume (mm\u00b3)</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _validation_html(report: ValidationReport | None) -> str:
    if report is None:
        return "<p>Validation could not run on this folder.</p>"
    rows = "".join(
        f'<tr><td>{esc(r.name)}</td><td class="{"ok" if r.ok else "bad"}">'
        f"{'pass' if r.ok else 'FAIL'}</td><td>{esc(r.message)}</td></tr>"
        for r in report.results
    )
    verdict = "All checks passed." if report.ok else f"{len(report.failures)} check(s) failed."
    return (
        f'<p>{esc(verdict)}</p><div class="table-wrap"><table><thead><tr>'
        '<th scope="col">check</th><th scope="col">result</th><th scope="col">message'
        f"</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
