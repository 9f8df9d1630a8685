"""Client settings: where atlases come from, where they are kept, and whether to go online.

Sources, later ones winning:

1. built-in defaults: the cache is BrainGlobe's own ``brainglobe_dir`` (its
   ``bg_config.conf``, in ``$BRAINGLOBE_CONFIG_DIR`` or ``~/.config/brainglobe``), else
   ``~/.brainglobe``, so that atlasmith installs where BrainGlobe's tools look;
2. the config file ``~/.config/atlasmith/config.toml`` (``platformdirs.user_config_path``);
3. environment variables ``ATLASMITH_REPOSITORY``, ``ATLASMITH_CACHE_DIR``,
   ``ATLASMITH_OFFLINE``, ``ATLASMITH_TOKEN``, ``ATLASMITH_ALLOW_UNVERIFIED``,
   ``ATLASMITH_PUBLISH_TO``;
4. explicit arguments (command-line options).

This module is the only reader of atlasmith's environment variables (and of
``SOURCE_DATE_EPOCH``, the reproducible-builds convention for the date packages carry, and of
BrainGlobe's config).

The config file is TOML with these keys, all optional::

    repository = "https://atlases.example.org/"   # URL or folder
    cache_dir = "/data/atlases"                   # where atlases are installed
    offline = false                               # never touch the network
    token = "..."                                 # upload token (publish only)
    publish_to = "/srv/atlases"                   # where publish, release and yank write
                                                  # (never the download repository)
    timeout = 30.0                                # seconds without data before a retry
    retries = 5                                   # attempts per download
    max_archive_bytes = 68719476736               # cap on an archive's unpacked size (64 GiB)
    allow_unverified = ["https://lab.example/"]   # repositories (or true: any) that may
                                                  # serve archives without sha256 (no index.json)

Unknown keys are refused, so that a typo does not silently fall back to a default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from atlasmith._types import PathLike
from atlasmith.errors import ConfigError
from atlasmith.limits import MAX_EXTRACTED_BYTES

__all__ = [
    "DEFAULT_REPOSITORY",
    "ENV_VARS",
    "SERVER_HOST",
    "SERVER_PORT",
    "TOKEN_FILE_ENV",
    "Settings",
    "brainglobe_config_path",
    "brainglobe_dir",
    "brainglobe_dirs",
    "config_path",
    "load_settings",
    "parse_bool",
    "read_config_file",
    "resolve_settings",
    "same_repository",
    "source_date_epoch",
    "token_file",
]

#: BrainGlobe's atlas repository (GIN). It has no index.json: atlases from it are installed
#: without a hash check (with a warning), as BrainGlobe's own client installs them; any other
#: repository must publish hashes unless the user allows it (``allow_unverified``). Point
#: ``repository`` at an atlasmith repository to get verified downloads.
DEFAULT_REPOSITORY = "https://gin.g-node.org/brainglobe/atlases/raw/master/"
ENV_VARS = {
    "repository": "ATLASMITH_REPOSITORY",
    "cache_dir": "ATLASMITH_CACHE_DIR",
    "offline": "ATLASMITH_OFFLINE",
    "token": "ATLASMITH_TOKEN",
    "max_archive_bytes": "ATLASMITH_MAX_ARCHIVE_BYTES",
    "allow_unverified": "ATLASMITH_ALLOW_UNVERIFIED",
    "publish_to": "ATLASMITH_PUBLISH_TO",
}
#: Where ``atlasmith serve`` listens unless told otherwise (loopback only: opening it to the
#: network is a choice).
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 8000
#: BrainGlobe's own config (its folder moved by ``BRAINGLOBE_CONFIG_DIR``): where its tools
#: look for atlases (``[default_dirs] brainglobe_dir``), atlasmith's default cache too.
BRAINGLOBE_CONFIG_ENV = "BRAINGLOBE_CONFIG_DIR"
BRAINGLOBE_CONFIG_NAME = "bg_config.conf"
#: Environment variable that moves the members' token file (server side).
TOKEN_FILE_ENV = "ATLASMITH_TOKEN_FILE"
_EPOCH_ENV = "SOURCE_DATE_EPOCH"
_KEYS = (
    "repository",
    "cache_dir",
    "offline",
    "token",
    "timeout",
    "retries",
    "max_archive_bytes",
    "allow_unverified",
    "publish_to",
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Resolved client settings.

    Attributes
    ----------
    repository : str
        URL (``http(s)://``) or folder of the atlas repository.
    cache_dir : Path
        Folder holding installed atlases (``NAME_RESum_vM.m``, and ``brainglobe-atlasapi/``
        for BrainGlobe 3), BrainGlobe's layout; by default BrainGlobe's own ``brainglobe_dir``
        (:func:`brainglobe_dir`), else ``~/.brainglobe``.
    offline : bool
        When True nothing touches the network; only installed atlases are usable.
    token : str or None
        Upload token (never sent with downloads).
    timeout : float
        Seconds to wait for a connection or for data before retrying.
    retries : int
        Attempts per download before giving up.
    max_archive_bytes : int
        Cap on the uncompressed size of one archive (decompression bombs stop there).
    allow_unverified : bool or tuple of str
        Repositories (URLs or folders; True: any) from which archives may be installed without
        a published sha256. Never used for a repository that once served a verified index.
    publish_to : str or None
        The repository that ``publish``, ``release``, ``yank`` and ``unyank`` change when no
        ``--to`` is given (None: they refuse). Never taken from ``repository``: a maintainer
        who downloads from BrainGlobe's GIN must not upload there by accident.
    """

    repository: str = DEFAULT_REPOSITORY
    cache_dir: Path = Path("~/.brainglobe")
    offline: bool = False
    token: str | None = None
    timeout: float = 30.0
    retries: int = 5
    max_archive_bytes: int = MAX_EXTRACTED_BYTES
    allow_unverified: bool | tuple[str, ...] = False
    publish_to: str | None = None
    #: What set ``offline``, for messages: ``"--offline"`` (an explicit value: the option),
    #: ``"ATLASMITH_OFFLINE"`` or the config file's path; None for the default.
    offline_origin: str | None = None

    def offline_reason(self) -> tuple[str, str]:
        """What turned offline mode on and how to turn it off, for messages.

        >>> Settings(offline=True, offline_origin="--offline").offline_reason()
        ('--offline', 'leave out --offline')
        """
        origin = self.offline_origin
        if origin is None or origin == "--offline":
            return "--offline", "leave out --offline"
        if origin == ENV_VARS["offline"]:
            return f"{origin} is set", f"unset {origin}"
        return f"offline = true in {origin}", f"set offline = false in {origin}"

    def allows_unverified(self) -> bool:
        """Whether archives of this repository may be installed without a published sha256:
        BrainGlobe's GIN (which never publishes one), or a repository the user allowed."""
        if same_repository(self.repository, DEFAULT_REPOSITORY):
            return True
        if isinstance(self.allow_unverified, bool):
            return self.allow_unverified
        return any(same_repository(self.repository, r) for r in self.allow_unverified)


def same_repository(a: str, b: str) -> bool:
    """Whether two repository locations name the same repository (trailing ``/`` ignored).

    >>> same_repository("https://a.org/x/", "https://a.org/x"), same_repository("a", "b")
    (True, False)
    """
    return a.strip().rstrip("/") == b.strip().rstrip("/")


def config_path() -> Path:
    """Path of the user's config file, ``~/.config/atlasmith/config.toml`` on Linux."""
    import platformdirs

    return platformdirs.user_config_path("atlasmith") / "config.toml"


def parse_bool(value: str, where: str) -> bool:
    """Parse ``1/0/true/false/yes/no/on/off`` (any case); ConfigError otherwise.

    >>> parse_bool("Yes", "ATLASMITH_OFFLINE"), parse_bool("0", "ATLASMITH_OFFLINE")
    (True, False)
    """
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where} must be 1 or 0 (or true/false), got {value!r}.")


def _from_file(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Check the keys and types of the config file's table."""
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; the valid keys are {', '.join(_KEYS)}."
        )
    types: dict[str, tuple[type, ...]] = {
        "repository": (str,),
        "cache_dir": (str,),
        "offline": (bool,),
        "token": (str,),
        "timeout": (int, float),
        "retries": (int,),
        "max_archive_bytes": (int,),
        "allow_unverified": (bool, list),
        "publish_to": (str,),
    }
    for key, value in data.items():
        if key == "allow_unverified" and isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: allow_unverified must be true/false or a list of URLs.")
            data = {**data, key: tuple(value)}
            continue
        booleans = ("offline", "allow_unverified")
        if not isinstance(value, types[key]) or (key not in booleans and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in types[key])
            raise ConfigError(f"{path}: {key} must be of type {names}, got {value!r}.")
    return dict(data)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, var in ENV_VARS.items():
        value = env.get(var)
        if value is None or (value == "" and key != "offline"):
            continue
        if key in ("offline", "allow_unverified"):
            found[key] = parse_bool(value, var)
        elif key == "max_archive_bytes":
            found[key] = _parse_int(value, var)
        else:
            found[key] = value
    return found


def _parse_int(value: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError as err:
        raise ConfigError(f"{where} must be an integer number of bytes, got {value!r}.") from err


def resolve_settings(
    file_values: Mapping[str, Any],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    file_name: str = "config.toml",
) -> Settings:
    """Merge defaults, config file, environment and explicit values (pure).

    ``None`` in ``overrides`` means "not given".

    >>> resolve_settings({"offline": True}, {"ATLASMITH_OFFLINE": "0"}, {}).offline
    False
    """
    from_file, from_env = _from_file(file_values, file_name), _from_env(env)
    given = {k: v for k, v in overrides.items() if v is not None}
    merged: dict[str, Any] = {**from_file, **from_env, **given}
    # the last source that set offline, named as a user would turn it off
    sources = (("--offline", given), (ENV_VARS["offline"], from_env), (file_name, from_file))
    origin = next((name for name, values in sources if "offline" in values), None)
    settings = replace(
        Settings(), **{k: v for k, v in merged.items() if k in _KEYS}, offline_origin=origin
    )
    return _normalised(settings)


def _normalised(settings: Settings) -> Settings:
    if settings.timeout <= 0 or settings.retries < 1 or settings.max_archive_bytes < 1:
        raise ConfigError(
            f"timeout must be > 0, retries >= 1 and max_archive_bytes >= 1, got "
            f"timeout={settings.timeout!r}, retries={settings.retries!r}, "
            f"max_archive_bytes={settings.max_archive_bytes!r}."
        )
    repository = str(settings.repository).strip()
    if not repository:
        raise ConfigError("The repository is empty: set ATLASMITH_REPOSITORY to a URL or folder.")
    publish_to = settings.publish_to
    if publish_to is not None and not publish_to.strip():
        raise ConfigError(
            "The destination to publish to is empty (--to, ATLASMITH_PUBLISH_TO or publish_to): "
            "give the folder or URL of the repository to change."
        )
    cache_dir = Path(os.path.expandvars(str(settings.cache_dir))).expanduser()
    return replace(
        settings,
        repository=repository,
        cache_dir=cache_dir,
        timeout=float(settings.timeout),
        publish_to=None if publish_to is None else publish_to.strip(),
    )


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's table, or {} when the file does not exist."""
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}. Fix or remove the file.") from err
    except OSError as err:
        raise ConfigError(f"Cannot read the config file {path}: {err.strerror}.") from err


def load_settings(
    repository: PathLike | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    token: str | None = None,
    config_file: PathLike | None = None,
    env: Mapping[str, str] | None = None,
    allow_unverified: bool | None = None,
    publish_to: PathLike | None = None,
) -> Settings:
    """Read the config file and the environment and apply explicit values on top.

    Parameters
    ----------
    repository, cache_dir, offline, token, allow_unverified, publish_to
        Explicit values (command-line options); None means "not given".
    config_file : str or Path, optional
        Config file to read instead of :func:`config_path`.
    env : Mapping, optional
        Environment to read instead of ``os.environ``.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        For an unreadable or invalid config file or environment variable.
    """
    path = Path(config_file) if config_file is not None else config_path()
    overrides = {
        "repository": None if repository is None else str(repository),
        "cache_dir": cache_dir,
        "offline": offline,
        "token": token,
        "allow_unverified": allow_unverified,
        "publish_to": None if publish_to is None else str(publish_to),
    }
    environ = os.environ if env is None else env
    from_file = read_config_file(path)
    if "token" in from_file:
        _warn_if_shared(path)
    if (
        cache_dir is None
        and not environ.get(ENV_VARS["cache_dir"])
        and "cache_dir" not in from_file
    ):
        overrides["cache_dir"] = brainglobe_dir(environ)  # BrainGlobe's folder, else the default
    return resolve_settings(from_file, environ, overrides, str(path))


def _warn_if_shared(path: Path) -> None:
    """Warn when the config file holds an upload token that other users could read or change."""
    import warnings

    from atlasmith._fs import unsafe_secret_permissions

    problems = unsafe_secret_permissions(path)
    if problems:
        warnings.warn(
            f"{path} holds an upload token but is not private ({'; '.join(problems)}): other "
            f"users may read or replace it. Run chmod 600 {path}, or keep the token in "
            "ATLASMITH_TOKEN instead.",
            UserWarning,
            stacklevel=3,
        )


def brainglobe_config_path(env: Mapping[str, str] | None = None) -> Path:
    """BrainGlobe's config file: ``bg_config.conf`` in ``$BRAINGLOBE_CONFIG_DIR``, else in
    ``~/.config/brainglobe`` (``Path.home()``, as brainglobe-atlasapi 2.3.1 and 3.x find it)."""
    folder = (os.environ if env is None else env).get(BRAINGLOBE_CONFIG_ENV)
    base = Path(folder).expanduser() if folder else Path.home() / ".config" / "brainglobe"
    return base / BRAINGLOBE_CONFIG_NAME


def brainglobe_dirs(
    path: PathLike | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """The folders BrainGlobe's config sets (``[default_dirs]``: ``brainglobe_dir``,
    ``interm_download_dir``), ``~`` and ``$VARS`` expanded.

    Parameters
    ----------
    path : str or Path, optional
        A config file given explicitly (BrainGlobe's ``config_dir`` argument); it must exist.
        Default: :func:`brainglobe_config_path`, which may be absent ({}).

    Raises
    ------
    ConfigError
        When the file cannot be read, or an explicit ``path`` does not exist.
    """
    import configparser

    explicit = path is not None
    file = Path(path) if path is not None else brainglobe_config_path(env)
    if explicit and not file.is_file():
        raise ConfigError(
            f"BrainGlobe config file {file} does not exist: pass the path of a "
            "bg_config.conf (with [default_dirs] brainglobe_dir = FOLDER), or leave it out."
        )
    config = configparser.ConfigParser()
    try:
        found = config.read(file, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{file} (BrainGlobe's config) is not readable: {err}. Fix it, or set "
            "ATLASMITH_CACHE_DIR to choose atlasmith's cache folder."
        ) from err
    if not found or not config.has_section("default_dirs"):
        return {}
    values = {k: v.strip() for k, v in config.items("default_dirs", raw=True)}
    return {k: Path(os.path.expandvars(v)).expanduser() for k, v in values.items() if v}


def brainglobe_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """BrainGlobe's own ``brainglobe_dir`` setting, or None when it has none.

    Read from BrainGlobe's config file (:func:`brainglobe_config_path`), as
    brainglobe-atlasapi 2.3.1 and 3.x read it, so atlasmith installs where BrainGlobe's tools
    look.

    Raises
    ------
    ConfigError
        When the file exists but cannot be read.
    """
    return brainglobe_dirs(env=env).get("brainglobe_dir")


def source_date_epoch(env: Mapping[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` (seconds since 1970) when set, else None.

    Packages carry this date (archive member times, README's "Generated on") so that the
    same inputs give the same bytes (https://reproducible-builds.org/specs/source-date-epoch/).

    Raises
    ------
    ConfigError
        When it is set to something other than whole seconds.
    """
    value = (os.environ if env is None else env).get(_EPOCH_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ConfigError(
            f"{_EPOCH_ENV} must be whole seconds since 1970, got {value!r}. Unset it or set "
            "it to e.g. 1700000000."
        )
    return int(value)


def token_file(env: Mapping[str, str] | None = None) -> Path:
    """The members' token file: ``$ATLASMITH_TOKEN_FILE``, else ``tokens.json`` in the user
    config folder (platformdirs). It must never be inside a served repository."""
    value = (os.environ if env is None else env).get(TOKEN_FILE_ENV)
    if value:
        return Path(value).expanduser()
    import platformdirs

    return platformdirs.user_config_path("atlasmith") / "tokens.json"
