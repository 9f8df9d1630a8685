"""Upload tokens: created once, stored hashed outside the repository, revocable."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from atlasmith.config import token_file
from atlasmith.errors import AtlasExistsError, ConfigError
from atlasmith.tokens import TokenStore


def test_token_is_checked_and_stored_only_as_hash(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    alice, bob = store.add("alice"), store.add("bob")
    assert alice != bob
    assert store.check(alice) == "alice"
    assert store.check(bob) == "bob"
    assert store.check(alice + "x") is None
    assert store.check("") is None
    text = (tmp_path / "tokens.json").read_text()
    assert alice not in text
    assert bob not in text
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    assert store.names() == ["alice", "bob"]


def test_revoke_disables_the_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.add("alice")
    store.revoke("alice")
    assert store.check(token) is None
    with pytest.raises(ConfigError, match="No token named 'alice'"):
        store.revoke("alice")


def test_duplicate_and_bad_names_are_refused(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.add("alice")
    with pytest.raises(AtlasExistsError, match="revoke it first"):
        store.add("alice")
    for bad in ("", "a b", "../x", "al/ice"):
        with pytest.raises(ConfigError, match="not a valid token name"):
            store.add(bad)


def test_damaged_token_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="Cannot read the token file"):
        TokenStore(path).check("atm_x")
    path.write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not an atlasmith token file"):
        TokenStore(path).names()


def test_default_location_is_the_user_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert token_file() == tmp_path / "cfg" / "atlasmith" / "tokens.json"
    monkeypatch.setenv("ATLASMITH_TOKEN_FILE", str(tmp_path / "elsewhere.json"))
    assert TokenStore().path == tmp_path / "elsewhere.json"


def test_token_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atlasmith.cli import main

    runner = CliRunner()
    token_file = str(tmp_path / "tokens.json")
    added = runner.invoke(main, ["token", "add", "alice", "--token-file", token_file])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert TokenStore(token_file).check(token) == "alice"
    listed = runner.invoke(main, ["token", "list", "--token-file", token_file])
    assert listed.stdout.strip() == "alice"
    again = runner.invoke(main, ["token", "add", "alice", "--token-file", token_file])
    assert again.exit_code == 1
    assert "revoke it first" in again.output
    revoked = runner.invoke(main, ["token", "revoke", "alice", "--token-file", token_file])
    assert revoked.exit_code == 0
    assert TokenStore(token_file).check(token) is None
    unknown = runner.invoke(main, ["token", "revoke", "alice", "--token-file", token_file])
    assert unknown.exit_code == 1
    assert "No token named 'alice'" in unknown.output


# --- as careful as OpenSSH: private whatever the umask, refused when others can change it ----


def test_the_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = TokenStore(tmp_path / "config" / "atlasmith" / "tokens.json")
        store.add("alice")
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    lock = Path(f"{store.path}.lock")
    assert not lock.exists() or stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0


_PLANT = r"""
import os, sys
path = sys.argv[1]
results = []
for how in ("write", "rename"):
    try:
        if how == "write":
            with open(path, "a") as stream:
                stream.write("planted")
        else:
            planted = os.path.join(os.path.dirname(path), "planted.json")
            with open(planted, "w") as stream:
                stream.write("{}")
            os.replace(planted, path)
        results.append(how + ":done")
    except PermissionError:
        results.append(how + ":refused")
print(" ".join(results))
"""


def _as_nobody(script: str, *args: str) -> str:
    import pwd

    nobody = pwd.getpwnam("nobody")

    def drop() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    # root's own interpreter may sit in a folder 'nobody' cannot enter: the system's
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    run = subprocess.run(
        [python, "-c", script, *args],
        capture_output=True, text=True, preexec_fn=drop, check=True, timeout=60,
    )  # fmt: skip
    return run.stdout.strip()


def test_another_local_user_cannot_plant_a_token() -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as user 'nobody' needs root (CI runs as root)")
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp (sticky) so that 'nobody' can reach it
    try:
        base.chmod(0o755)
        old = os.umask(0)  # the umask that left the store writable by everyone before
        try:
            store = TokenStore(base / "atlasmith" / "tokens.json")
            store.add("alice")
        finally:
            os.umask(old)
        assert _as_nobody(_PLANT, str(store.path)) == "write:refused rename:refused"
        assert store.names() == ["alice"]
        store.check_private()  # private: fine
        # a store made writable by others (a careless chmod): planted, and then refused
        store.path.parent.chmod(0o777)
        assert _as_nobody(_PLANT, str(store.path)) == "write:refused rename:done"
        with pytest.raises(ConfigError, match="not private"):
            store.check_private()
        with pytest.raises(ConfigError, match="not private"):
            store.add("bob")  # nor is anything written there
        serve = subprocess.run(
            [sys.executable, "-m", "atlasmith", "serve", str(base / "repo"), "--port", "0",
             "--token-file", str(store.path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert serve.returncode == 1
        assert "not private" in serve.stderr + serve.stdout
        assert "Traceback" not in serve.stderr
    finally:
        shutil.rmtree(base)


def test_tokens_from_standard_input_or_a_file_and_a_warning_on_the_command_line(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from atlasmith.cli import main

    archive = tmp_path / "missing.tar.gz"  # the command fails after the token is read
    secret = tmp_path / "token"
    secret.write_text("atm_from_file\n")
    secret.chmod(0o600)
    runner = CliRunner()
    for args, stdin in (
        (["--token", "-"], "atm_from_stdin\n"),
        (["--token", f"@{secret}"], None),
    ):
        result = runner.invoke(main, ["publish", str(archive), "--to", str(tmp_path), *args],
                               input=stdin)  # fmt: skip
        assert "visible to every user" not in result.output
        assert result.exit_code != 0  # the archive does not exist
    shown = runner.invoke(main, ["publish", str(archive), "--to", str(tmp_path), "--token", "x"])
    assert "visible to every user" in shown.output
    secret.chmod(0o644)
    loose = runner.invoke(
        main, ["publish", str(archive), "--to", str(tmp_path), "--token", f"@{secret}"]
    )
    assert "chmod 600" in loose.output
