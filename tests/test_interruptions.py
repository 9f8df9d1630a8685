"""Interrupted work ends clean: SIGTERM or SIGKILL of a build (its main process only) leaves
no worker running and no staging folder for long; Ctrl-C during an install keeps the
verified download and removes what the extraction wrote (issue 17)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from atlasmith._fs import temporary_folder
from atlasmith.package import sha256_file
from mounts import mounted_tmpfs
from test_build import DATA, SCRIPT
from test_download import RepoServer


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _build_until_workers(tmp_path: Path, out: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    """Start ``atlasmith build`` of the real Allen 100 um script; return once its mesh
    workers run."""
    script = tmp_path / "test_mouse.py"
    script.write_text(SCRIPT)
    command = [sys.executable, "-m", "atlasmith", "build", str(script), "--out", str(out)]
    command += ["--source-dir", str(DATA), "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    own = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "the build never started its mesh workers"
        workers = {c for c in _children(process.pid) if _cmdline(c) == own}  # forked
        if workers and any(out.glob(".*build-*/*/meshes")):  # the mesh stage runs
            return process, workers
        time.sleep(0.01)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _wait_gone(pids: set[int], seconds: float = 20) -> set[int]:
    deadline = time.monotonic() + seconds
    while (alive := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_sigterm_of_a_build_stops_its_workers_and_removes_its_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process, workers = _build_until_workers(tmp_path, out)
    process.send_signal(signal.SIGTERM)  # the main process only, as `kill PID` does
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    assert _wait_gone(workers) == set()
    assert list(out.iterdir()) == []  # no staging folder, no half-written output


def test_sigkill_of_a_build_kills_its_workers_and_the_next_build_cleans(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process, workers = _build_until_workers(tmp_path, out)
    process.kill()  # the main process only: no cleanup can run in it
    process.communicate(timeout=60)
    assert _wait_gone(workers) == set()  # the workers die with their parent
    left = _hidden(out)
    assert left  # the killed build's staging folder
    done = subprocess.run(
        [sys.executable, "-m", "atlasmith", "build", str(tmp_path / "test_mouse.py"), "--out",
         str(out), "--source-dir", str(DATA)],
        capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert _hidden(out) == []  # the next build removed it


_HOLD = """
import sys, time
from atlasmith._fs import temporary_folder
with temporary_folder(sys.argv[1], "job-") as folder:
    (folder / "data").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(600)
"""


def test_a_temporary_folder_of_a_killed_process_is_removed_by_the_next(tmp_path: Path) -> None:
    """A process killed inside ``temporary_folder`` leaves its folder; the next
    ``temporary_folder`` of that prefix in that folder removes it, but never the folder of a
    process still running."""
    parent = tmp_path / "out"
    running, killed = (
        subprocess.Popen([sys.executable, "-c", _HOLD, str(parent)], stdout=subprocess.PIPE)
        for _ in range(2)
    )
    try:
        assert running.stdout is not None
        assert killed.stdout is not None
        live = Path(running.stdout.readline().decode().strip())
        dead = Path(killed.stdout.readline().decode().strip())
        killed.kill()
        killed.wait(timeout=30)
        with temporary_folder(parent, "job-") as mine:
            assert mine.is_dir()
            assert live.is_dir()  # its process holds it
            assert not dead.exists()  # nobody holds it any more
    finally:
        for process in (running, killed):
            process.kill()
            process.communicate(timeout=30)
    assert sorted(p.name for p in parent.iterdir()) == [live.name]


def test_ctrl_c_during_an_install_keeps_the_download_and_removes_the_extraction(
    repo: RepoServer, cache_dir: Path
) -> None:
    """Ctrl-C (SIGINT) the moment the archive is downloaded, verified and moved into the
    cache's downloads, while the extraction thread still runs (``crash_points.
    interrupt_after``: the signal comes right after that rename): the verified archive stays,
    the staging folder is empty, nothing is installed, and the next install uses the kept
    archive (no second download) and then removes it."""
    import os

    from test_client_cli import NAME

    archive = cache_dir / ".atlasmith" / "downloads" / f"{NAME}_v1.1.tar.gz"
    staging = cache_dir / ".atlasmith" / "staging"
    env = dict(os.environ, ATLASMITH_REPOSITORY=repo.url, ATLASMITH_CACHE_DIR=str(cache_dir))
    # Ctrl-C as a terminal delivers it (a shell may start background jobs with SIGINT ignored)
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import crash_points; "
        "crash_points.interrupt_after('.tar.gz'); from atlasmith.cli import main; "
        f"sys.argv = ['atlasmith', 'install', {NAME!r}]; main()"
    )
    interrupted = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    assert interrupted.returncode != 0, interrupted.stderr.decode()
    assert "Traceback" not in interrupted.stderr.decode()
    assert [p for p in staging.rglob("*") if p.is_file()] == []
    assert list(cache_dir.glob(f"{NAME}_v*")) == []  # nothing installed
    assert sha256_file(archive) == sha256_file(repo.root / archive.name)  # kept, verified
    gets = len(repo.gets(archive.name))
    again = subprocess.run(
        [sys.executable, "-m", "atlasmith", "install", NAME],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr.decode()
    assert len(repo.gets(archive.name)) == gets  # the kept archive was used
    assert not archive.exists()  # and removed once installed
    assert len(list(cache_dir.glob(f"{NAME}_v*"))) == 1


def test_a_read_only_output_folder_is_one_clear_line(tmp_path: Path) -> None:
    """``build --out`` on a read-only file system (a tmpfs mounted read-only; the tests run as
    root, whom permission bits would not stop): exit 1, one line naming the path and the
    cause, no traceback."""
    from click.testing import CliRunner

    from atlasmith.cli import main

    script = tmp_path / "test_mouse.py"
    script.write_text(SCRIPT)
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as readonly:
        out = readonly / "out"
        result = CliRunner().invoke(
            main, ["build", str(script), "--out", str(out), "--source-dir", str(DATA)]
        )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Read-only file system" in result.output
    assert str(out) in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_source_dir_that_does_not_exist_is_called_out_first(tmp_path: Path) -> None:
    """``--source-dir`` naming a missing folder is refused by name before any loading, with no
    project-internal path suggested."""
    from click.testing import CliRunner

    from atlasmith.cli import main

    script = tmp_path / "test_mouse.py"
    script.write_text(SCRIPT)
    missing = tmp_path / "raw-dat"  # a typo
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["build", str(script), "--out", str(out), "--source-dir", str(missing)]
    )
    assert result.exit_code == 1
    assert f"--source-dir {missing} does not exist" in result.output
    assert "shared/data" not in result.output
    assert not out.exists()
    helped = CliRunner().invoke(main, ["build", "--help"])
    assert "shared/data" not in helped.output
