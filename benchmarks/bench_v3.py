"""BrainGlobe 3 format: atlasmith's build and reader against BrainGlobe 3.0.2's own, one run.

What is measured (CONTRACTS.md, "v3 build"; issue 15), each as a whole process tree, wall
clock and peak memory (proportional set size of the process and its children, sampled every
50 ms):

* **build, 100 um** (the bundled Allen data): ``atlasmith build atlas_scripts/allen_mouse.py
  --format all`` against BrainGlobe 3.0.2 in its own venv: its ``construct_meshes_from_annotation``
  as its atlas scripts call it (closing 2, decimate 0.2, no smoothing), then
  ``wrapup_atlas_from_data`` on the same reference, annotation and structures (its
  ``requests.get(atlas_link)`` patched out, the machines being offline, and its terminology
  reader's UInt16 parent column widened so that its own validation of Allen can finish);
* **what v3 adds to our build**: ``--format all`` against ``--format v1``, same run;
* **build, 25 um**: ``atlasmith build --resolution 25 --format all`` (Allen's 25 um sources
  from ../shared/data), peak memory;
* **reader, 25 um**: on that build's v3 tree, ``atlasmith.Atlas`` against the same on the
  v1.2 folder of the same build, and against BrainGlobe 3.0.2's ``core.Atlas`` on the same
  v3 tree: open + first lookup, 1,000,000 point lookups (ours one vectorised call; theirs one
  call per point, as its API offers) and ``get_structure_mask("CH")``; results compared.

Usage::

    python benchmarks/bench_v3.py [--out bench-out/v3] [--bg3-venv .venv-bg3] [--repeat 3]
                                  [--skip-build] [--skip-25um]

``--out`` must not hold earlier runs' outputs (removing thousands of files while a run is
timed slows it); the 25 um build there is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from baseline import ensure_bg3_venv, log
from bench_build import DATA, SCRIPT, annotation_npy
from bench_meshes import run_measured
from bench_reader import fmt_s, measure

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

BG3_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
import requests
import tifffile
requests.get = lambda *args, **kwargs: None  # offline: no live check of atlas_link
pd.UInt16Dtype = pd.Int64Dtype  # its terminology reader: Allen has parent ids above 65535
from brainglobe_atlasapi.atlas_generation.mesh_utils import construct_meshes_from_annotation
from brainglobe_atlasapi.atlas_generation.wrapup import wrapup_atlas_from_data

data, work = Path(sys.argv[1]), Path(sys.argv[2])
reference = tifffile.imread(data / "reference.tiff")
annotation = np.load(sys.argv[3])
structures = json.loads((data / "structures.json").read_text())
meshes_dir = work / "meshes_temp"
meshes_dir.mkdir(parents=True)
meshes = construct_meshes_from_annotation(
    meshes_dir, annotation, structures, closing_n_iters=2, decimate_fraction=0.2, smooth=False
)
wrapup_atlas_from_data(
    atlas_name="allen_mouse", atlas_minor_version=2,
    citation="Wang et al 2020, https://doi.org/10.1016/j.cell.2020.04.007",
    atlas_link="http://www.brain-map.org", species="Mus musculus",
    resolution=(100, 100, 100), orientation="asr", root_id=997,
    reference_stack=reference, annotation_stack=annotation, structures_list=structures,
    meshes_dict=meshes, working_dir=work, atlas_packager="benchmark", hemispheres_stack=None,
)
"""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ours_build(out: Path, fmt: str, extra: list[str] | None = None) -> dict[str, Any]:
    if out.exists():
        raise SystemExit(f"{out} exists: give an empty --out (deleting it would slow the run)")
    command = [sys.executable, "-m", "atlasmith", "build", str(SCRIPT), "--out", str(out)]
    return run_measured([*command, "--format", fmt, *(extra or [])])


def bg3_build(python: Path, out: Path, npy: Path) -> dict[str, Any]:
    if out.exists():
        raise SystemExit(f"{out} exists: give an empty --out")
    out.mkdir(parents=True)
    return run_measured([str(python), "-c", BG3_SCRIPT, str(DATA), str(out), str(npy)])


def tree_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def build_part(opts: argparse.Namespace, bg3: Path) -> None:
    npy = annotation_npy(opts.out)
    runs: dict[str, list[dict[str, Any]]] = {"all": [], "v1": []}
    print(f"machine: {os.cpu_count()} cores, load average before {load()}")
    for i in range(opts.repeat):  # a fresh folder each run: no deletion during a timed run
        for fmt in ("all", "v1"):
            log(f"run {i + 1}/{opts.repeat}: atlasmith build --format {fmt}")
            runs[fmt].append(ours_build(opts.out / f"ours-{fmt}-{i}", fmt))
    log("BrainGlobe 3.0.2: meshes + wrapup_atlas_from_data (several minutes)")
    theirs = bg3_build(bg3, opts.out / "bg3", npy)
    print(f"load average after: {load()}")
    all_s = statistics.median(r["wall_s"] for r in runs["all"])
    v1_s = statistics.median(r["wall_s"] for r in runs["v1"])
    all_mb = statistics.median(r["peak_mb"] for r in runs["all"])
    v1_mb = statistics.median(r["peak_mb"] for r in runs["v1"])
    ours_files, ours_bytes = tree_size(opts.out / "ours-all-0" / "brainglobe-atlasapi")
    bg_files, bg_bytes = tree_size(opts.out / "bg3" / "brainglobe-atlasapi")
    print(f"\nBuild of allen_mouse_100um, bundled real data; atlasmith median of {opts.repeat}")
    print(f"| {'':<46} | {'atlasmith':>10} | {'BrainGlobe 3.0.2':>16} | {'ratio':>7} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 18}|{'-' * 9}|")
    print(f"| {'build, v1.2 + v3 (whole process tree), s':<46} | {all_s:>10.1f} | "
          f"{theirs['wall_s']:>16.1f} | {theirs['wall_s'] / all_s:>6.1f}x |")  # fmt: skip
    print(f"| {'peak memory (PSS, process tree), MB':<46} | {all_mb:>10.0f} | "
          f"{theirs['peak_mb']:>16.0f} | {theirs['peak_mb'] / all_mb:>6.1f}x |")  # fmt: skip
    print(f"| {'v3 tree: files / MB':<46} | {ours_files:>4} / {ours_bytes / 1e6:>3.0f} | "
          f"{bg_files:>9} / {bg_bytes / 1e6:>4.0f} | {'':>7} |")  # fmt: skip
    print(
        f"\nwhat v3 adds: --format v1 {v1_s:.2f} s, --format all {all_s:.2f} s: "
        f"+{(all_s - v1_s) / v1_s * 100:.0f} % time; peak {v1_mb:.0f} -> {all_mb:.0f} MB"
    )
    print("runs (s): all " + json.dumps([round(r["wall_s"], 2) for r in runs["all"]])
          + ", v1 " + json.dumps([round(r["wall_s"], 2) for r in runs["v1"]]))  # fmt: skip


def reader_part(opts: argparse.Namespace, bg3: Path) -> None:
    out = opts.out / "ours-25um"
    if not (out / "brainglobe-atlasapi").is_dir():
        log("atlasmith build --resolution 25 --format all (Allen's 25 um sources)")
        extra = ["--resolution", "25", "--source-dir", str(SHARED_DATA)]
        built = ours_build(out, "all", extra)
        print(f"\nbuild at 25 um (--format all): {built['wall_s']:.1f} s, peak memory "
              f"{built['peak_mb']:.0f} MB (PSS, process tree), load {load()}")  # fmt: skip
    v1 = out / "allen_mouse_25um_v1.2"
    v3 = out / "brainglobe-atlasapi" / "atlases" / "allen_mouse_25um" / "3_2" / "manifest.json"
    ours = Path(sys.executable)
    print(f"\nReader on allen_mouse_25um (528 x 320 x 456), load before {load()}")
    results = {
        "atlasmith, v3": measure("atlasmith", ours, v3, opts),
        "atlasmith, v1.2": measure("atlasmith", ours, v1, opts),
        "BrainGlobe 3.0.2, v3": measure("brainglobe", bg3, v3, opts),
    }
    print(f"load after {load()}")
    rows = [
        ("open + first lookup", "open_first_s"),
        (f"{opts.points:,} point lookups, first", "points_first_s"),
        (f"{opts.points:,} point lookups, second", "points_second_s"),
        ("get_structure_mask('CH'), first", "mask_first_s"),
        ("get_structure_mask('CH'), second", "mask_second_s"),
    ]
    names = list(results)
    print(f"| {'measure':<36} | " + " | ".join(f"{n:>20}" for n in names) + " |")
    for label, key in rows:
        cells = " | ".join(f"{fmt_s(results[n][key]):>20}" for n in names)
        print(f"| {label:<36} | {cells} |")
    rss = " | ".join(f"{results[n]['open_first_rss'] / 2**20:>17.1f} MB" for n in names)
    print(f"| {'RSS added by open + first lookup':<36} | {rss} |")
    a, b, c = (results[n] for n in names)
    print(f"point lookups identical (v3, v1.2, BrainGlobe 3): "
          f"{a['points_sha256'] == b['points_sha256'] == c['points_sha256']}")  # fmt: skip
    print(f"CH mask identical to BrainGlobe 3's (binary uint8): "
          f"{(a['mask_sha256'], a['mask_dtype']) == (c['mask_sha256'], c['mask_dtype'])}; "
          f"voxels v3 {a['mask_voxels']:,}, v1.2 {b['mask_voxels']:,}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "v3")
    parser.add_argument("--bg3-venv", type=Path, default=REPO / ".venv-bg3")
    parser.add_argument("--repeat", type=int, default=3, help="atlasmith builds per format")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--structure", default="CH")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per open")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-25um", action="store_true")
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    bg3 = ensure_bg3_venv(opts.bg3_venv)
    start = time.perf_counter()
    if not opts.skip_build:
        build_part(opts, bg3)
    if not opts.skip_25um:
        reader_part(opts, bg3)
    log(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
