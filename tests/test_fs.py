"""Atomic writes and folder replacement: never a half-written file, never a missing folder."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from atlasmith import _fs
from atlasmith._fs import atomic_file, atomic_write, replace_path, temporary_folder


def _folder(path: Path, content: str, files: int = 20) -> Path:
    path.mkdir(parents=True)
    for k in range(files):
        (path / f"{k}.txt").write_text(content)
    return path


def _content(path: Path) -> set[str]:
    return {p.read_text() for p in path.iterdir()}


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "index.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["index.json"]


def test_a_failed_atomic_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    atomic_write(target, b"old")

    def interrupted_write() -> None:
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half of the new")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_write()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_replace_path_moves_files_and_folders_in(tmp_path: Path) -> None:
    new = _folder(tmp_path / "new", "new")
    replace_path(new, tmp_path / "final")  # nothing there yet
    assert _content(tmp_path / "final") == {"new"}
    replace_path(_folder(tmp_path / "newer", "newer"), tmp_path / "final")
    assert _content(tmp_path / "final") == {"newer"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    (tmp_path / "a.tar.gz").write_bytes(b"old")
    (tmp_path / "b").write_bytes(b"new")
    replace_path(tmp_path / "b", tmp_path / "a.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == b"new"


def test_a_reader_never_sees_the_folder_missing(tmp_path: Path) -> None:
    final = _folder(tmp_path / "final", "0")
    missing: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not final.is_dir():
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for k in range(1, 200):
            replace_path(_folder(tmp_path / f"stage{k}", str(k), files=3), final)
    finally:
        stop.set()
        watcher.join()
    assert _content(final) == {"199"}
    assert not missing


def test_a_failure_after_the_swap_leaves_the_new_folder_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = _folder(tmp_path / "final", "old")
    staged = _folder(tmp_path / "staged", "new")

    def interrupted(path: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the old folder is being deleted

    monkeypatch.setattr(_fs, "remove_tree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replace_path(staged, final)
    assert _content(final) == {"new"}
    assert _content(staged) == {"old"}  # the caller's staging folder, removed by its cleanup


def test_without_exchange_a_failed_rename_puts_the_old_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fs, "_exchange", lambda first, second: False)
    final = _folder(tmp_path / "final", "old")
    staged = _folder(tmp_path / "staged", "new")
    real_rename = os.rename

    def failing(source: object, target: object) -> None:
        if Path(str(source)) == staged:  # the step between removal and rename
            raise OSError("disk gone")
        real_rename(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="disk gone"):
        replace_path(staged, final)
    assert _content(final) == {"old"}
    monkeypatch.setattr(os, "rename", real_rename)
    replace_path(staged, final)  # and the fallback works when nothing fails
    assert _content(final) == {"new"}


_REPLACER = """
import sys
from pathlib import Path
from atlasmith._fs import replace_path

root = Path(sys.argv[1])
k = 0
while True:
    k += 1
    stage = root / f"stage{k}"
    stage.mkdir()
    for n in range(50):
        (stage / f"{n}.txt").write_text(str(k))
    replace_path(stage, root / "final")
    print(k, flush=True)
"""


def test_killing_a_replacement_at_random_moments_never_loses_the_folder(tmp_path: Path) -> None:
    script = tmp_path / "replacer.py"
    script.write_text(textwrap.dedent(_REPLACER))
    root = tmp_path / "root"
    _folder(root / "final", "0", files=50)
    rng = random.Random(0)
    for _ in range(15):
        with subprocess.Popen(
            [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            proc.stdout.readline()  # it has replaced the folder at least once
            time.sleep(rng.uniform(0, 0.05))
            proc.send_signal(signal.SIGKILL)
        contents = _content(root / "final")
        assert len(contents) == 1  # one complete version, never a mix or nothing
        assert len(list((root / "final").iterdir())) == 50
        for leftover in root.iterdir():  # what the killed process was still writing
            if leftover.name != "final":
                _fs.remove_tree(leftover)


def test_temporary_folder_is_hidden_and_removed(tmp_path: Path) -> None:
    seen: list[Path] = []

    def failing_job() -> None:
        with temporary_folder(tmp_path / "out", "build-") as work:
            seen.append(work)
            (work / "file").write_text("x")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_job()
    assert seen[0].name.startswith(".build-")
    assert seen[0].parent == tmp_path / "out"
    assert list((tmp_path / "out").iterdir()) == []


def test_file_lock_lets_one_thread_in_and_threads_wait_without_polling_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads of one process queue on a thread lock: each takes the lock file at its first
    try (on the file alone a waiting thread retries every 50 ms), one at a time."""
    import filelock

    tries = []
    real = filelock.FileLock._acquire

    def counted(self: filelock.FileLock) -> None:
        tries.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(filelock.FileLock, "_acquire", counted)
    inside, most = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        for _ in range(5):
            with _fs.file_lock(tmp_path / "a.lock"):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.002)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=work, name=f"w{k}") for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert len(tries) == 40  # 8 threads x 5 entries, every one at its first try


def test_file_lock_excludes_another_process_and_times_out_naming_the_file(
    tmp_path: Path,
) -> None:
    import filelock

    lock = tmp_path / "a.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from atlasmith._fs import file_lock
            with file_lock({str(lock)!r}):
                print("held", flush=True)
                time.sleep(30)
            """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(filelock.Timeout, match="a.lock"), _fs.file_lock(lock, timeout=0.2):
            pass
    finally:
        holder.kill()
        holder.communicate()
    with _fs.file_lock(lock, timeout=5):  # free again once its holder is gone
        pass
