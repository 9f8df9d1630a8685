"""Piece-by-piece download of a BrainGlobe 3 atlas: atlasmith's client against the whole v1.2
archive and against BrainGlobe 3.0.2's own client, same server, one run.

The atlas is Allen 25 um with meshes (``atlasmith build atlas_scripts/allen_mouse.py
--resolution 25`` from ../shared/data), published to a repository folder and served by
``atlasmith serve`` on loopback (in its own process, behind a counter of requests and body
bytes). Each client starts from an empty cache and does, in order, measuring the bytes the
server sent and the wall time of each step:

1. open the atlas + look up one point (``structure_from_coords``);
2. + read the whole annotation;
3. + one mesh (CH);
4. + one structure mask (CH).

BrainGlobe 3.0.2 reads the whole annotation at its first lookup, so in that order its
"+ annotation" step finds it read already. The annotation as a piece of its own is then
measured in a second pair of runs, each client from an empty cache again: open the atlas
(no lookup), + read the whole annotation, + look up the point.

atlasmith: ``fetch(name, lazy=True)``. BrainGlobe 3.0.2 (its own venv, ``.venv-bg3``):
``BrainGlobeAtlas(name)`` after ``atlasmith.compat.use_repository(url)`` (atlasmith's source on
its path for that one helper). The archive: one GET of ``<name>_v1.2.tar.gz``.

Usage: python benchmarks/bench_v3_remote.py [--out bench-out/v3-remote] [--bg3-venv .venv-bg3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from baseline import ensure_bg3_venv, log

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "atlas_scripts" / "allen_mouse.py"
SHARED_DATA = REPO.parent / "shared" / "data"
NAME = "allen_mouse_25um"
POINT = (264, 160, 228)
#: (step, seconds, responses, body bytes, the requests)
Row = tuple[str, float, int, int, list[str]]

# Each client runs in a fresh interpreter; the import of the library is a step of its own.
STEPS = r"""
marks.append(("import", time.time()))
atlas = OPEN
atlas.structure_from_coords(point)
marks.append(("open + first lookup", time.time()))
np.asarray(atlas.annotation).sum()
marks.append(("+ annotation", time.time()))
atlas.mesh_from_structure("CH")
marks.append(("+ one mesh (CH)", time.time()))
atlas.get_structure_mask("CH")
marks.append(("+ one mask (CH)", time.time()))
print(json.dumps(marks))
"""
#: The second order: the annotation read before any lookup (a piece for both clients).
ANNOTATION_FIRST = r"""
marks.append(("import", time.time()))
atlas = OPEN
marks.append(("open", time.time()))
np.asarray(atlas.annotation).sum()
marks.append(("+ annotation", time.time()))
atlas.structure_from_coords(point)
marks.append(("+ first lookup", time.time()))
print(json.dumps(marks))
"""
PROLOGUE = r"""
import json, sys, time
import numpy as np
url, name, folder, point = sys.argv[1], sys.argv[2], sys.argv[3], tuple(json.loads(sys.argv[4]))
"""
OURS_OPEN = r"""
marks = [("start", time.time())]
from atlasmith import fetch
"""
BG3_OPEN = r"""
marks = [("start", time.time())]
from brainglobe_atlasapi import BrainGlobeAtlas
from atlasmith.compat import use_repository  # the one-call helper (atlasmith's source)
use_repository(url)
"""


def ours(steps: str) -> str:
    """atlasmith's client doing ``steps``."""
    opening = "fetch(name, repository=url, cache_dir=folder, lazy=True)"
    return PROLOGUE + OURS_OPEN + steps.replace("OPEN", opening)


def bg3(steps: str) -> str:
    """BrainGlobe 3.0.2's client doing ``steps``."""
    opening = "BrainGlobeAtlas(name, brainglobe_dir=folder, check_latest=False)"
    return PROLOGUE + BG3_OPEN + steps.replace("OPEN", opening)


class Counter:
    """ASGI middleware: writes when each response started and the body bytes sent when, a
    line each, to a log that :class:`Traffic` reads (the server runs in its own process, so
    that it takes no CPU from the client being measured)."""

    def __init__(self, app: Any, log: Path) -> None:
        self.app = app
        self.log = open(log, "a", buffering=1)  # noqa: SIM115 (open for the server's life)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.log.write(f"{time.time()} 1 0 {scope['method']} {scope['path']}\n")
            elif message["type"] == "http.response.body":
                self.log.write(f"{time.time()} 0 {len(message.get('body', b''))} - -\n")
            await send(message)

        await self.app(scope, receive, counting)


class Traffic:
    """What the server's :class:`Counter` logged."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def _events(self, start: float, end: float) -> list[list[str]]:
        rows = [line.split(" ", 4) for line in self.log.read_text().splitlines()]
        return [row for row in rows if start <= float(row[0]) < end]

    def requests(self, start: float, end: float) -> list[str]:
        """The requests answered in [start, end), as 'METHOD path'."""
        return [f"{r[3]} {r[4]}" for r in self._events(start, end) if r[1] == "1"]

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(responses, body bytes) sent in [start, end)."""
        events = self._events(start, end)
        return sum(int(r[1]) for r in events), sum(int(r[2]) for r in events)


def run_server(repository: Path, log: Path) -> None:
    """The server process: ``atlasmith serve``'s app behind a :class:`Counter`; prints its
    port, then serves until killed."""
    from atlasmith.repository import LocalRepository
    from atlasmith.server import make_app, serve_app_in_thread

    with serve_app_in_thread(Counter(make_app(LocalRepository(repository)), log)) as url:
        print(url.rsplit(":", 1)[1], flush=True)
        threading.Event().wait()


def serve(repository: Path, log: Path) -> tuple[str, Traffic, subprocess.Popen[str]]:
    log.write_text("")
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(repository), str(log)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    if not port:
        raise SystemExit("the server did not start")
    return f"http://127.0.0.1:{port}", Traffic(log), process


def prepare(out: Path) -> Path:
    """Build Allen 25 um (v1.2) and publish it (with its v3 copy); reused when present."""
    repository = out / "repository"
    if (repository / "index.json").is_file():
        return repository
    build = out / "build"
    if not (build / f"{NAME}_v1.2.tar.gz").is_file():
        log("building allen_mouse 25 um (v1.2)")
        subprocess.run(
            [sys.executable, "-m", "atlasmith", "build", str(SCRIPT), "--out", str(build),
             "--resolution", "25", "--source-dir", str(SHARED_DATA), "--format", "v1"],
            check=True, stdout=sys.stderr,
        )  # fmt: skip
    log("publishing it (the repository writes the BrainGlobe 3 copy)")
    from atlasmith.repository import LocalRepository

    LocalRepository(repository).publish(build / f"{NAME}_v1.2.tar.gz")
    return repository


def client(python: Path, script: str, url: str, counter: Traffic, label: str) -> list[Row]:
    """Run one client from an empty cache (and home); its steps with the traffic of each."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    with tempfile.TemporaryDirectory() as folder:
        env.update(HOME=folder, BRAINGLOBE_CONFIG_DIR=f"{folder}/config")
        run = subprocess.run(
            [str(python), "-c", script, url, NAME, f"{folder}/cache", json.dumps(POINT)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"{label}'s client failed:\n{run.stderr[-3000:]}")
    marks = json.loads(run.stdout.strip().splitlines()[-1])
    rows = []
    for (_, previous), (step, when) in zip(marks, marks[1:], strict=False):
        requests, sent = counter.between(previous, when)
        rows.append((step, when - previous, requests, sent, counter.requests(previous, when)))
    return rows


def archive(url: str, counter: Traffic, out: Path) -> tuple[float, int, int]:
    import httpx

    start = time.time()
    with httpx.stream("GET", f"{url}/{NAME}_v1.2.tar.gz", timeout=600) as response:
        response.raise_for_status()
        with open(out / "archive.download", "wb") as target:
            for block in response.iter_bytes(1 << 20):
                target.write(block)
    end = time.time()
    (out / "archive.download").unlink()
    requests, sent = counter.between(start, end + 0.01)
    return end - start, requests, sent


def table(mine: list[Row], theirs: list[Row]) -> None:
    """The two clients' steps side by side, milliseconds, MB and requests, with totals."""
    print(f"| {'step':<22} | {'atlasmith: ms':>13} | {'MB':>8} | {'req':>5} "
          f"| {'BrainGlobe 3.0.2: ms':>20} | {'MB':>8} | {'req':>5} |")  # fmt: skip
    total = ("total", sum(r[1] for r in mine), sum(r[2] for r in mine), sum(r[3] for r in mine))
    other = ("", sum(r[1] for r in theirs), sum(r[2] for r in theirs), sum(r[3] for r in theirs))
    rows = [(a[:4], b[:4]) for a, b in zip(mine, theirs, strict=True)] + [(total, other)]
    for (label, t1, r1, b1), (_, t2, r2, b2) in rows:
        print(f"| {label:<22} | {t1 * 1e3:>13.0f} | {b1 / 1e6:>8.3f} | {r1:>5} "
              f"| {t2 * 1e3:>20.0f} | {b2 / 1e6:>8.3f} | {r2:>5} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "v3-remote")
    parser.add_argument("--bg3-venv", type=Path, default=REPO / ".venv-bg3")
    parser.add_argument("--requests", action="store_true", help="list each step's requests")
    parser.add_argument("--serve", nargs=2, type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve:
        run_server(*opts.serve)
        return
    opts.out.mkdir(parents=True, exist_ok=True)
    bg3_python = ensure_bg3_venv(opts.bg3_venv)
    repository = prepare(opts.out)
    url, counter, server = serve(repository, opts.out / "traffic.log")
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()}")
    try:
        mine = client(Path(sys.executable), ours(STEPS), url, counter, "atlasmith")
        theirs = client(bg3_python, bg3(STEPS), url, counter, "BrainGlobe 3.0.2")
        whole = archive(url, counter, opts.out)
        mine_first = client(Path(sys.executable), ours(ANNOTATION_FIRST), url, counter, "atlasmith")
        theirs_first = client(bg3_python, bg3(ANNOTATION_FIRST), url, counter, "BrainGlobe 3.0.2")
    finally:
        server.terminate()
        server.wait()
    print(f"load average after {os.getloadavg()}")
    print(f"\n{NAME} from atlasmith serve on loopback, each client from an empty cache")
    table(mine, theirs)
    print("\nThe annotation before any lookup (each client from an empty cache again)")
    table(mine_first, theirs_first)
    if opts.requests:
        for who, rows in (("atlasmith", mine), ("BrainGlobe 3.0.2", theirs)):
            for label, *_, paths in rows:
                print(f"\n{who}, {label}:", *sorted(paths), sep="\n  ")
    seconds, requests, sent = whole
    print(f"\nwhole v1.2 archive: {seconds:.2f} s, {sent / 1e6:.1f} MB, {requests} request(s)")
    first = sum(row[3] for row in mine[:2])
    print(f"open + first lookup needs {sent / max(first, 1):.0f}x fewer bytes than the archive "
          f"({first / 1e6:.3f} MB against {sent / 1e6:.1f} MB)")  # fmt: skip


if __name__ == "__main__":
    main()
