"""Upload tokens: created once, stored hashed outside the repository, revocable."""

from __future__ import annotations

import stat
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
