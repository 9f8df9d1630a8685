"""Upload tokens of the atlas team: created once, stored only as hashes, outside the repository.

A token is 256 random bits, so a plain sha256 is enough to store it safely (slow, salted
hashes protect guessable passwords; nothing about a random token can be guessed), and it lets
the server find a token with one dictionary lookup instead of trying every stored hash.

The store is as careful as OpenSSH with ``authorized_keys``: the file is written 0600 and its
folder made 0700 whatever the umask, and the server refuses to start (and ``token add`` to
write) when the file, its folder or a folder above them could be changed by another user, as
anyone who can write there can plant a hash of their own and upload.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from filelock import FileLock

from atlasmith._fs import atomic_write, unsafe_secret_permissions
from atlasmith.config import token_file
from atlasmith.errors import AtlasExistsError, ConfigError

__all__ = ["TokenStore"]

_FORMAT = "atlasmith-tokens/1"
_PREFIX = "atm_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The members' upload tokens, as sha256 hashes in a JSON file (mode 0600).

    Parameters
    ----------
    path
        The token file; default :func:`atlasmith.config.token_file`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = TokenStore(pathlib.Path(tempfile.mkdtemp()) / "tokens.json")
    >>> token = store.add("alice")
    >>> store.check(token), store.check("atm_wrong")
    ('alice', None)
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else token_file()
        self.path = self.path.absolute()

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r})"

    def check_private(self) -> None:
        """Refuse a store another user could change or read (see
        :func:`atlasmith._fs.unsafe_secret_permissions`).

        Raises
        ------
        ConfigError
            Naming each problem and the ``chmod`` that fixes it.
        """
        problems = unsafe_secret_permissions(self.path)
        if problems:
            raise ConfigError(
                f"The token file {self.path} is not private: {'; '.join(problems)}. Another "
                "user could add a token of their own and upload. Fix the permissions (e.g. "
                f"chmod 700 {self.path.parent}; chmod 600 {self.path}) and try again."
            )

    def add(self, name: str) -> str:
        """Create a token for member ``name`` and return it (it is not stored, only its hash)."""
        _check_member(name)
        token = _PREFIX + secrets.token_urlsafe(32)
        with self._lock():
            tokens = self._read()
            if name in tokens:
                raise AtlasExistsError(
                    f"A token named {name!r} exists in {self.path}; revoke it first "
                    f"(`atlasmith token revoke {name}`) or choose another name."
                )
            tokens[name] = {"sha256": _digest(token)}
            self._write(tokens)
        return token

    def revoke(self, name: str) -> None:
        """Remove member ``name``'s token; ConfigError if there is none."""
        with self._lock():
            tokens = self._read()
            if name not in tokens:
                known = ", ".join(sorted(tokens)) or "none"
                raise ConfigError(f"No token named {name!r} in {self.path} (tokens: {known}).")
            del tokens[name]
            self._write(tokens)

    def names(self) -> list[str]:
        """Names of the members who hold a token, sorted."""
        return sorted(self._read())

    def check(self, token: str) -> str | None:
        """The member a token belongs to, or None when it is not a valid token."""
        digest = _digest(token)
        for name, record in self._read().items():
            if hmac.compare_digest(str(record.get("sha256", "")), digest):
                return name
        return None

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"Cannot read the token file {self.path}: {err}") from err
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigError(f"{self.path} is not an atlasmith token file ({_FORMAT}).")
        return dict(data.get("tokens", {}))

    def _write(self, tokens: dict[str, dict[str, Any]]) -> None:
        text = json.dumps({"format": _FORMAT, "tokens": tokens}, indent=2, sort_keys=True)
        atomic_write(self.path, (text + "\n").encode(), mode=0o600)  # readable by its owner only

    def _lock(self) -> FileLock:
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.is_dir()]
        for folder in reversed(missing):  # the folders made here: 0700 whatever the umask
            folder.mkdir(exist_ok=True)
            os.chmod(folder, 0o700)
        self.check_private()  # never write into a folder another user controls
        return FileLock(str(self.path) + ".lock", timeout=30, mode=0o600)


def _check_member(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(
            f"{name!r} is not a valid token name: use letters, digits, '-', '_' or '.', "
            "e.g. the member's user name."
        )
