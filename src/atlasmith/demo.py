"""The main job, end to end, on the bundled real Allen 100 um atlas, and the bundled example.

build the bundled atlas script -> publish the archive to a local repository -> serve that
repository over HTTP on loopback -> fetch the atlas through the client into a fresh cache ->
query it -> print a summary with the credits. Every step is the real one that users run.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atlasmith.errors import AtlasExistsError, AtlasFormatError, ScriptError

if TYPE_CHECKING:  # pragma: no cover
    from atlasmith.atlas import Atlas

ATLAS = "allen_mouse_100um"


@dataclass(frozen=True)
class DemoResult:
    """What the main job made, and where."""

    archive: Path
    sha256: str
    repository: Path
    url: str
    installed: Path
    report: str


def bundled_script() -> Path:
    """The bundled ``allen_mouse`` atlas script of the source checkout."""
    script = Path(__file__).resolve().parents[2] / "atlas_scripts" / "allen_mouse.py"
    if not script.is_file():
        raise ScriptError(
            f"The bundled atlas script is not at {script}: it ships with the source checkout. "
            "Clone the atlasmith repository and install it with `pip install -e .`."
        )
    return script


@contextmanager
def _timed(log: Callable[[str], None], label: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    log(f"  {label} ({time.perf_counter() - start:.1f} s)")


#: Marks a folder as the demo's own, so that running the demo again there replaces it.
MARKER = ".atlasmith-demo"
_PARTS = ("build", "repository", "cache")


def _prepare(workdir: Path, log: Callable[[str], None]) -> None:
    """Make ``workdir`` ready: new, empty, or a previous demo's (whose results are replaced;
    any other content is refused before anything is touched)."""
    workdir.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in workdir.iterdir())
    if (workdir / MARKER).is_file():
        others = [name for name in present if name not in (MARKER, *_PARTS)]
        if others:
            raise AtlasExistsError(
                f"{workdir} holds a previous demo and other files ({', '.join(others[:3])}): "
                "move them away, or give --workdir a new folder."
            )
        log(f"replacing the previous demo in {workdir}")
        for part in _PARTS:
            shutil.rmtree(workdir / part, ignore_errors=True)
    elif present:
        raise AtlasExistsError(
            f"{workdir} is not empty and was not made by `atlasmith demo` (it holds "
            f"{', '.join(present[:3])}): give --workdir a new or empty folder."
        )
    (workdir / MARKER).write_text("made by `atlasmith demo`: running it again here replaces it\n")


def _step_logger(log: Callable[[str], None]) -> Callable[[str, int, int], None]:
    """A build progress callback that logs each step once, and the meshes every 25 %."""
    shown: dict[str, int] = {}

    def step(label: str, done: int, total: int) -> None:
        quarter = 4 * done // total if total else 0
        if shown.get(label) == quarter:
            return
        shown[label] = quarter
        log(f"    {label}" + (f" {done}/{total}" if total else ""))

    return step


def run_demo(workdir: Path, log: Callable[[str], None] = print) -> DemoResult:
    """Run build -> publish -> serve -> fetch -> query in ``workdir``; return what was made.

    Parameters
    ----------
    workdir : Path
        A new or empty folder, or one where the demo ran before (its results are
        replaced): it receives ``build/``, ``repository/`` and ``cache/``.
    log : callable
        Receives one line per step.
    """
    from atlasmith.brainglobe import fetch
    from atlasmith.build import build_atlas
    from atlasmith.repository import open_repository
    from atlasmith.server import serve_in_thread

    workdir = Path(workdir)
    _prepare(workdir, log)
    log(f"atlasmith main job in {workdir}")
    with _timed(log, "built the bundled allen_mouse script at 100 um"):
        built = build_atlas(bundled_script(), out_dir=workdir / "build", progress=_step_logger(log))
    archive, sha256 = built.archive, built.sha256
    if archive is None or sha256 is None:  # only the compat layer builds without an archive
        raise ScriptError(f"The build of {bundled_script()} made no archive.")
    log(f"    {archive.name}  sha256 {sha256}")
    if built.v3_manifest is not None:
        log(f"    BrainGlobe 3: {built.v3_manifest.relative_to(workdir / 'build')}")
    repository = workdir / "repository"
    with _timed(log, f"published it to the repository {repository}"):
        open_repository(repository).publish(archive)
    with serve_in_thread(repository) as url:
        log(f"  serving the repository at {url}")
        with _timed(log, "fetched it through the client into a fresh cache"):
            atlas = fetch(ATLAS, repository=url, cache_dir=workdir / "cache")
    log(f"    installed at {atlas.root_dir}")
    report = query_report(atlas)
    return DemoResult(archive, sha256, repository, url, atlas.root_dir, report)


# --- the bundled example (data/allen_mouse_100um) -------------------------------------

EXAMPLE_NAME = "allen_mouse_100um_v1.2"


def bundled_data_dir() -> Path:
    """Folder of the bundled example data (present in a source checkout)."""
    folder = Path(__file__).resolve().parents[2] / "data" / "allen_mouse_100um"
    if not (folder / "reference.tiff").is_file():
        raise AtlasFormatError(
            f"The bundled example data is not at {folder}: it ships with the source checkout. "
            "Clone the atlasmith repository and install it with `pip install -e .`."
        )
    return folder


def write_example_atlas(parent: Path) -> Path:
    """Write the bundled example as a BrainGlobe v1.2 atlas folder under ``parent``.

    The reference, structures, metadata and three meshes are BrainGlobe's own files; the
    annotation is Allen's official 25 um annotation subsampled to 100 um, written as an
    uncompressed uint32 TIFF. Returns the folder ``parent/allen_mouse_100um_v1.2``.
    """
    import nrrd
    import numpy as np

    from atlasmith.formats import (
        MESHES,
        METADATA,
        README,
        STRUCTURES,
        STRUCTURES_CSV,
        V1Folder,
        stack_file,
        write_stack,
    )

    source = bundled_data_dir()
    folder = Path(parent) / EXAMPLE_NAME
    folder.mkdir(parents=True)
    for name in (stack_file("reference"), STRUCTURES, STRUCTURES_CSV, METADATA, README):
        shutil.copyfile(source / name, folder / name)
    shutil.copytree(source / MESHES, folder / MESHES)
    annotation, _ = nrrd.read(str(source / "annotation_100um.nrrd"))
    write_stack(folder / stack_file("annotation"), annotation.astype(np.uint32))
    shape = V1Folder(folder).metadata.shape
    if annotation.shape != shape:
        raise AtlasFormatError(f"bundled annotation has shape {annotation.shape}, expected {shape}")
    return folder


def query_report(atlas: Atlas) -> str:
    """Run a few real queries on an Allen mouse atlas and return a report with its credits.

    A point in micrometres (its structure, ancestors and hemisphere), 10,000 random points in
    one vectorised call at hierarchy level 2, and the size of CH (Cerebrum) with its
    descendants.
    """
    import numpy as np

    point_um = (6600.0, 4000.0, 5700.0)
    acronym = atlas.structure_from_coords(point_um, microns=True, as_acronym=True)
    ancestors = " > ".join(atlas.get_structure_ancestors(acronym))
    hemisphere = atlas.hemisphere_from_coords(point_um, microns=True, as_string=True)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, atlas.shape_um, size=(10_000, 3))
    top = atlas.structure_from_coords(points, microns=True, as_acronym=True, hierarchy_lev=2)
    names, counts = np.unique(top, return_counts=True)
    ranked = sorted(zip(names, counts, strict=True), key=lambda x: -x[1])
    spread = ", ".join(f"{n} {c}" for n, c in ranked)
    stats = atlas.structure_statistics().loc[atlas.structures["CH"]["id"]]
    return "\n".join(
        [
            str(atlas),
            "",
            f"point {point_um} um -> {acronym} ({atlas.structures[acronym]['name']}), "
            f"{hemisphere} hemisphere",
            f"  ancestors: {ancestors}",
            f"10,000 random points at hierarchy level 2: {spread}",
            f"CH (Cerebrum) with its descendants: {int(stats['voxels']):,} voxels, "
            f"{stats['volume_mm3']:.1f} mm3, centroid "
            f"({stats['centroid_um_0']:.0f}, {stats['centroid_um_1']:.0f}, "
            f"{stats['centroid_um_2']:.0f}) um",
        ]
    )
