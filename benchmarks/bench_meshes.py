"""Mesh generation: ``atlasmith meshes`` (whole process) against BrainGlobe 2.3.1's
``construct_meshes_from_annotation`` (closing 2, decimate 0.2, no smoothing, its default
parallelism), on the same real Allen annotation, in the same run (CONTRACTS.md).

Annotations: Allen's official 25 um CCFv3 2017 annotation (``../shared/data``) subsampled
``[::4]`` (100 um) and ``[::2]`` (50 um); structures: ``data/allen_mouse_100um``. Both tools
at 100 and 50 um; ours alone at 25 um. Reported: time, peak memory (sum of the proportional
set size of the process and its children, sampled every 50 ms), meshes, triangles, size on
disk, and two distances (CONTRACTS.md): to Allen's own meshes of 15 regions
(``data/allen_official_meshes``) and to the same regions' voxel boundaries.

Sampling the memory slows the process it watches (reading a process's proportional set
size walks its page tables; measured: about 15 % of atlasmith's time at 50 um), so each tool
runs once with the sampling, for its peak memory, and then without it, for its time:
atlasmith ``--repeat`` times (default 5; the median time is reported, every time listed),
BrainGlobe once (its time with the sampling is kept too, as ``sampled_time_s``).

    .venv/bin/python benchmarks/bench_meshes.py                       # everything
    .venv/bin/python benchmarks/bench_meshes.py --reuse-baseline      # BrainGlobe from cache
    .venv/bin/python benchmarks/bench_meshes.py --skip-baseline --ours 100 50 25
    .venv/bin/python benchmarks/bench_meshes.py --budget-um 200   # + a row with the budget

BrainGlobe's results are cached in ``bench-out/meshes/baseline_<res>um.json``; the table says
"cached" for a row that was not measured in this run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from baseline import ensure_baseline_venv

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ANNOTATION_25 = SHARED / "allen_ccf2017_25um" / "annotation_25.nrrd"
ALLEN_MESHES = SHARED / "allen_official_meshes"
STRUCTURES = REPO / "data" / "allen_mouse_100um" / "structures.json"
STEP = {100: 4, 50: 2, 25: 1}

BASELINE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from brainglobe_atlasapi.atlas_generation.mesh_utils import construct_meshes_from_annotation
    volume = np.load(sys.argv[1])
    structures = json.loads(Path(sys.argv[2]).read_text())
    start = time.perf_counter()
    construct_meshes_from_annotation(
        Path(sys.argv[3]), volume, structures, closing_n_iters=2, decimate_fraction=0.2,
        smooth=False,
    )
    print(json.dumps({"generation_s": time.perf_counter() - start}))
    """
)


# --- running and measuring ---------------------------------------------------------------


def run_measured(
    command: list[str], cwd: Path | None = None, sample: bool = True
) -> dict[str, Any]:
    """Run a command; wall time and (``sample``) peak memory of its process tree."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    watcher = psutil.Process(process.pid)

    def watch() -> None:
        nonlocal peak
        while process.poll() is None:
            try:
                tree = [watcher, *watcher.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    if sample:
        thread.start()
    out, err = process.communicate()
    elapsed = time.perf_counter() - start
    if sample:
        thread.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    return {"wall_s": elapsed, "peak_mb": peak / 2**20 if sample else None, "stdout": out}


def _rss(process: Any) -> int:
    """Proportional set size (shared pages split between the processes that share them, so
    forked workers are not counted twice); resident size where PSS is not available."""
    try:
        try:
            return int(process.memory_full_info().pss)
        except (AttributeError, Exception):
            return int(process.memory_info().rss)
    except Exception:  # the process ended meanwhile
        return 0


# --- inputs ------------------------------------------------------------------------------


def prepare(resolution: int, work: Path) -> Path:
    """An atlas folder (annotation.tiff, structures.json, metadata.json) at ``resolution``."""
    import nrrd
    import tifffile

    folder = work / f"atlas_{resolution}um"
    if (folder / "annotation.npy").is_file() and "orientation" in (
        folder / "metadata.json"
    ).read_text():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    annotation, _ = nrrd.read(str(ANNOTATION_25))
    step = STEP[resolution]
    sub = np.ascontiguousarray(annotation[::step, ::step, ::step], dtype=np.uint32)
    tifffile.imwrite(folder / "annotation.tiff", sub)
    np.save(folder / "annotation.npy", sub)
    shutil.copyfile(STRUCTURES, folder / "structures.json")
    metadata = {
        "name": "allen_mouse",
        "citation": "Wang et al 2020, https://doi.org/10.1016/j.cell.2020.04.007",
        "atlas_link": "http://www.brain-map.org",
        "species": "Mus musculus",
        "symmetric": True,
        "resolution": [float(resolution)] * 3,
        "orientation": "asr",
        "version": "1.2",
        "shape": list(sub.shape),
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


# --- the two tools -----------------------------------------------------------------------


def run_ours(
    folder: Path, out: Path, workers: int | None, repeat: int, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``repeat`` runs (each into an empty folder): the median time, every time, the
    largest peak. These machines are shared and noisy; BrainGlobe's minutes-long run is
    measured once."""
    command = [sys.executable, "-m", "atlasmith", "meshes", str(folder), "--out", str(out)]
    command += list(extra)
    if workers:
        command += ["--workers", str(workers)]
    shutil.rmtree(out, ignore_errors=True)
    memory = run_measured(command)
    times = []
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        times.append(run_measured(command, sample=False)["wall_s"])
    return {
        "time_s": float(np.median(times)),
        "times_s": times,
        "peak_mb": memory["peak_mb"],
        "sampled_time_s": memory["wall_s"],
        "scale": 1.0,
    }


def run_baseline(python: Path, folder: Path, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = out.parent / "baseline_run.py"
    script.write_text(BASELINE)
    command = [str(python), str(script), str(folder / "annotation.npy"), str(STRUCTURES), str(out)]
    memory = run_measured(command)
    shutil.rmtree(out)
    out.mkdir()
    result = run_measured(command, sample=False)
    timing = json.loads(result["stdout"].strip().splitlines()[-1])
    return {
        "time_s": timing["generation_s"],
        "process_s": result["wall_s"],
        "peak_mb": memory["peak_mb"],
        "sampled_time_s": json.loads(memory["stdout"].strip().splitlines()[-1])["generation_s"],
    }


# --- measuring the meshes ----------------------------------------------------------------


@functools.cache
def references(folder: Path, resolution: int) -> dict[str, tuple[int, Any, Any]]:
    """Per region of ``data/allen_official_meshes``: its id, Allen's mesh and its voxel
    boundary in ``folder``'s annotation (made once per folder)."""
    from atlasmith.hierarchy import StructureTree
    from atlasmith.meshes.quality import read_obj, region_masks, voxel_boundary

    tree = StructureTree.from_list(json.loads(STRUCTURES.read_text()))
    annotation = np.load(folder / "annotation.npy")
    regions = {path.stem: tree[path.stem].id for path in sorted(ALLEN_MESHES.glob("*.obj"))}
    masks = {sid: (m, o) for sid, m, o in region_masks(annotation, tree, list(regions.values()))}
    return {
        acronym: (
            sid,
            read_obj(ALLEN_MESHES / f"{acronym}.obj"),
            voxel_boundary(masks[sid][0], (float(resolution),) * 3, masks[sid][1]),
        )
        for acronym, sid in regions.items()
    }


def measure_meshes(mesh_dir: Path, folder: Path, resolution: int, scale: float) -> dict[str, Any]:
    """Counts, size and the two distances (mean over the 15 regions, and each region's) of a
    mesh folder."""
    from atlasmith.meshes.quality import read_obj, surface_distance

    files = sorted(mesh_dir.glob("*.obj"))
    triangles = sum(path.read_bytes().count(b"\nf ") for path in files)
    per_region = {}
    for acronym, (sid, allen, boundary) in references(folder, resolution).items():
        points, faces = read_obj(mesh_dir / f"{sid}.obj")
        mesh = (points * scale, faces)
        per_region[acronym] = [
            surface_distance(allen, mesh)[0],
            surface_distance(mesh, boundary)[0],
        ]
    distances = np.array(list(per_region.values()))
    return {
        "meshes": len(files),
        "triangles": triangles,
        "disk_mb": sum(p.stat().st_size for p in files) / 2**20,
        "gzip_mb": _gzipped(files) / 2**20,
        "dist_allen_um": float(distances[:, 0].mean()),
        "dist_voxels_um": float(distances[:, 1].mean()),
        "per_region": per_region,  # acronym: [to Allen's mesh, to the voxel boundary] (um)
    }


def _gzipped(files: list[Path]) -> int:
    """Bytes of the mesh files as a gzip-4 tar, in name order (as an archive holds them, at
    a fixed level for comparison with earlier figures: archives are written at level 5)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=4) as tar:
        for path in files:
            tar.add(path, arcname=path.name)
    return len(buffer.getvalue())


# --- the table ---------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'res':>5} {'tool':<30} {'time s':>9} {'speedup':>8} {'peak MB':>8} {'meshes':>6} "
        f"{'triangles':>10} {'disk MB':>8} {'gzip MB':>8} {'d Allen um':>10} {'d voxels um':>11}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        speed = f"{row['speedup']:.0f}x" if row.get("speedup") else ""
        lines.append(
            f"{row['res']:>5} {row['tool']:<30} {row['time_s']:>9.2f} {speed:>8} "
            f"{row['peak_mb']:>8.0f} {row['meshes']:>6} {row['triangles']:>10} "
            f"{row['disk_mb']:>8.1f} {row.get('gzip_mb', float('nan')):>8.1f} "
            f"{row['dist_allen_um']:>10.2f} {row['dist_voxels_um']:>11.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=int, nargs="*", default=[100, 50], choices=[100, 50])
    parser.add_argument(
        "--ours",
        type=int,
        nargs="*",
        default=[25],
        choices=[100, 50, 25],
        help="resolutions run with atlasmith alone",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "meshes")
    parser.add_argument(
        "--baseline-venv",
        type=Path,
        default=None,
        help="BrainGlobe 2.3.1 venv (default bench-out/bgvenv; made if missing)",
    )
    parser.add_argument(
        "--reuse-baseline",
        type=int,
        nargs="*",
        default=None,
        help="use cached BrainGlobe results (at these resolutions; all when none given)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="run atlasmith only")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--deviation-um",
        type=float,
        nargs="*",
        default=[],
        help="also run atlasmith with these --deviation-um values (decimation), each a row",
    )
    parser.add_argument(
        "--budget-um",
        type=float,
        nargs="*",
        default=[],
        help="also run atlasmith with these --budget-um values (triangle budget), each a row",
    )
    parser.add_argument(
        "--deviation-res",
        type=int,
        nargs="*",
        default=[100, 50, 25],
        help="resolutions that get the --deviation-um and --budget-um rows (default: all)",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs of atlasmith per resolution (median time)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for resolution in args.compare:
        folder = prepare(resolution, args.out)
        ours = run_ours(folder, args.out / f"ours_{resolution}um", args.workers, args.repeat)
        ours.update(measure_meshes(args.out / f"ours_{resolution}um", folder, resolution, 1.0))
        row = {"res": resolution, "tool": "atlasmith meshes", **ours}
        rows.append(row)
        light = _light_rows(args, folder, resolution)
        rows.extend(light)
        if args.skip_baseline:
            continue
        base = baseline(args, folder, resolution)
        for made in (row, *light):
            made["speedup"] = base["time_s"] / made["time_s"]
        rows.append({"res": resolution, **base})
    for resolution in args.ours:
        folder = prepare(resolution, args.out)
        ours = run_ours(folder, args.out / f"ours_{resolution}um", args.workers, args.repeat)
        ours.update(measure_meshes(args.out / f"ours_{resolution}um", folder, resolution, 1.0))
        rows.append({"res": resolution, "tool": "atlasmith meshes", **ours})
        rows.extend(_light_rows(args, folder, resolution))
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the end")
    print(table(rows))
    for row in rows:
        if "times_s" in row:
            runs = " ".join(f"{t:.2f}" for t in row["times_s"])
            print(f"atlasmith at {row['res']} um, every run (s; the table has the median): {runs}")
    for row in rows:
        if row.get("sampled_time_s"):
            print(
                f"{row['tool']} at {row['res']} um, the run that sampled the memory: "
                f"{row['sampled_time_s']:.2f} s"
            )
    (args.out / "bench_meshes.json").write_text(json.dumps(rows, indent=2))


def _light_rows(args: argparse.Namespace, folder: Path, resolution: int) -> list[dict[str, Any]]:
    """atlasmith with each ``--deviation-um`` and ``--budget-um`` value asked for (a row
    each)."""
    rows: list[dict[str, Any]] = []
    if resolution not in args.deviation_res:
        return rows
    asked = [("deviation-um", "dev", v) for v in args.deviation_um]
    asked += [("budget-um", "budget", v) for v in args.budget_um]
    for option, short, value in asked:
        out = args.out / f"ours_{resolution}um_{short}{value:g}"
        extra = (f"--{option}", f"{value:g}")
        made = run_ours(folder, out, args.workers, args.repeat, extra)
        made.update(measure_meshes(out, folder, resolution, 1.0))
        rows.append({"res": resolution, "tool": f"atlasmith --{option} {value:g}", **made})
    return rows


def baseline(args: argparse.Namespace, folder: Path, resolution: int) -> dict[str, Any]:
    """BrainGlobe's run at ``resolution`` (cached in bench-out as JSON)."""
    cache = args.out / f"baseline_{resolution}um.json"
    reuse = args.reuse_baseline is not None and (
        not args.reuse_baseline or resolution in args.reuse_baseline
    )
    if reuse and cache.is_file():
        return {**json.loads(cache.read_text()), "tool": "brainglobe 2.3.1 (cached)"}
    python = ensure_baseline_venv(args.baseline_venv or args.out / "bgvenv")
    out = args.out / f"brainglobe_{resolution}um"
    result = run_baseline(python, folder, out)
    result.update(measure_meshes(out / "meshes", folder, resolution, float(resolution)))
    result["tool"] = "brainglobe 2.3.1"
    cache.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
