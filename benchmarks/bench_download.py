"""Download + verify + install of the 25 um Allen package: atlasmith against BrainGlobe 2.3.1's
client and against ``curl`` + ``tar -xzf``, each as a whole process, in one run.

What is measured (the same archive, served by the same loopback HTTP server):

* ``atlasmith install allen_mouse_25um`` (download, sha256 check against index.json, safe
  extraction into a staging folder, atomic rename);
* BrainGlobe 2.3.1: ``BrainGlobeAtlas("allen_mouse_25um", check_latest=False)`` in its own
  virtual environment, with ``_remote_url_base`` pointed at the server and its internet/GIN
  probes patched out (download, ``extractall``, then it opens the atlas);
* ``curl -o`` then ``tar -xzf`` (no verification), and, for information, the same with
  ``sha256sum`` in between.

The package: annotation from ``allen_ccf2017_25um/annotation_25.nrrd``, the 100 um BrainGlobe
reference upsampled 4x, structures and metadata of the bundled 100 um atlas, BrainGlobe's
meshes; archived with :func:`atlasmith.package.make_archive`.

Usage::

    python benchmarks/bench_download.py [--out bench-out] [--baseline-venv bench-out/bgvenv]
                                        [--repeat 3] [--shared-data ../shared/data]
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from baseline import ensure_baseline_venv, log

REPO = Path(__file__).resolve().parents[1]
NAME, VERSION = "allen_mouse_25um", "1.2"
FOLDER = f"{NAME}_v{VERSION}"
BG_SCRIPT = """
import sys
from pathlib import Path
import brainglobe_atlasapi.bg_atlas as bg
bg.check_internet_connection = lambda *a, **k: True
bg.check_gin_status = lambda *a, **k: True
bg.BrainGlobeAtlas._remote_url_base = sys.argv[1] + "{}"
target = Path(sys.argv[2])
bg.BrainGlobeAtlas(sys.argv[3], brainglobe_dir=target, interm_download_dir=target,
                   check_latest=False)
"""


# --- inputs ----------------------------------------------------------------------------------


def build_folder(shared: Path, out: Path) -> Path:
    """The 25 um BrainGlobe-format folder (see the module docstring)."""
    import nrrd
    import numpy as np
    import tifffile

    folder = out / FOLDER
    bundled = REPO / "data" / "allen_mouse_100um"
    folder.mkdir(parents=True)
    annotation, _ = nrrd.read(str(shared / "allen_ccf2017_25um" / "annotation_25.nrrd"))
    annotation = np.ascontiguousarray(annotation, dtype=np.uint32)
    tifffile.imwrite(folder / "annotation.tiff", annotation)
    reference = tifffile.imread(shared / "allen_mouse_100um_v1.2_brainglobe" / "reference.tiff")
    for axis in range(3):
        reference = np.repeat(reference, 4, axis=axis)
    if reference.shape != annotation.shape:
        raise SystemExit(f"reference {reference.shape} != annotation {annotation.shape}")
    tifffile.imwrite(folder / "reference.tiff", np.ascontiguousarray(reference, dtype=np.uint16))
    for name in ("structures.json", "structures.csv", "README.txt"):
        shutil.copyfile(bundled / name, folder / name)
    shutil.copytree(shared / "allen_mouse_100um_v1.2_brainglobe" / "meshes", folder / "meshes")
    metadata = json.loads((bundled / "metadata.json").read_text())
    metadata.update(resolution=[25.0] * 3, shape=list(annotation.shape), version=VERSION)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def build_repository(shared: Path, out: Path) -> Path:
    """``out/repo`` with the archive, index.json and both .conf files (built once)."""
    from atlasmith.package import make_archive, sha256_file, write_manifest
    from atlasmith.repository import IndexEntry, RepositoryIndex

    repo = out / "repo"
    archive = repo / f"{FOLDER}.tar.gz"
    if (repo / "index.json").is_file() and archive.is_file():
        return repo
    log("building the 25 um package (once)")
    work = out / "package"
    shutil.rmtree(work, ignore_errors=True)
    folder = build_folder(shared, work)
    write_manifest(folder, {"benchmark": "bench_download", "source": str(shared)})
    repo.mkdir(parents=True, exist_ok=True)
    made = make_archive(folder, repo)
    entry = IndexEntry(
        NAME, VERSION, made.name, sha256_file(made), made.stat().st_size, "2026-11-24T00:00:00Z"
    )
    index = RepositoryIndex((entry,))
    (repo / "index.json").write_bytes(index.to_json())
    for conf in ("last_versions.conf", "latest_versions.conf"):
        (repo / conf).write_text(index.render_conf())
    shutil.rmtree(work)
    return repo


def serve(root: Path) -> tuple[str, Callable[[], None]]:
    """A static file server (Python's, threaded) on loopback."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}/", stop


# --- the contenders --------------------------------------------------------------------------


def contenders(url: str, bg_python: Path, work: Path, sha: str) -> dict[str, Callable[[], Path]]:
    """Name -> a function that runs one whole-process install and returns the atlas folder."""
    atlasmith = Path(sys.executable).with_name("atlasmith")
    archive_url = f"{url}{FOLDER}.tar.gz"
    work.mkdir(parents=True, exist_ok=True)
    bg_script = work / "bg_install.py"
    bg_script.write_text(BG_SCRIPT)

    def fresh(name: str) -> Path:
        target = work / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        return target

    def run_atlasmith() -> Path:
        target = fresh("atlasmith")
        cmd = [str(atlasmith), "install", NAME, "--repository", url, "--cache-dir", str(target)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return target / FOLDER

    def run_brainglobe() -> Path:
        target = fresh("brainglobe")
        env = dict(os.environ, BRAINGLOBE_CONFIG_DIR=str(work / "bg_config"))
        cmd = [str(bg_python), str(bg_script), url, str(target), NAME]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return target / FOLDER

    def run_curl_tar(check: bool) -> Path:
        target = fresh("curl_sha_tar" if check else "curl_tar")
        tgz = target / "atlas.tar.gz"
        verify = f"echo '{sha}  {tgz}' | sha256sum --quiet -c - && " if check else ""
        script = f"curl -sSf -o {tgz} {archive_url} && {verify}tar -xzf {tgz} -C {target}"
        subprocess.run(["sh", "-c", script], check=True)
        return target / FOLDER

    return {
        "atlasmith install": run_atlasmith,
        "BrainGlobe 2.3.1 BrainGlobeAtlas": run_brainglobe,
        "curl + tar -xzf": partial(run_curl_tar, False),
        "curl + sha256sum + tar -xzf": partial(run_curl_tar, True),
    }


def check_result(folder: Path, expected: dict[str, int]) -> None:
    """Every file of the package is there with its size."""
    for name, size in expected.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            raise SystemExit(f"{folder}: {name} missing or of the wrong size")


def expected_files(archive: Path) -> dict[str, int]:
    from atlasmith.package import inspect_archive

    return dict(inspect_archive(archive).files)


# --- the run ---------------------------------------------------------------------------------


def measure(
    runs: dict[str, Callable[[], Path]], repeat: int, expected: dict[str, int]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            os.sync()  # the previous run's writes are flushed first, not billed to this one
            start = time.perf_counter()
            folder = runs[name]()
            times[name].append(time.perf_counter() - start)
            check_result(folder, expected)
            log(f"round {round_ + 1}: {name}: {times[name][-1]:.2f} s")
    return times


def table(times: dict[str, list[float]], archive: Path, unpacked: int) -> str:
    ours = times["atlasmith install"]
    best, middle = min(ours), statistics.median(ours)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"download + verify + install of {archive.name} "
        f"({archive.stat().st_size / 1e6:.1f} MB archive, {unpacked / 1e6:.1f} MB unpacked), "
        f"loopback HTTP, {len(ours)} runs each (order alternated), load average {load}",
        "",
        f"| {'contender':<34} | {'median s':>8} | {'min s':>6} "
        f"| {'speed-up (median)':>17} | {'speed-up (min)':>14} |",
        f"|{'-' * 36}|{'-' * 10}|{'-' * 8}|{'-' * 19}|{'-' * 16}|",
    ]
    for name, values in times.items():
        median, low = statistics.median(values), min(values)
        lines.append(
            f"| {name:<34} | {median:>8.2f} | {low:>6.2f} "
            f"| {median / middle:>16.2f}x | {low / best:>13.2f}x |"
        )
    lines += [
        "",
        "speed-up = contender's time / atlasmith's (> 1: atlasmith is faster); min = best of the",
        "runs, the least disturbed by other work on the machine.",
        "Targets: >= 1.0x against BrainGlobe's client, >= 0.8x against curl + tar -xzf.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "download")
    parser.add_argument("--baseline-venv", type=Path, default=REPO / "bench-out" / "bgvenv")
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bg_python = ensure_baseline_venv(args.baseline_venv.resolve())
    out = args.out.resolve()
    repo = build_repository(args.shared_data.resolve(), out)
    archive = repo / f"{FOLDER}.tar.gz"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    expected = expected_files(archive)
    url, stop = serve(repo)
    try:
        runs = contenders(url, bg_python, out / "runs", sha)
        times = measure(runs, args.repeat, expected)
    finally:
        stop()
        shutil.rmtree(out / "runs", ignore_errors=True)
    print(table(times, archive, sum(expected.values())))


if __name__ == "__main__":
    main()
