"""Piece-by-piece download of a BrainGlobe 3 atlas: atlasmith's client against the whole v1.2
archive and against BrainGlobe 3.0.2's own client, same server, one run.

The atlas is Allen 25 um with meshes (``atlasmith build atlas_scripts/allen_mouse.py
--resolution 25`` from ../shared/data), published to a repository folder and served by
``atlasmith serve`` on loopback (in this process, behind a counter of requests and body bytes).
Each client starts from an empty cache and does, in order, measuring the bytes the server sent
and the wall time of each step:

1. open the atlas + look up one point (``structure_from_coords``);
2. + read the whole annotation;
3. + one mesh (CH);
4. + one structure mask (CH).

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

BG3_CLIENT = r"""
import json, sys, time
import numpy as np
url, name, folder, point = sys.argv[1], sys.argv[2], sys.argv[3], tuple(json.loads(sys.argv[4]))
from atlasmith.compat import use_repository
use_repository(url)
from brainglobe_atlasapi import BrainGlobeAtlas
marks = [("start", time.time())]
atlas = BrainGlobeAtlas(name, brainglobe_dir=folder, check_latest=False)
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


class Counter:
    """ASGI middleware: when each response started, and the body bytes sent when."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.events: list[tuple[float, int, int]] = []  # (time, responses, bytes)
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting(message: Any) -> None:
            event = None
            if message["type"] == "http.response.start":
                event = (time.time(), 1, 0)
            elif message["type"] == "http.response.body":
                event = (time.time(), 0, len(message.get("body", b"")))
            if event is not None:
                with self.lock:
                    self.events.append(event)
            await send(message)

        await self.app(scope, receive, counting)

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(responses, body bytes) sent in [start, end)."""
        with self.lock:
            inside = [(r, n) for t, r, n in self.events if start <= t < end]
        return sum(r for r, _ in inside), sum(n for _, n in inside)


def serve(repository: Path) -> tuple[str, Counter, Any]:
    import uvicorn

    from atlasmith.repository import LocalRepository
    from atlasmith.server import make_app

    counter = Counter(make_app(LocalRepository(repository)))
    config = uvicorn.Config(counter, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", counter, server


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


def ours(url: str, counter: Counter) -> list[tuple[str, float, int, int]]:
    import numpy as np

    from atlasmith import fetch

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        start = time.time()
        atlas = fetch(NAME, repository=url, cache_dir=cache, lazy=True)
        atlas.structure_from_coords(POINT)
        steps = [("open + first lookup", time.time())]
        np.asarray(atlas.annotation).sum()
        steps.append(("+ annotation", time.time()))
        atlas.mesh_from_structure("CH")
        steps.append(("+ one mesh (CH)", time.time()))
        atlas.get_structure_mask("CH")
        steps.append(("+ one mask (CH)", time.time()))
    previous = start
    for label, when in steps:
        requests, sent = counter.between(previous, when + 0.01)
        rows.append((label, when - previous, requests, sent))
        previous = when + 0.01
    return rows


def brainglobe(python: Path, url: str, counter: Counter) -> list[tuple[str, float, int, int]]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    with tempfile.TemporaryDirectory() as folder:
        env.update(HOME=folder, BRAINGLOBE_CONFIG_DIR=f"{folder}/config")
        run = subprocess.run(
            [str(python), "-c", BG3_CLIENT, url, NAME, f"{folder}/bg", json.dumps(POINT)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"BrainGlobe 3.0.2's client failed:\n{run.stderr[-3000:]}")
    marks = json.loads(run.stdout.strip().splitlines()[-1])
    rows = []
    for (_, previous), (label, when) in zip(marks, marks[1:], strict=False):
        requests, sent = counter.between(previous, when + 0.01)
        rows.append((label, when - previous, requests, sent))
    return rows


def archive(url: str, counter: Counter, out: Path) -> tuple[float, int, int]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "v3-remote")
    parser.add_argument("--bg3-venv", type=Path, default=REPO / ".venv-bg3")
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    bg3 = ensure_bg3_venv(opts.bg3_venv)
    repository = prepare(opts.out)
    url, counter, server = serve(repository)
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()}")
    try:
        mine = ours(url, counter)
        theirs = brainglobe(bg3, url, counter)
        whole = archive(url, counter, opts.out)
    finally:
        server.should_exit = True
    print(f"load average after {os.getloadavg()}")
    print(f"\n{NAME} from atlasmith serve on loopback, each client from an empty cache")
    print(f"| {'step':<22} | {'atlasmith: s':>12} | {'MB':>8} | {'req':>5} "
          f"| {'BrainGlobe 3.0.2: s':>19} | {'MB':>8} | {'req':>5} |")  # fmt: skip
    for (label, t1, r1, b1), (_, t2, r2, b2) in zip(mine, theirs, strict=True):
        print(f"| {label:<22} | {t1:>12.2f} | {b1 / 1e6:>8.3f} | {r1:>5} "
              f"| {t2:>19.2f} | {b2 / 1e6:>8.3f} | {r2:>5} |")  # fmt: skip
    seconds, requests, sent = whole
    print(f"\nwhole v1.2 archive: {seconds:.2f} s, {sent / 1e6:.1f} MB, {requests} request(s)")
    first = mine[0][3]
    print(f"open + first lookup needs {sent / max(first, 1):.0f}x fewer bytes than the archive "
          f"({first / 1e6:.3f} MB against {sent / 1e6:.1f} MB)")  # fmt: skip


if __name__ == "__main__":
    main()
