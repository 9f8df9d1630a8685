"""Progress on the terminal: the long commands (inspect, publish, release, build) show their
steps on a terminal, and nothing when their output is not one."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlasmith.cli import main
from atlasmith.progress import count_bar, step_display
from atlasmith.repository import RepositoryIndex
from atlasmith.server import serve_in_thread
from atlasmith.tokens import TokenStore
from repo_helpers import package_factory

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``atlasmith ARGS`` in its own process with stderr on a pseudo-terminal (100
    columns); return its exit status, its stdout and what the terminal showed (colours and
    cursor moves removed)."""
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every copy of the terminal's end is closed
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", **(env or {})}
    try:
        process = subprocess.run(
            [sys.executable, "-m", "atlasmith", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=environment,
            timeout=300,
        )
    finally:
        os.close(terminal)
        reader.join(timeout=30)
        os.close(master)
    text = _ANSI.sub("", b"".join(shown).decode("utf-8", "replace"))
    return process.returncode, process.stdout.decode(), text


def test_inspect_shows_its_steps_on_a_terminal(example_atlas_dir: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "inspection"
    code, stdout, terminal = run_on_terminal(["inspect", str(example_atlas_dir), "--out", str(out)])
    assert code == 0, terminal
    assert f"report:   {out / 'report.html'}" in stdout  # the result, on stdout as before
    structures = len(json.loads((example_atlas_dir / "structures.json").read_text()))
    for step in ("measuring structures", "drawing sections", "drawing meshes", "validating"):
        assert step in terminal
    # the mesh checks count the structures: the last frame shows them all done
    assert re.search(rf"checking meshes .*\b{structures}/{structures}\b", terminal)
    assert "/?" not in terminal  # no step ever shows an unknown total


def test_inspect_is_quiet_when_stderr_is_not_a_terminal(
    example_atlas_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "inspection"
    result = CliRunner().invoke(main, ["inspect", str(example_atlas_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "checking meshes" not in result.output
    assert result.stdout.splitlines()[-1] == f"report:   {out / 'report.html'}"


def test_publish_over_http_shows_an_upload_bar(
    example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    archive = package_factory(example_atlas_dir, tmp_path_factory.mktemp("packages"))()
    root = tmp_path / "repo"
    root.mkdir()
    (root / "index.json").write_bytes(RepositoryIndex().to_json())  # an existing, empty one
    tokens = tmp_path / "tokens.json"
    token = TokenStore(tokens).add("maintainer")
    with serve_in_thread(root, token_file=tokens) as url:
        code, stdout, terminal = run_on_terminal(
            ["publish", str(archive), "--to", url], env={"ATLASMITH_TOKEN": token}
        )
    assert code == 0, terminal
    assert f"published {archive.name}" in stdout
    size_mb = archive.stat().st_size / 1e6
    assert re.search(rf"uploading {archive.name} .*{size_mb:.1f}/{size_mb:.1f} MB", terminal)
    assert "checking on the server" in terminal
    assert (root / archive.name).is_file()


def test_step_display_counts_items_and_bytes_and_never_shows_an_unknown_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a display drawn to a file that is not a terminal shows its last frame once, at the end
    with step_display(enabled=True) as update:
        update("writing stacks", 0, 0)
        update("meshes", 0, 0)
        for done in range(4):
            update("meshes", done, 3)
        update("uploading x.tar.gz", 1_000_000, 2_500_000)
        update("uploading x.tar.gz", 2_500_000, 2_500_000)
    lines = capsys.readouterr().err.splitlines()
    (written,) = [line for line in lines if "writing stacks" in line]
    (meshes,) = [line for line in lines if "meshes" in line]
    (uploaded,) = [line for line in lines if "uploading" in line]
    assert written.rstrip().endswith("━")  # done, with no count: no "1/1", no "0/?"
    assert meshes.rstrip().endswith("3/3")
    assert uploaded.rstrip().endswith("2.5/2.5 MB")


@pytest.mark.parametrize("enabled", [False, None])
def test_displays_draw_nothing_when_disabled_or_without_a_terminal(
    enabled: bool | None, capsys: pytest.CaptureFixture[str]
) -> None:
    with step_display(enabled) as update:  # None: pytest's captured stderr is no terminal
        update("meshes", 1, 2)
    with count_bar("meshes", enabled) as count:
        count(1, 2)
    assert capsys.readouterr() == ("", "")
