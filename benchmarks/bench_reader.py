"""Reader benchmark: atlasmith.Atlas against BrainGlobe 2.3.1's core.Atlas, same folder, one run.

The folder is the 25 um Allen atlas: Allen's official 25 um 2017 annotation
(../shared/data/allen_ccf2017_25um/annotation_25.nrrd) with the bundled 100 um reference
upsampled 4x (np.repeat on each axis), BrainGlobe's structures.json, written once into
``--out`` as a BrainGlobe v1.2 folder (uncompressed TIFFs, as BrainGlobe writes them).

Every figure comes from a fresh subprocess: atlasmith runs in ``--ours-python`` (default: this
interpreter), BrainGlobe in the baseline venv (``--baseline-venv``, created with
``brainglobe-atlasapi[atlasgen]==2.3.1`` when missing). Measured:

* import: ``from atlasmith import Atlas`` / ``from brainglobe_atlasapi.core import Atlas``
  (median of fresh processes);
* open + first lookup: ``Atlas(path)`` and one ``structure_from_coords``, with the RSS it adds
  (median of fresh processes);
* 1,000,000 point lookups: ours one vectorised call on an (N, 3) array, theirs one call per
  point in a Python loop; first run and second (warm) run, results checked identical;
* ``get_structure_mask("CH")`` (id 567), first and second call in one process, results
  checked identical (sha256 of the bytes).

Usage: python benchmarks/bench_reader.py [--out bench-out] [--baseline-venv bench-out/bgvenv]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from baseline import ensure_baseline_venv

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "allen_mouse_100um"
ANNOTATION_25 = REPO.parent / "shared" / "data" / "allen_ccf2017_25um" / "annotation_25.nrrd"
FOLDER_NAME = "allen_mouse_25um_v1.2"

# Runs in a fresh interpreter of either venv: stdlib + numpy + the library under test only.
CHILD = r"""
import gc, hashlib, json, sys, time
args = json.loads(sys.argv[1])

def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

t0 = time.perf_counter()
if args["lib"] == "atlasmith":
    from atlasmith import Atlas
else:
    from brainglobe_atlasapi.core import Atlas
t_import = time.perf_counter() - t0
out = {"import_s": t_import}
if args["task"] != "import":
    import numpy as np
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    atlas = Atlas(args["path"])
    first = atlas.structure_from_coords(tuple(args["first_point"]))
    out["open_first_s"] = time.perf_counter() - t0
    out["open_first_rss"] = rss_bytes() - rss0
    out["first_value"] = int(first)
if args["task"] == "points":
    rng = np.random.default_rng(0)
    pts = rng.integers(0, atlas.shape, size=(args["n_points"], 3))
    if args["lib"] == "atlasmith":
        run = lambda: atlas.structure_from_coords(pts)
    else:
        as_tuples = [tuple(p) for p in pts.tolist()]
        run = lambda: np.array([atlas.structure_from_coords(p) for p in as_tuples])
    for key in ("points_first_s", "points_second_s"):
        t0 = time.perf_counter()
        ids = run()
        out[key] = time.perf_counter() - t0
    out["points_sha256"] = hashlib.sha256(np.asarray(ids, dtype=np.uint32).tobytes()).hexdigest()
if args["task"] == "mask":
    for key in ("mask_first_s", "mask_second_s"):
        mask = None
        t0 = time.perf_counter()
        mask = atlas.get_structure_mask(args["structure"])
        out[key] = time.perf_counter() - t0
    out["mask_dtype"] = str(mask.dtype)
    out["mask_voxels"] = int(np.count_nonzero(mask))
    out["mask_sha256"] = hashlib.sha256(np.ascontiguousarray(mask).tobytes()).hexdigest()
print(json.dumps(out))
"""


def build_folder(out: Path) -> Path:
    """Write the 25 um Allen folder once (reused when present)."""
    import nrrd
    import numpy as np
    import tifffile

    folder = out / FOLDER_NAME
    if (folder / "metadata.json").is_file():
        return folder
    tmp = out / (FOLDER_NAME + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    annotation, _ = nrrd.read(str(ANNOTATION_25))
    annotation = np.ascontiguousarray(annotation, dtype=np.uint32)
    reference = tifffile.imread(BUNDLED / "reference.tiff")
    for axis in range(3):
        reference = np.repeat(reference, 4, axis=axis)
    if reference.shape != annotation.shape:
        raise SystemExit(
            f"shapes differ: reference {reference.shape}, annotation {annotation.shape}"
        )
    tifffile.imwrite(tmp / "annotation.tiff", annotation)
    tifffile.imwrite(tmp / "reference.tiff", np.ascontiguousarray(reference, dtype=np.uint16))
    for name in ("structures.json", "structures.csv", "README.txt"):
        shutil.copyfile(BUNDLED / name, tmp / name)
    (tmp / "meshes").mkdir()
    meta = json.loads((BUNDLED / "metadata.json").read_text())
    meta.update(resolution=[25.0, 25.0, 25.0], shape=list(annotation.shape))
    (tmp / "metadata.json").write_text(json.dumps(meta))
    tmp.rename(folder)
    return folder


def child(python: Path, **args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh process; return its JSON."""
    proc = subprocess.run(
        [str(python), "-c", CHILD, json.dumps(args)], capture_output=True, text=True, cwd="/"
    )
    if proc.returncode != 0:
        raise SystemExit(f"{args['lib']} {args['task']} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def median_of(python: Path, repeats: int, key: str, **args: Any) -> float:
    return statistics.median(child(python, **args)[key] for _ in range(repeats))


def measure(lib: str, python: Path, folder: Path, opts: argparse.Namespace) -> dict[str, Any]:
    common = {"lib": lib, "path": str(folder), "first_point": [264, 160, 228]}
    res: dict[str, Any] = {}
    res["import_s"] = median_of(python, opts.repeats, "import_s", task="import", **common)
    opens = [child(python, task="open", **common) for _ in range(opts.repeats)]
    res["open_first_s"] = statistics.median(o["open_first_s"] for o in opens)
    res["open_first_rss"] = statistics.median(o["open_first_rss"] for o in opens)
    res["first_value"] = opens[0]["first_value"]
    res.update(child(python, task="points", n_points=opts.points, **common))
    res.update(child(python, task="mask", structure=opts.structure, **common))
    return res


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt_s(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def report(ours: dict[str, Any], theirs: dict[str, Any], opts: argparse.Namespace) -> None:
    rows = [
        ("import", "import_s", fmt_s),
        ("open + first lookup", "open_first_s", fmt_s),
        ("RSS added by open + first lookup", "open_first_rss", lambda b: f"{b / 2**20:.1f} MB"),
        (f"{opts.points:,} point lookups, first run", "points_first_s", fmt_s),
        (f"{opts.points:,} point lookups, second run", "points_second_s", fmt_s),
        (f"get_structure_mask({opts.structure!r}), first call", "mask_first_s", fmt_s),
        (f"get_structure_mask({opts.structure!r}), second call", "mask_second_s", fmt_s),
    ]
    print(f"\n{'measure':<44} {'atlasmith':>12} {'brainglobe 2.3.1':>17} {'ratio (bg/ours)':>16}")
    print("-" * 92)
    for label, key, fmt in rows:
        a, b = ours[key], theirs[key]
        ratio = f"{b / a:.1f}x" if a > 0 else "inf (ours adds 0)"
        print(f"{label:<44} {fmt(a):>12} {fmt(b):>17} {ratio:>16}")
    same_first = ours["first_value"] == theirs["first_value"]
    same_points = ours["points_sha256"] == theirs["points_sha256"]
    same_mask = (ours["mask_sha256"], ours["mask_dtype"]) == (
        theirs["mask_sha256"],
        theirs["mask_dtype"],
    )
    print("-" * 92)
    print(f"first lookup identical: {same_first} (label {ours['first_value']})")
    print(f"point lookups identical: {same_points} (sha256 {ours['points_sha256'][:16]}...)")
    print(
        f"masks identical: {same_mask} ({ours['mask_voxels']:,} voxels, dtype "
        f"{ours['mask_dtype']}, sha256 {ours['mask_sha256'][:16]}...)"
    )
    if not (same_first and same_points and same_mask):
        raise SystemExit("RESULTS DIFFER")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out")
    parser.add_argument("--baseline-venv", type=Path, default=None,
                        help="venv with brainglobe-atlasapi 2.3.1 (default OUT/bgvenv; created "
                        "when missing)")  # fmt: skip
    parser.add_argument("--ours-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--structure", default="CH")
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    baseline = ensure_baseline_venv(opts.baseline_venv or opts.out / "bgvenv")
    t0 = time.perf_counter()
    folder = build_folder(opts.out)
    print(f"atlas folder: {folder} (ready in {time.perf_counter() - t0:.1f} s)")
    print(f"atlasmith: {opts.ours_python}\nbrainglobe: {baseline}")
    print(f"machine: {os.cpu_count()} cores, load average before {load()}")
    ours = measure("atlasmith", opts.ours_python, folder, opts)
    theirs = measure("brainglobe", baseline, folder, opts)
    print(f"load average after: {load()}")
    report(ours, theirs, opts)


if __name__ == "__main__":
    main()
