"""Client settings: defaults, config file, environment, explicit values, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlasmith.config import (
    DEFAULT_REPOSITORY,
    config_path,
    load_settings,
    parse_bool,
    resolve_settings,
)
from atlasmith.errors import ConfigError


def test_defaults_follow_brainglobe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATLASMITH_CACHE_DIR")
    settings = load_settings()
    assert settings.cache_dir == Path.home() / ".brainglobe"
    assert settings.repository == DEFAULT_REPOSITORY
    assert settings.offline is False
    assert settings.token is None
    assert config_path() == Path.home() / ".config" / "atlasmith" / "config.toml"


def test_precedence_file_then_environment_then_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text(
        'repository = "https://file.example/"\ncache_dir = "~/from_file"\noffline = true\n'
        'token = "file-token"\ntimeout = 5\nretries = 2\n'
    )
    config_path().chmod(0o644)  # readable by others while it holds a token: a warning
    with pytest.warns(UserWarning, match="holds an upload token but is not private"):
        load_settings()
    config_path().chmod(0o600)
    monkeypatch.delenv("ATLASMITH_CACHE_DIR")
    from_file = load_settings()
    assert from_file.repository == "https://file.example/"
    assert from_file.cache_dir == Path.home() / "from_file"
    assert (from_file.offline, from_file.token, from_file.timeout, from_file.retries) == (
        True,
        "file-token",
        5.0,
        2,
    )
    monkeypatch.setenv("ATLASMITH_REPOSITORY", "https://env.example/")
    monkeypatch.setenv("ATLASMITH_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("ATLASMITH_OFFLINE", "0")
    monkeypatch.setenv("ATLASMITH_TOKEN", "env-token")
    from_env = load_settings()
    assert (from_env.repository, from_env.cache_dir, from_env.offline, from_env.token) == (
        "https://env.example/",
        tmp_path / "env",
        False,
        "env-token",
    )
    explicit = load_settings(repository=tmp_path, cache_dir=tmp_path / "cli", offline=True)
    assert (explicit.repository, explicit.cache_dir, explicit.offline) == (
        str(tmp_path),
        tmp_path / "cli",
        True,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('cache_dri = "/x"\n', "unknown key"),
        ("offline = 1\n", "offline must be of type bool"),
        ('retries = "3"\n', "retries must be of type int"),
        ("timeout = 0\n", "timeout must be > 0"),
        ("repository = \n", "not valid TOML"),
        ('repository = "  "\n', "repository is empty"),
        ("publish_to = 3\n", "publish_to must be of type str"),
        ('publish_to = " "\n', "destination to publish to is empty"),
    ],
)
def test_bad_config_file(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(config_file=path)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("", False)]
)
def test_parse_bool(value: str, expected: bool) -> None:
    assert parse_bool(value, "ATLASMITH_OFFLINE") is expected


def test_bad_offline_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ATLASMITH_OFFLINE must be 1 or 0.*'maybe'"):
        load_settings(env={"ATLASMITH_OFFLINE": "maybe"})


def test_resolve_is_pure_and_ignores_unset_overrides() -> None:
    settings = resolve_settings(
        {"repository": "https://a/"}, {"ATLASMITH_REPOSITORY": ""}, {"repository": None}
    )
    assert settings.repository == "https://a/"


def test_publish_destination_is_its_own_setting(tmp_path: Path) -> None:
    """``publish_to`` comes from the file, ``ATLASMITH_PUBLISH_TO`` or the option, and never
    from the download repository."""
    assert load_settings(env={"ATLASMITH_REPOSITORY": "https://dl.example/"}).publish_to is None
    path = tmp_path / "config.toml"
    path.write_text('publish_to = "/srv/from-file"\n')
    assert load_settings(config_file=path, env={}).publish_to == "/srv/from-file"
    env = {"ATLASMITH_PUBLISH_TO": " s3://bucket/atlases "}
    assert load_settings(config_file=path, env=env).publish_to == "s3://bucket/atlases"
    explicit = load_settings(config_file=path, env=env, publish_to=tmp_path / "cli")
    assert explicit.publish_to == str(tmp_path / "cli")
