"""Mesh parameters against the two distances: where each setting sits between Allen's meshes
and the voxels.

The two distances of ``bench_meshes.py`` pull apart: a smoother mesh comes closer to Allen's
own (smooth) meshes and moves away from the region's voxel boundary. This script makes the
meshes of the Allen annotation with each given set of ``MeshParameters`` (in this process,
one after the other) and prints both distances, their means over the 15 regions and each
region's, next to BrainGlobe's meshes when ``bench_meshes.py`` has left them in ``--out``.
Times here are in-process and only indicative; the benchmark is ``bench_meshes.py``.

    .venv/bin/python benchmarks/mesh_tradeoff.py --res 50
    .venv/bin/python benchmarks/mesh_tradeoff.py --res 100 --set smoothing_um=1600 \\
        --set smoothing_um=400,cluster_um=150
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_meshes import REPO, STRUCTURES, measure_meshes, prepare

SWEEP = [
    "",  # the defaults
    "smoothing_um=400",
    "smoothing_um=1200",
    "cluster_um=150",
    "cluster_um=150,smoothing_um=1200",
    "cluster_um=0",
    "closing=2",
]


def parse_set(text: str) -> dict[str, Any]:
    """``name=value,...`` as MeshParameters keywords (ints where they look like ints)."""
    from dataclasses import fields

    from atlasmith.meshes import MeshParameters

    names = {field.name for field in fields(MeshParameters)}
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = (part.strip() for part in item.partition("="))
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if name not in names or number != number:
            raise SystemExit(
                f"--set {text!r}: {item!r} is not name=number with a name among "
                f"{', '.join(sorted(names))}"
            )
        out[name] = int(number) if number.is_integer() and "." not in value else number
    return out


def parameter_sets(texts: list[str]) -> list[tuple[str, Any]]:
    """Each ``--set`` as (name, MeshParameters), all checked before any work starts."""
    from atlasmith.errors import ConfigError
    from atlasmith.meshes import MeshParameters

    try:
        return [(text or "defaults", MeshParameters(**parse_set(text))) for text in texts]
    except ConfigError as err:
        raise SystemExit(str(err)) from err


def run_set(
    name: str, parameters: Any, annotation: Any, tree: Any, resolution: int, folder: Path
) -> dict[str, Any]:
    """Meshes with one parameter set, timed (in-process) and measured."""
    from atlasmith.meshes import generate_meshes

    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        generate_meshes(annotation, tree, resolution, Path(work) / "m", params=parameters)
        elapsed = time.perf_counter() - start
        row = measure_meshes(Path(work) / "m", folder, resolution, 1.0)
    return {"name": name, "time_s": elapsed, **row}


def show(row: dict[str, Any]) -> str:
    regions = " ".join(f"{a}:{d[0]:.0f}/{d[1]:.0f}" for a, d in row["per_region"].items())
    time_s = f"{row['time_s']:6.2f}" if "time_s" in row else "      "
    return (
        f"{row['name']:<36} {time_s} {row['triangles']:>10,} {row['dist_allen_um']:>7.2f} "
        f"{row['dist_voxels_um']:>7.2f} | {regions}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res", type=int, default=50, choices=[100, 50, 25])
    parser.add_argument(
        "--set",
        action="append",
        dest="sets",
        help="MeshParameters as name=value,... (repeat; default: a sweep, defaults first)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "meshes")
    args = parser.parse_args()
    sets = parameter_sets(args.sets or SWEEP)
    from atlasmith.hierarchy import StructureTree

    folder = prepare(args.res, args.out)
    annotation = np.load(folder / "annotation.npy")
    tree = StructureTree.from_list(json.loads(STRUCTURES.read_text()))
    print(
        f"{'parameters':<36} {'time s':>6} {'triangles':>10} {'Allen':>7} {'voxels':>7} "
        "| per region: to Allen / to voxels (um)"
    )
    baseline = args.out / f"brainglobe_{args.res}um" / "meshes"
    if baseline.is_dir():
        row = measure_meshes(baseline, folder, args.res, float(args.res))
        print(show({"name": "brainglobe 2.3.1", **row}), flush=True)
    for name, parameters in sets:
        print(show(run_set(name, parameters, annotation, tree, args.res, folder)), flush=True)


if __name__ == "__main__":
    main()
