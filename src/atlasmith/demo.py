"""The main job, end to end, on the bundled real Allen 100 um atlas.

build the bundled atlas script -> publish the archive to a local repository -> serve that
repository over HTTP on loopback -> fetch the atlas through the client into a fresh cache ->
query it -> print a summary with the credits. Every step is the real one that users run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atlasmith.errors import ScriptError

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


def run_demo(workdir: Path, log: Callable[[str], None] = print) -> DemoResult:
    """Run build -> publish -> serve -> fetch -> query in ``workdir``; return what was made.

    Parameters
    ----------
    workdir : Path
        An empty or new folder: it receives ``build/``, ``repository/`` and ``cache/``.
    log : callable
        Receives one line per step.
    """
    from atlasmith.build import build_atlas
    from atlasmith.cache import fetch
    from atlasmith.example import query_report
    from atlasmith.repository import open_repository
    from atlasmith.server import serve_in_thread

    workdir = Path(workdir)
    log(f"atlasmith main job in {workdir}")
    with _timed(log, "built the bundled allen_mouse script at 100 um"):
        built = build_atlas(bundled_script(), out_dir=workdir / "build")
    archive, sha256 = built.archive, built.sha256
    if archive is None or sha256 is None:  # only the compat layer builds without an archive
        raise ScriptError(f"The build of {bundled_script()} made no archive.")
    log(f"    {archive.name}  sha256 {sha256}")
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
