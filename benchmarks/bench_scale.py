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
* ``build``: ``atlasmith build`` of the 10 um atlas (both formats, local workers: every core)
  from its memory-mapped inputs (``inputs/*.npy``), through the atlas script
  ``allen_mouse_10um.py`` that this benchmark writes next to them; target: under 10 minutes
  and 8 GB (process tree) on a 2-core machine (issue 18).
* ``dask``: ``atlasmith meshes`` of the 10 um folder with ``--scheduler`` on a
  ``distributed.LocalCluster`` of 2 worker processes (one thread each, ``memory_limit`` 4 GB
  each) that the benchmark starts; the client's row, then one row per worker (its process
  tree's peak, sampled the same way, and its CPU time); target: each worker under 4 GB.

``build`` and ``dask`` run their command once, sampled (they take minutes); their outputs go
to ``--out``/``runs/`` and are removed afterwards unless ``--keep``. Run them inside a memory
cgroup on a shared machine: the targets are what is measured, not what is enforced.

Sampling the memory slows the process it watches (it walks its page tables), so each step
runs twice: once sampled, for its memory, then unsampled, for its times.

    .venv/bin/python benchmarks/bench_scale.py [--out /work/scale10] [--sections reader]
        [--cold]      # every step reads the stacks out of the page cache (posix_fadvise)
        [--src DIR]   # the reader from another source tree (e.g. an older one, to compare)
        [--keep]      # keep the build's and the meshes' outputs under --out/runs/
        [--budget-um UM]  # build and mesh with that triangle budget (--budget-um of both)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_meshes import _rss, run_measured
from make_10um import make_10um

REPO = Path(__file__).resolve().parents[1]
BUNDLED_STRUCTURES = REPO / "data" / "allen_mouse_100um" / "structures.json"
WORKER_MEMORY = "4GB"  # the dask section's memory_limit per worker (the target)
DASK_WORKERS = 2

# The 10 um atlas script: Allen's metadata (atlas_scripts/allen_mouse.py) at 10 um, its stacks
# the memory-mapped inputs make_10um.py wrote beside it; {metadata} and {structures} are
# filled in when written.
SCRIPT_10UM = textwrap.dedent(
    '''\
    """Allen mouse at 10 um for bench_scale.py: the memory-mapped inputs of make_10um.py."""

    import json
    from pathlib import Path

    import numpy as np

    {metadata}
    RES_UM = 10
    INPUTS = Path(__file__).resolve().parent / "inputs"


    def load_reference(ctx):
        return np.load(INPUTS / "reference_10um.npy", mmap_mode="r")


    def load_annotation(ctx):
        return np.load(INPUTS / "annotation_10um.npy", mmap_mode="r")


    def load_structures(ctx):
        return json.loads(Path({structures!r}).read_text(encoding="utf-8"))
    '''
)

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


def atlasmith_command(args: argparse.Namespace, *words: str) -> list[str]:
    """The command line of ``atlasmith WORDS`` in a fresh interpreter (``--src``: from there)."""
    code = "from atlasmith.cli import main; main()"
    python = [sys.executable]
    if args.src is not None:
        python = ["env", f"PYTHONPATH={args.src.resolve()}", sys.executable]
    return [*python, "-c", code, *words]


def measured_once(command: list[str]) -> dict[str, Any]:
    """A long command run once, sampled: wall time, CPU time of its tree, peak memory."""
    cpu = children_cpu_s()
    run = run_measured(command, cwd=Path("/"))
    return {"wall_s": run["wall_s"], "cpu_s": children_cpu_s() - cpu, "peak_mb": run["peak_mb"]}


def scratch(args: argparse.Namespace, name: str) -> Path:
    """An empty folder ``--out/runs/NAME`` for a section's outputs."""
    path = args.out / "runs" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def budget(args: argparse.Namespace) -> list[str]:
    """The mesh options of ``--budget-um`` for ``atlasmith build`` and ``atlasmith meshes``."""
    return ["--budget-um", f"{args.budget_um:g}"] if args.budget_um else []


def budget_label(args: argparse.Namespace) -> str:
    """What a row's name says of ``--budget-um``."""
    return f" --budget-um {args.budget_um:g}" if args.budget_um else ""


def write_script(out: Path) -> Path:
    """The 10 um atlas script beside its inputs (rewritten each time: it names this tree's
    structures file)."""
    path = out / "allen_mouse_10um.py"
    path.write_text(
        SCRIPT_10UM.format(structures=str(BUNDLED_STRUCTURES), metadata=_allen_metadata()),
        encoding="utf-8",
    )
    return path


def _allen_metadata() -> str:
    """The metadata constants of atlas_scripts/allen_mouse.py, as lines of Python."""
    import runpy

    names = ("__version__", "ATLAS_NAME", "SPECIES", "ATLAS_LINK", "CITATION", "ATLAS_PACKAGER")
    module = runpy.run_path(str(REPO / "atlas_scripts" / "allen_mouse.py"))
    return "\n".join(f"{name} = {module[name]!r}" for name in (*names, "ORIENTATION", "ROOT_ID"))


def build_section(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """``atlasmith build`` of the 10 um atlas, every format, local workers."""
    script, out = write_script(args.out), scratch(args, "build")
    try:
        command = atlasmith_command(args, "build", str(script), "--out", str(out), *budget(args))
        name = f"atlasmith build (10 um){budget_label(args)}"
        row = {"section": "build", "name": name, **measured_once(command)}
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print("  atlasmith build: done", file=sys.stderr, flush=True)
    return [row]


class TreeSampler:
    """The peak memory (as run_measured: PSS of the process tree) and the CPU time of running
    processes (e.g. dask workers), sampled every 50 ms in a thread until stopped."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peaks = dict.fromkeys(pids, 0)
        self.cpu = {name: self._cpu(p) for name, p in self.processes.items()}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    @staticmethod
    def _cpu(process: Any) -> float:
        times = process.cpu_times()
        return float(times.user + times.system + times.children_user + times.children_system)

    def _watch(self) -> None:
        import psutil

        while not self.stopped.is_set():
            for name, process in self.processes.items():
                try:
                    tree = [process, *process.children(recursive=True)]
                    self.peaks[name] = max(self.peaks[name], sum(_rss(p) for p in tree))
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def stop(self) -> dict[str, dict[str, float]]:
        """Each process's peak (MB) and CPU seconds since the sampler started."""
        self.stopped.set()
        self.thread.join()
        return {
            name: {"peak_mb": self.peaks[name] / 2**20, "cpu_s": self._cpu(p) - self.cpu[name]}
            for name, p in self.processes.items()
        }


def dask_section(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """``atlasmith meshes`` of the 10 um folder on a LocalCluster of 2 workers (4 GB each)."""
    import distributed

    out = scratch(args, "dask")
    cluster = distributed.LocalCluster(
        n_workers=DASK_WORKERS,
        threads_per_worker=1,
        processes=True,
        memory_limit=WORKER_MEMORY,
        dashboard_address=":0",  # a free port (None means 8787, which may be taken)
    )
    try:
        with distributed.Client(cluster) as client:
            pids = client.run(os.getpid)  # worker address -> pid
        names = {
            f"worker {k + 1} ({address})": pid for k, (address, pid) in enumerate(pids.items())
        }
        sampler = TreeSampler(names)
        address = cluster.scheduler_address
        command = atlasmith_command(
            args, "meshes", str(folder), "--out", str(out), "--scheduler", address, *budget(args)
        )
        try:
            client_row = measured_once(command)
        finally:
            workers = sampler.stop()
    finally:
        cluster.close()
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    client = f"atlasmith meshes (client){budget_label(args)}"
    rows = [{"section": "dask", "name": client, **client_row}]
    for name, figures in workers.items():
        rows.append({"section": "dask", "name": name, "wall_s": client_row["wall_s"], **figures})
    print("  atlasmith meshes on the LocalCluster: done", file=sys.stderr, flush=True)
    return rows


# Each section measures the 10 um atlas in ``folder`` and returns its table rows.
SECTIONS: dict[str, Callable[[argparse.Namespace, Path], list[dict[str, Any]]]] = {
    "reader": reader_section,
    "build": build_section,
    "dask": dask_section,
}


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'section':<8} {'step':<40} {'wall s':>7} {'cpu s':>7} {'peak MB':>8} "
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
            f"{row['section']:<8} {row['name']:<40} {row['wall_s']:>7.2f} {row['cpu_s']:>7.2f} "
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
    parser.add_argument("--keep", action="store_true", help="keep the build and meshes outputs")
    parser.add_argument(
        "--budget-um", type=float, default=0.0, help="build and mesh with this triangle budget"
    )
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
