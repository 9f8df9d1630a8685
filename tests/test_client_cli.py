"""The client commands, in-process (click's runner) and as real processes: hostile archives
through ``install ARCHIVE_PATH``, downloads killed with SIGKILL at random points, and eight
processes fetching the same atlas at once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlasmith.cache import AtlasCache
from atlasmith.cli import main
from atlasmith.config import load_settings
from atlasmith.package import verify_folder
from test_archive import HOSTILE_CAP, HOSTILE_REASONS, hostile_archives, tree_snapshot
from test_download import RepoServer, write_repository

NAME = "allen_mouse_100um"
ARCHIVE = f"{NAME}_v1.1.tar.gz"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def cache_at(cache_dir: Path, url: str = "http://127.0.0.1:9/") -> AtlasCache:
    return AtlasCache(load_settings(repository=url, cache_dir=cache_dir))


# --- the commands ------------------------------------------------------------------------------


def test_list_install_verify_info_remove(repo: RepoServer, cache_dir: Path) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    assert run("update", *opts) == (0, f"No atlases installed in {cache_dir}: nothing to update.\n")
    code, out = run("list", "--json", *opts)
    assert code == 0
    assert json.loads(out) == [
        {
            "name": NAME,
            "downloaded": False,
            "local_version": None,
            "latest_version": "1.1",
            "updated": None,
            "yanked": None,
            "yank_reason": None,
            "path": None,
        }
    ]
    code, out = run("install", NAME, *opts)
    assert code == 0, out
    assert f"{NAME} 1.1 installed in {cache_dir / NAME}_v1.1" in out
    code, out = run("list", *opts)
    assert code == 0
    assert NAME in out
    assert "True" in out
    code, out = run("list", "--remote", "--json", *opts)
    (row,) = json.loads(out)
    assert (row["version"], row["installed"], row["yanked"]) == ("1.1", True, False)
    code, out = run("verify", *opts)
    assert (code, out.splitlines()[0]) == (0, f"{NAME}: OK ({cache_dir / NAME}_v1.1)")
    code, out = run("info", NAME, "--json", *opts)
    info = json.loads(out)
    assert (info["version"], info["latest_version"], info["manifest"]) == ("1.1", "1.1", True)
    assert info["metadata"]["name"] == "allen_mouse"
    code, out = run("info", "--json", *opts)
    assert json.loads(out)["cache_dir"] == str(cache_dir)
    code, out = run("remove", NAME, *opts)
    assert code == 0
    assert not (cache_dir / f"{NAME}_v1.1").exists()
    code, out = run("remove", NAME, *opts)
    assert code == 1
    assert "is not installed" in out


def test_yanked_versions_in_install_update_and_list(
    tmp_path: Path, packages: dict[str, Path], cache_dir: Path
) -> None:
    """A pinned yanked version installs with its reason printed; ``update`` keeps it (never a
    downgrade) and says why; ``list`` shows it yanked; with every version yanked, an unpinned
    install says how to install one exactly."""
    from atlasmith.repository import CONF_NAMES, RepositoryIndex

    root = write_repository(tmp_path / "r", list(packages.values()))
    server = RepoServer(root).start()
    opts = ["--repository", server.url, "--cache-dir", str(cache_dir)]

    def yank(version: str, reason: str) -> None:
        index = RepositoryIndex.from_json((root / "index.json").read_bytes())
        index = index.with_yanked(NAME, version, reason)
        (root / "index.json").write_bytes(index.to_json())
        for name in CONF_NAMES:
            (root / name).write_text(index.render_conf())

    try:
        yank("1.2", "wrong orientation")
        result = CliRunner().invoke(main, ["install", NAME, "--version", "1.2", *opts])
        assert result.exit_code == 0, result.output
        assert f"{NAME} 1.2 installed in" in result.stdout
        assert f"warning: {NAME} 1.2 is yanked: wrong orientation." in result.stderr
        result = CliRunner().invoke(main, ["update", NAME, *opts])
        assert result.exit_code == 0, result.output
        assert f"{NAME} stays at 1.2 ({cache_dir / NAME}_v1.2)" in result.stdout
        assert "(installed) is yanked: wrong orientation" in result.stderr
        assert f"`atlasmith install {NAME} --version 1.1`" in result.stderr
        (row,) = json.loads(run("list", "--json", *opts)[1])
        assert (row["local_version"], row["latest_version"]) == ("1.2", "1.1")
        assert (row["yanked"], row["yank_reason"]) == (True, "wrong orientation")
        code, out = run("list", "--remote", "--json", *opts)
        reasons = {r["version"]: r["yank_reason"] for r in json.loads(out)}
        assert reasons == {"1.1": None, "1.2": "wrong orientation"}
        yank("1.1", "superseded")
        code, out = run("install", NAME, "--cache-dir", str(tmp_path / "fresh"), opts[0], opts[1])
        assert code == 1
        (line,) = out.splitlines()
        assert "1.2 (wrong orientation), 1.1 (superseded)" in line
        assert f"`atlasmith install {NAME} --version 1.2`" in line
        # an offline bundle skips such an atlas, saying so
        result = CliRunner().invoke(main, ["install", str(root), "--cache-dir", str(cache_dir)])
        assert result.exit_code == 0, result.output
        assert f"warning: {NAME} is not installed from {root}: every version" in result.stderr
        assert [a.version for a in cache_at(cache_dir).installed()] == ["1.2"]
    finally:
        server.stop()


def test_list_and_info_fall_back_to_the_cached_index(repo: RepoServer, cache_dir: Path) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    assert run("install", NAME, *opts)[0] == 0
    repo.stop()
    result = CliRunner().invoke(main, ["list", "--json", *opts])
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)
    assert (row["local_version"], row["latest_version"]) == ("1.1", "1.1")
    assert "showing its cached index" in result.stderr
    code, out = run("info", NAME, "--json", *opts)
    assert code == 0
    assert "cached index" in json.loads(out)["repository"]


def test_verify_reports_damage_and_foreign_folders(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    assert run("install", NAME, *opts)[0] == 0
    folder = cache_dir / f"{NAME}_v1.1"
    data = bytearray((folder / "annotation.tiff").read_bytes())
    data[-5] ^= 0x02
    (folder / "annotation.tiff").write_bytes(bytes(data))
    code, out = run("verify", NAME, *opts)
    assert code == 1
    assert "FAILED" in out
    assert "changed content: annotation.tiff" in out
    (folder / "manifest.json").unlink()  # as BrainGlobe's own client installs it
    code, out = run("verify", NAME, *opts)
    assert code == 0
    assert "NOT CHECKED" in out
    assert "installed by another tool" in out


def test_update_keeps_the_old_atlas_when_the_download_fails(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    assert run("install", NAME, *opts)[0] == 0
    write_repository(repo.root, [packages["1.1"], packages["1.2"]])
    (repo.root / f"{NAME}_v1.2.tar.gz").write_bytes(b"<html>404 Not Found</html>")
    code, out = run("update", *opts)
    assert code == 1
    assert "bytes" in out or "sha256" in out
    assert [a.version for a in cache_at(cache_dir).installed()] == ["1.1"]
    assert verify_folder(cache_dir / f"{NAME}_v1.1") == []
    write_repository(repo.root, [packages["1.1"], packages["1.2"]])
    code, out = run("update", NAME, *opts)
    assert (code, out.strip()) == (0, f"{NAME} updated to 1.2 ({cache_dir / NAME}_v1.2)")
    code, out = run("install", f"{NAME}_v1.1", *opts)  # a folder name pins the version
    assert (code, out.strip()) == (0, f"{NAME} 1.1 installed in {cache_dir / NAME}_v1.1")


def test_offline_install_names_the_atlas(
    repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    code, out = run("install", NAME, "--repository", repo.url, "--cache-dir", str(cache_dir))
    assert code == 1
    assert f"Atlas {NAME} is not installed" in out
    assert "offline mode is on" in out
    assert repo.log == []


def test_install_archive_path_and_bundle(
    packages: dict[str, Path], cache_dir: Path, tmp_path: Path
) -> None:
    code, out = run("install", str(packages["1.2"]), "--cache-dir", str(cache_dir), "--offline")
    assert code == 0, out
    assert "1.2 installed" in out
    bundle = write_repository(tmp_path / "bundle", [packages["1.1"]])
    code, out = run("install", str(bundle), "--cache-dir", str(cache_dir), "--offline")
    assert code == 0, out
    assert [a.version for a in cache_at(cache_dir).installed()] == ["1.1"]
    code, out = run("install", str(tmp_path / "nope.tar.gz"), "--cache-dir", str(cache_dir))
    assert code == 1
    assert "does not exist" in out


@pytest.mark.parametrize("case", sorted(hostile_archives()))
def test_hostile_archive_path_is_refused(
    case: str, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASMITH_MAX_ARCHIVE_BYTES", str(HOSTILE_CAP))
    archive = tmp_path / f"{NAME}_v1.0.tar.gz"
    archive.write_bytes(hostile_archives()[case]())
    code, out = run("install", str(archive), "--cache-dir", str(cache_dir), "--offline")
    assert code == 1
    assert HOSTILE_REASONS[case] in " ".join(out.split())
    assert cache_at(cache_dir).installed() == []
    assert all(p == "cache" or p.startswith("cache/") for p in tree_snapshot(tmp_path / "jail"))


# --- real processes ------------------------------------------------------------------------------


def install_process(
    repo: RepoServer, cache_dir: Path, command: str = "install"
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ATLASMITH_REPOSITORY=repo.url, ATLASMITH_CACHE_DIR=str(cache_dir))
    return subprocess.Popen(
        [sys.executable, "-m", "atlasmith", command, NAME],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def assert_nothing_half_installed(cache_dir: Path) -> bool:
    """Either no atlas or one complete atlas (and a BrainGlobe 3 copy either complete or not
    visible: its manifest goes in last); returns whether one is installed."""
    from atlasmith.formats import V3Atlas

    cache = cache_at(cache_dir)
    installed = cache.installed()
    assert len(installed) <= 1
    visible = {p.name for p in cache_dir.iterdir()} if cache_dir.exists() else set()
    assert visible <= {".atlasmith", "last_versions.conf", f"{NAME}_v1.1", "brainglobe-atlasapi"}
    if installed:
        assert verify_folder(installed[0].path) == []
    for copy in cache.installed_v3():
        assert V3Atlas(copy.path).problems() == []
    return bool(installed)


def test_downloads_killed_at_random_points_never_leave_a_half_installed_atlas(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    size = packages["1.1"].stat().st_size
    repo.throttle = 1.5e6  # bytes per second, so that kills land mid-download
    rng = random.Random(20261124)
    outcomes = []
    for trial in range(12):
        before = repo.sent.get("/" + ARCHIVE, 0)
        process = install_process(repo, cache_dir)
        if trial % 3 == 2:  # kill after a random delay: start-up, download or install
            time.sleep(rng.uniform(0.1, 3.0))
        else:  # kill after a random number of the bytes still to send has been sent
            partial = sum(p.stat().st_size for p in cache_dir.rglob("*.part"))
            target = before + rng.randint(1, max(1, size - partial))
            deadline = time.monotonic() + 30
            while repo.sent.get("/" + ARCHIVE, 0) < target and process.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.communicate()  # reaps it and closes its pipes
        installed = assert_nothing_half_installed(cache_dir)
        outcomes.append(installed)
        if installed:  # start the next trial from scratch, keeping any partial download
            cache_at(cache_dir).remove(NAME)
    repo.throttle = None
    process = install_process(repo, cache_dir)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert assert_nothing_half_installed(cache_dir)
    ranged = [r for r in repo.gets(ARCHIVE) if r is not None]
    assert ranged, "no download was ever resumed"
    assert outcomes.count(False) >= 6  # most kills interrupted the install


def test_a_remove_killed_mid_deletion_never_comes_back(
    repo: RepoServer, cache_dir: Path, packages: dict[str, Path]
) -> None:
    """SIGKILL of `atlasmith remove` while it deletes, then `atlasmith install`: the half
    deleted folder is never brought back as "installed"; the install downloads it whole."""
    import tarfile

    with tarfile.open(packages["1.1"]) as tar:
        files = sum(member.isfile() for member in tar.getmembers())
    trash = cache_dir / ".atlasmith" / "trash" / NAME
    caught = 0
    for _ in range(8):
        if not cache_at(cache_dir, repo.url).installed():
            cache_at(cache_dir, repo.url).fetch(NAME)
        process = install_process(repo, cache_dir, "remove")
        while process.poll() is None and not (trash.is_dir() and any(trash.iterdir())):
            pass  # kill as soon as the deletion has started
        process.send_signal(signal.SIGKILL)
        process.communicate()
        caught += trash.is_dir() and any(p.is_dir() for p in trash.iterdir())
        # killed before the removal began: untouched; once begun (its journal written), the
        # next operation finishes it
        journal = cache_dir / ".atlasmith" / "swaps" / f"{NAME}.json"
        still = bool(cache_at(cache_dir).installed()) and not journal.is_file()
        gets = len(repo.gets(ARCHIVE))
        process = install_process(repo, cache_dir)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        assert assert_nothing_half_installed(cache_dir)
        (installed,) = cache_at(cache_dir).installed()
        assert sum(p.is_file() for p in installed.path.rglob("*")) == files
        assert len(repo.gets(ARCHIVE)) == gets + (not still)  # downloaded, not resurrected
    assert caught >= 4, "the kills never landed while the folder was being deleted"


def test_eight_processes_fetch_the_same_atlas_with_one_download(
    repo: RepoServer, cache_dir: Path
) -> None:
    repo.throttle = 1e6  # slow enough that the processes overlap
    processes = [install_process(repo, cache_dir) for _ in range(8)]
    results = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
        assert f"{NAME} 1.1 installed in {cache_dir / NAME}_v1.1" in out.decode()
    assert repo.gets(ARCHIVE) == [None]  # one GET, never resumed or repeated
    assert assert_nothing_half_installed(cache_dir)


# --- what the commands show ---------------------------------------------------------------------

LONG = "allen_mouse_with_a_rather_long_name_100um"  # 41 characters


@pytest.fixture
def long_repo(example_atlas_dir: Path, packages: dict[str, Path], tmp_path: Path) -> Path:
    """A repository folder offering NAME and an atlas with a long name."""
    from test_download import make_package

    long = make_package(example_atlas_dir, tmp_path / "work", LONG, "1.0")
    return write_repository(tmp_path / "long-repo", [packages["1.1"], long])


def _list_remote(repo: Path, cache_dir: Path, columns: int) -> tuple[list[str], str]:
    args = ["list", "--remote", "--repository", str(repo), "--cache-dir", str(cache_dir)]
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines(), result.stderr


def test_list_remote_fits_80_columns_without_cutting_names(
    long_repo: Path, cache_dir: Path
) -> None:
    lines, note = _list_remote(long_repo, cache_dir, 80)
    assert max(len(line) for line in lines) <= 80  # no line the terminal would wrap
    assert len([line for line in lines if f" {LONG} " in line]) == 1  # whole, on one line
    assert len([line for line in lines if f" {NAME} " in line]) == 1
    header = next(line for line in lines if " name " in line)
    assert " version " in header
    assert "sha256" not in header
    assert "left out to fit 80 columns" in note
    assert "sha256" in note


def test_list_remote_never_cuts_a_name_wider_than_the_terminal(
    long_repo: Path, cache_dir: Path
) -> None:
    lines, note = _list_remote(long_repo, cache_dir, 30)
    (row,) = [line for line in lines if LONG in line]
    assert row.split()[1:3] == [LONG, "│"]  # the whole name, in its own cell
    header = next(line for line in lines if " name " in line)
    assert header.split() == ["┃", "name", "┃", "version", "┃"]  # only what was kept
    assert "installed" in note


def test_list_remote_into_a_pipe_shows_every_column(long_repo: Path, cache_dir: Path) -> None:
    from atlasmith.package import sha256_file

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "atlasmith", "list", "--remote", "--repository", str(long_repo),
         "--cache-dir", str(cache_dir)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    assert sha256_file(long_repo / f"{LONG}_v1.0.tar.gz") in done.stdout
    assert "published" in done.stdout
    assert done.stderr == ""


def _summary(out: str) -> dict[str, str]:
    """``atlasmith info``'s ``  label  value`` lines as a dict."""
    pairs = (line.strip().split(None, 1) for line in out.splitlines()[1:])
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def test_info_prints_a_readable_summary_and_json_on_request(
    repo: RepoServer, cache_dir: Path
) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    code, out = run("info", NAME, *opts)
    assert code == 0, out
    assert out.splitlines()[0] == NAME
    assert _summary(out)["installed"] == f"no (`atlasmith install {NAME}` installs 1.1)"
    assert run("install", NAME, *opts)[0] == 0
    code, out = run("info", NAME, *opts)
    assert code == 0, out
    assert "{" not in out  # no raw JSON
    shown = _summary(out)
    folder = cache_dir / f"{NAME}_v1.1"
    metadata = json.loads((folder / "metadata.json").read_text())
    structures = json.loads((folder / "structures.json").read_text())
    assert shown["installed"].startswith(f"1.1 in {folder}, ")
    assert shown["installed"].endswith(" MB on disk")
    assert shown["versions"] == "1.1 (installed, 1.6 MB)"
    assert shown["species"] == metadata["species"]
    assert shown["resolution"] == "100 x 100 x 100 µm"
    assert shown["shape"] == " x ".join(map(str, metadata["shape"])) + " voxels"
    assert shown["structures"] == str(len(structures))
    assert shown["citation"] == metadata["citation"]
    code, out = run("info", NAME, "--json", *opts)
    assert json.loads(out)["metadata"] == metadata  # --json: the raw data, as before
    code, out = run("info", *opts)
    assert _summary("\n" + out)["installed"] == folder.name  # settings: plain values too


@pytest.mark.parametrize("command", ["remove", "verify"])
def test_a_misspelt_name_is_reported_as_not_installed_with_close_names(
    command: str, repo: RepoServer, cache_dir: Path
) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    assert run("install", NAME, *opts)[0] == 0
    before = tree_snapshot(cache_dir)
    for typo in ("alen_mouse_100um", "allen_mouse_100m"):  # a valid name, and not even one
        code, out = run(command, typo, *opts)
        assert code == 1
        assert f"{typo} is not installed in {cache_dir}" in out
        assert f"Did you mean {NAME}?" in out
        assert "`atlasmith list`" in out
        assert "atlasmith install" not in out  # never the advice to install the typo
        assert tree_snapshot(cache_dir) == before  # no lock, no staging folder for it
    assert [a.atlas_name for a in cache_at(cache_dir).installed()] == [NAME]


def test_a_failed_install_of_an_unknown_name_leaves_nothing_new(
    repo: RepoServer, cache_dir: Path
) -> None:
    opts = ["--repository", repo.url, "--cache-dir", str(cache_dir)]
    code, out = run("install", "alen_mouse_100um", *opts)
    assert code == 1
    assert "No atlas 'alen_mouse_100um'" in out
    # only the repository's index was kept (every command that reads it does): nothing named
    # after the atlas, no lock, staging, trash or journal folder
    index_copies = {".atlasmith", ".atlasmith/index.json", ".atlasmith/verified.json"}
    assert tree_snapshot(cache_dir) == index_copies | {"last_versions.conf"}
    assert run("install", NAME, *opts)[0] == 0
    before = tree_snapshot(cache_dir)
    for target in (["alen_mouse_100um"], [NAME, "--version", "9.9"]):
        code, out = run("install", *target, *opts)
        assert code == 1
        assert tree_snapshot(cache_dir) == before
    assert repo.gets(ARCHIVE) == [None]  # one download: the real install's


@pytest.mark.parametrize("origin", ["option", "environment", "config file"])
def test_the_offline_error_names_what_turned_offline_mode_on(
    origin: str, repo: RepoServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlasmith.config import config_path

    args = ["install", NAME, "--repository", repo.url, "--cache-dir", str(cache_dir)]
    expected = {
        "option": ("(--offline)", "leave out --offline"),
        "environment": ("(ATLASMITH_OFFLINE is set)", "unset ATLASMITH_OFFLINE"),
        "config file": (f"(offline = true in {config_path()})", "set offline = false in"),
    }[origin]
    if origin == "option":
        args.append("--offline")
    elif origin == "environment":
        monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    else:
        config_path().parent.mkdir(parents=True)
        config_path().write_text("offline = true\n")
    code, out = run(*args)
    assert code == 1
    message = " ".join(out.split())
    assert f"offline mode is on {expected[0]}" in message
    assert expected[1] in message
    assert ("ATLASMITH_OFFLINE" in message) == (origin == "environment")
    assert repo.log == []  # offline indeed: the repository was never asked
