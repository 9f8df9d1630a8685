"""atlasmith at 10 um: the Allen atlas at 1.2 billion voxels, made on disk, then measured.

First the 10 um atlas is made under ``--out`` (default ``/work/scale10``) by
``make_10um.py`` (Allen's 25 um annotation upsampled 2.5x per axis, with its derived
reference; reused when already there). Then each section runs its steps, every step in a
fresh process, and reports per step its wall time, CPU time (user + system of the step's
process tree) and peak memory (the proportional set size of the process tree, sampled every
50 ms: bench_meshes.run_measured).

Sections (``--sections``; all by default):

* ``reader``: ``Atlas(folder)`` + one lookup; 1,000,000 lookups (one vectorised
  ``structure_from_coords`` on random voxels, as bench_reader.py: first and second call in
  one process); ``get_structure_mask("CH")``; ``structure_statistics()``. Each also reports
  the step's own times (measured inside the process, from before the step to after it), the
  resident memory once the atlas is open, the process's own peak (VmHWM) and the size of
  what the step returns, for the targets "peak under 1.5x the result" (masks, statistics)
  and "first 1M lookups under 2 s" (issue 18).

Sampling the memory slows the process it watches (it walks its page tables), so each step
runs twice: once sampled, for its memory, then unsampled, for its times.

    .venv/bin/python benchmarks/bench_scale.py [--out /work/scale10] [--sections reader]
        [--cold]      # every step reads the stacks out of the page cache (posix_fadvise)
        [--src DIR]   # the reader from another source tree (e.g. an older one, to compare)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_meshes import run_measured
from make_10um import make_10um

REPO = Path(__file__).resolve().parents[1]

# One reader step in a fresh interpreter; prints one JSON line.
READER_STEP = textwrap.dedent(
    r"""
    import hashlib, json, sys, time
    import numpy as np

    args = json.loads(sys.argv[1])

    def status_mb(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def timed(run):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        return result, time.perf_counter() - wall, time.process_time() - cpu

    def digest(array):
        h = hashlib.sha256()
        for row in array:  # row by row: no copy of a large result
            h.update(np.ascontiguousarray(row).data)
        return h.hexdigest()

    from atlasmith import Atlas

    atlas, open_s, open_cpu = timed(lambda: Atlas(args["path"]))
    centre = tuple(n // 2 for n in atlas.shape)
    first, first_s, first_cpu = timed(lambda: atlas.structure_from_coords(centre))
    out = {"step_s": open_s + first_s, "step_cpu_s": open_cpu + first_cpu, "first": int(first)}
    out["open_rss_mb"] = status_mb("VmRSS")
    task = args["task"]
    if task == "lookups":
        rng = np.random.default_rng(0)
        points = rng.integers(0, atlas.shape, size=(args["points"], 3))
        ids, out["step_s"], out["step_cpu_s"] = timed(lambda: atlas.structure_from_coords(points))
        _, out["second_s"], _ = timed(lambda: atlas.structure_from_coords(points))
        out["result_mb"], out["sha256"] = ids.nbytes / 2**20, digest(ids.reshape(1, -1))
    elif task == "mask":
        mask, out["step_s"], out["step_cpu_s"] = timed(lambda: atlas.get_structure_mask("CH"))
        out["result_mb"], out["sha256"] = mask.nbytes / 2**20, digest(mask)
        out["voxels"] = int(np.count_nonzero(mask))
    elif task == "statistics":
        stats, out["step_s"], out["step_cpu_s"] = timed(atlas.structure_statistics)
        out["result_mb"] = float(stats.memory_usage(deep=True).sum()) / 2**20
        out["sha256"] = hashlib.sha256(stats.to_csv().encode()).hexdigest()
    out["hwm_mb"] = status_mb("VmHWM")
    print(json.dumps(out))
    """
)

READER_STEPS = {
    "open + first lookup": {"task": "open"},
    "1M lookups (first call)": {"task": "lookups", "points": 1_000_000},
    "get_structure_mask('CH')": {"task": "mask"},
    "structure_statistics()": {"task": "statistics"},
}


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def evict(folder: Path) -> None:
    """Drop the folder's stacks from the page cache (as after a reboot, or a build whose
    memory pushed them out): only these files, nothing else of the machine's cache."""
    for path in folder.glob("*.tiff"):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def measured(command: list[str], before: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """A command run twice (``before`` each run): sampled for its peak memory, then unsampled
    for its wall and CPU time; the last line of its output (JSON) of the unsampled run, when
    it prints one."""
    before()
    memory = run_measured(command, cwd=Path("/"))
    before()
    cpu = children_cpu_s()
    timing = run_measured(command, cwd=Path("/"), sample=False)
    row: dict[str, Any] = {
        "wall_s": timing["wall_s"],
        "cpu_s": children_cpu_s() - cpu,
        "peak_mb": memory["peak_mb"],
    }
    lines = timing["stdout"].strip().splitlines()
    if lines and lines[-1].startswith("{"):
        row["step"] = json.loads(lines[-1])
        row["step"]["sampled_hwm_mb"] = json.loads(memory["stdout"].strip().splitlines()[-1])[
            "hwm_mb"
        ]
    return row


def reader_section(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """The reader at 10 um: each step in a fresh process."""
    python = [sys.executable]
    if args.src is not None:  # env execs python in its place: the sampled process is python
        python = ["env", f"PYTHONPATH={args.src.resolve()}", sys.executable]
    rows = []
    for name, task in READER_STEPS.items():
        command = [*python, "-c", READER_STEP, json.dumps({"path": str(folder), **task})]
        before = functools.partial(evict, folder) if args.cold else lambda: None
        rows.append({"section": "reader", "name": name, **measured(command, before)})
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return rows


# Each section measures the 10 um atlas in ``folder`` and returns its table rows.
SECTIONS: dict[str, Callable[[argparse.Namespace, Path], list[dict[str, Any]]]] = {
    "reader": reader_section,
}


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'section':<8} {'step':<26} {'wall s':>7} {'cpu s':>7} {'peak MB':>8} "
        f"{'step s':>7} {'step cpu':>8} {'open MB':>8} {'HWM MB':>8} {'result MB':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        step = row.get("step", {})
        inner = (
            f"{step['step_s']:>7.2f} {step['step_cpu_s']:>8.2f} {step['open_rss_mb']:>8.0f} "
            f"{step['sampled_hwm_mb']:>8.0f} {step.get('result_mb', 0):>9.1f}"
            if step
            else ""
        )
        lines.append(
            f"{row['section']:<8} {row['name']:<26} {row['wall_s']:>7.2f} {row['cpu_s']:>7.2f} "
            f"{row['peak_mb']:>8.0f} {inner}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/scale10"))
    parser.add_argument("--sections", nargs="*", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    parser.add_argument("--src", type=Path, default=None, help="atlasmith source tree to read with")
    parser.add_argument(
        "--cold", action="store_true", help="each step reads the stacks out of the page cache"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    args = parser.parse_args()
    start = time.perf_counter()
    folder = make_10um(args.out)
    print(f"10 um atlas: {folder} (ready in {time.perf_counter() - start:.1f} s)")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [row for name in args.sections for row in SECTIONS[name](args, folder)]
    cache = "out of the page cache (--cold)" if args.cold else "in the page cache"
    print(f"stacks {cache}; machine: {os.cpu_count()} cores; load average before {load}, after "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))  # fmt: skip
    print(table(rows))
    print(
        "wall/cpu/peak: the whole process (peak: sampled PSS of its tree); step s/step cpu: the "
        "step alone; open MB: resident once the atlas is open; HWM: the process's own peak RSS"
    )
    for row in rows:
        if "sha256" in row.get("step", {}):
            step = row["step"]
            extra = f", second call {step['second_s']:.2f} s" if "second_s" in step else ""
            print(f"{row['name']}: sha256 {step['sha256'][:16]}...{extra}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
