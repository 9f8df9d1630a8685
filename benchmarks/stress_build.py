"""Build a small atlas many times in a row and count the builds that hang (issue 17).

Each build is a whole ``atlasmith build`` process (its mesh workers forked while the preview
and BrainGlobe 3 threads run, the situation that once hung 3 builds in 24); a build that has
not finished after ``--timeout`` seconds counts as hung, and is killed with its workers.
The atlas: the project's real Allen 100 um data, every label replaced by its ancestor two
levels below the root (about 20 regions), so that one build takes a few seconds.

Usage::

    python benchmarks/stress_build.py [--builds 200] [--timeout 300] [--out bench-out/stress]

Prints one line per build (seconds, or HUNG / FAILED) and a summary: builds, hangs, failures,
median and slowest build, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

SCRIPT = '''
"""The Allen mouse atlas at 100 um, coarsened to the regions two levels below the root."""
import json

import nrrd
import numpy as np
import tifffile

from atlasmith.sources import Source

__version__ = 0
ATLAS_NAME = "stress_mouse"
SPECIES = "Mus musculus"
ATLAS_LINK = "https://atlas.brain-map.org"
CITATION = "Wang et al. 2020, https://doi.org/10.1016/j.cell.2020.04.007"
ATLAS_PACKAGER = "atlasmith stress test"
ORIENTATION = "asr"
ROOT_ID = 997
RES_UM = 100
SOURCES = {
    "annotation": Source("allen_mouse_100um/annotation_100um.nrrd",
        sha256="c11678acc9d614e3bd152d2d811086d98bca7d18234c32df70fab5d286f39da7"),
    "reference": Source("allen_mouse_100um/reference.tiff",
        sha256="8137e914edfecd29f97310937d080c8c1e54909dc885108b4643820e9c2ae6d3"),
    "structures": Source("allen_mouse_100um/structures.json",
        sha256="7157e6130b354f6bebc21aa79f882274cbbe253ac916d97123805af3b4ff8abd"),
}
DEPTH = 2


def _kept(ctx):
    structures = json.loads(ctx.source("structures").read_text())
    return [s for s in structures if len(s["structure_id_path"]) <= DEPTH + 1], structures


def load_reference(ctx):
    return tifffile.imread(ctx.source("reference"))


def load_annotation(ctx):
    annotation = nrrd.read(str(ctx.source("annotation")))[0].astype(np.int64)
    _, structures = _kept(ctx)
    ancestor = {s["id"]: s["structure_id_path"][: DEPTH + 1][-1] for s in structures}
    labels, inverse = np.unique(annotation, return_inverse=True)
    mapped = np.array([ancestor.get(int(v), 0) for v in labels], dtype=np.int64)
    return mapped[inverse].reshape(annotation.shape)


def load_structures(ctx):
    kept, _ = _kept(ctx)
    return kept
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "stress")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    script = args.out / "stress_mouse.py"
    script.write_text(SCRIPT)
    times: list[float] = []
    hung = failed = 0
    for number in range(1, args.builds + 1):
        out = args.out / "build"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "atlasmith", "build", str(script), "--out", str(out)]
        command += ["--source-dir", str(DATA)]
        start = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            _, err = process.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the build and its mesh workers
            process.communicate()
            hung += 1
            print(f"build {number:3d}: HUNG (no end after {args.timeout:.0f} s)", flush=True)
            continue
        seconds = time.monotonic() - start
        if process.returncode != 0:
            failed += 1
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            print(f"build {number:3d}: FAILED rc {process.returncode}: {last[0]}", flush=True)
            continue
        times.append(seconds)
        print(f"build {number:3d}: {seconds:.1f} s", flush=True)
    load = os.getloadavg()
    spread = ""
    if times:
        spread = f" (median {statistics.median(times):.1f} s, slowest {max(times):.1f} s)"
    print(
        f"\n{args.builds} builds: {hung} hung, {failed} failed, {len(times)} finished{spread}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores"
    )
    sys.exit(1 if hung or failed else 0)


if __name__ == "__main__":
    main()
