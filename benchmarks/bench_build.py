"""Build of the Allen mouse atlas at 100 um: atlasmith against BrainGlobe 2.3.1, in one run.

What is measured (CONTRACTS.md, "Build"), each as a whole process, wall clock:

* ``atlasmith build atlas_scripts/allen_mouse.py --out DIR`` (load and check the script and
  its sources, reorient, generate the meshes, write the folder, validate it, make the
  reproducible archive); by default it writes both generations, the v1.2 package and
  BrainGlobe 3's components;
* the same with ``--format v1``: the v1.2 package alone, what BrainGlobe 2.3.1 makes (its
  archive must be the same bytes as the default build's);
* BrainGlobe 2.3.1 in its own virtual environment: ``construct_meshes_from_annotation`` on the
  same annotation (closing 2, decimate 0.2, no smoothing, its own default parallelism), then
  ``wrapup_atlas_from_data(..., scale_meshes=True, compress=True)`` with the same reference,
  annotation and structures, its ``requests.get(atlas_link)`` patched out (the machines are
  offline).

Inputs: the project's real data in ``data/allen_mouse_100um`` (the 100 um CCFv3 template, the
2017 annotation subsampled from Allen's 25 um file, BrainGlobe's 840 structures). BrainGlobe
gets the annotation as a ``.npy`` (its venv has no NRRD reader); loading it is part of its
timed process, as reading the NRRD is part of ours.

With ``--budget-um UM`` atlasmith builds with that triangle budget (``atlasmith build
--budget-um``; the table says so). With ``--also-25um`` it then builds Allen 25 um from
``../shared/data`` (``--resolution 25 --source-dir``), ours alone, once with its process
tree's peak memory sampled (proportional set size every 50 ms, as bench_meshes.py) and once
for its time, and reports time, peak memory and archive size.

Usage::

    python benchmarks/bench_build.py [--out bench-out/build] [--baseline-venv bench-out/bgvenv]
                                     [--repeat 1] [--workers N] [--budget-um UM] [--also-25um]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from baseline import ensure_baseline_venv, log

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "allen_mouse_100um"
SCRIPT = REPO / "atlas_scripts" / "allen_mouse.py"

BG_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import tifffile
import requests
requests.get = lambda *args, **kwargs: None  # offline: no live check of atlas_link
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
    meshes_dict=meshes, working_dir=work, atlas_packager="benchmark",
    hemispheres_stack=None, cleanup_files=False, compress=True, scale_meshes=True,
)
"""


def annotation_npy(out: Path) -> Path:
    """The bundled 100 um annotation as .npy, for BrainGlobe's venv (no NRRD reader there)."""
    import nrrd
    import numpy as np

    target = out / "annotation_100um.npy"
    annotation, _ = nrrd.read(str(DATA / "annotation_100um.nrrd"))
    np.save(target, np.ascontiguousarray(annotation))
    return target


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one process; its output goes to stderr."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=sys.stderr, env=env)
    return time.perf_counter() - start


def build_command(
    out: Path, workers: int | None, budget_um: float | None, v1_only: bool = False
) -> list[str]:
    command = [sys.executable, "-m", "atlasmith", "build", str(SCRIPT), "--out", str(out)]
    if v1_only:
        command += ["--format", "v1"]
    if workers is not None:
        command += ["--workers", str(workers)]
    if budget_um is not None:
        command += ["--budget-um", f"{budget_um:g}"]
    return command


def run_atlasmith(
    out: Path, workers: int | None, budget_um: float | None, v1_only: bool = False
) -> tuple[float, Path]:
    if out.exists():
        shutil.rmtree(out)
    seconds = timed(build_command(out, workers, budget_um, v1_only))
    return seconds, out / "allen_mouse_100um_v1.2.tar.gz"


def build_25um(out: Path, workers: int | None, budget_um: float | None) -> dict[str, float]:
    """atlasmith's build of Allen 25 um: sampled once for the peak memory, then timed."""
    from bench_meshes import run_measured

    command = build_command(out, workers, budget_um)
    command += ["--resolution", "25", "--source-dir", str(REPO.parent / "shared" / "data")]
    shutil.rmtree(out, ignore_errors=True)
    peak = run_measured(command)["peak_mb"]
    shutil.rmtree(out)
    seconds = run_measured(command, sample=False)["wall_s"]
    archive = out / "allen_mouse_25um_v1.2.tar.gz"
    return {"time_s": seconds, "peak_mb": peak, "archive_mb": archive.stat().st_size / 1e6}


def run_brainglobe(python: Path, out: Path, npy: Path) -> tuple[float, Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    seconds = timed([str(python), "-c", BG_SCRIPT, str(DATA), str(out), str(npy)])
    return seconds, next(out.glob("*.tar.gz"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "build")
    parser.add_argument("--baseline-venv", type=Path, default=REPO / "bench-out" / "bgvenv")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (median)")
    parser.add_argument("--workers", type=int, default=None, help="atlasmith --workers")
    parser.add_argument("--budget-um", type=float, default=None, help="atlasmith --budget-um")
    parser.add_argument("--also-25um", action="store_true", help="then atlasmith at 25 um")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    python = ensure_baseline_venv(args.baseline_venv)
    npy = annotation_npy(args.out)
    ours, ours_v1, theirs, hashes, hashes_v1 = [], [], [], set(), set()
    for i in range(args.repeat):
        log(f"run {i + 1}/{args.repeat}: atlasmith build")
        seconds, archive = run_atlasmith(args.out / "atlasmith", args.workers, args.budget_um)
        ours.append(seconds)
        log(f"atlasmith build: {seconds:.1f} s")
        hashes.add(sha256(archive))
        ours_size = archive.stat().st_size
        log(f"run {i + 1}/{args.repeat}: atlasmith build --format v1")
        seconds, archive = run_atlasmith(
            args.out / "atlasmith_v1", args.workers, args.budget_um, v1_only=True
        )
        ours_v1.append(seconds)
        log(f"atlasmith build --format v1: {seconds:.1f} s")
        hashes_v1.add(sha256(archive))
        log(f"run {i + 1}/{args.repeat}: BrainGlobe 2.3.1 meshes + wrapup")
        seconds, bg_archive = run_brainglobe(python, args.out / "brainglobe", npy)
        theirs.append(seconds)
        log(f"BrainGlobe 2.3.1 meshes + wrapup: {seconds:.1f} s")
        bg_size = bg_archive.stat().st_size
    mine, base = statistics.median(ours), statistics.median(theirs)
    mine_v1 = statistics.median(ours_v1)
    meshes = len(list((args.out / "atlasmith" / "allen_mouse_100um_v1.2" / "meshes").iterdir()))
    bg_folder = next(p for p in (args.out / "brainglobe").iterdir() if p.name.endswith("v1.2"))
    bg_meshes = len(list((bg_folder / "meshes").iterdir()))
    budget = "" if args.budget_um is None else f", atlasmith with --budget-um {args.budget_um:g}"
    print(f"Build of allen_mouse_100um (bundled real data), {args.repeat} run(s) each, median, "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}{budget}")  # fmt: skip
    print(f"| {'task':<44} | {'atlasmith':>10} | {'BrainGlobe 2.3.1':>16} | {'speed-up':>8} |")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 18}|{'-' * 10}|")
    for task, seconds in (
        ("build, v1.2 + BrainGlobe 3 (the default)", mine),
        ("build --format v1 (v1.2 only, as BrainGlobe)", mine_v1),
    ):
        print(f"| {task:<44} | {seconds:>9.1f}s | {base:>15.1f}s | {base / seconds:>7.1f}x |")
    print(f"| {'meshes written':<44} | {meshes:>10} | {bg_meshes:>16} | {'':>8} |")
    print(
        f"| {'archive size (MB)':<44} | {ours_size / 1e6:>10.1f} | {bg_size / 1e6:>16.1f} | "
        f"{'':>8} |"
    )
    print(f"| {'identical archive sha256 across runs':<44} | {str(len(hashes) == 1):>10} | "
          f"{'n/a':>16} | {'':>8} |")  # fmt: skip
    same = str(hashes == hashes_v1)
    print(f"| {'--format v1: the same archive bytes':<44} | {same:>10} | {'n/a':>16} | {'':>8} |")
    print("runs (s): atlasmith " + json.dumps([round(s, 2) for s in ours]) +
          ", --format v1 " + json.dumps([round(s, 2) for s in ours_v1]) +
          ", BrainGlobe " + json.dumps([round(s, 2) for s in theirs]))  # fmt: skip
    if args.also_25um:
        log("atlasmith build at 25 um")
        fine = build_25um(args.out / "atlasmith_25um", args.workers, args.budget_um)
        print(f"allen_mouse_25um (atlasmith alone{budget}): {fine['time_s']:.1f} s, peak "
              f"{fine['peak_mb']:.0f} MB (process tree), archive {fine['archive_mb']:.1f} MB; "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
