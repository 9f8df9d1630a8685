"""Which repositories the cache trusts to serve archives without a published sha256.

An atlasmith repository publishes ``index.json`` with every archive's sha256; BrainGlobe's
GIN publishes only ``last_versions.conf``. A client that falls back to the second whenever the
first is missing can be downgraded by anyone able to make one URL answer 404 (a proxy, a CDN, a
man in the middle on http). So, as TUF-style clients do, the cache remembers every repository
that served a verified index (``.atlasmith/verified.json``) and never installs from it without
hashes again; a repository never seen verified may serve unverified archives only when it is
BrainGlobe's GIN or the user allowed it (:meth:`atlasmith.config.Settings.allows_unverified`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from atlasmith._fs import atomic_write
from atlasmith.config import Settings, same_repository
from atlasmith.errors import IntegrityError, RepositoryError

__all__ = ["VERIFIED_NAME", "check_unverified", "remember_verified"]

#: In the cache's state folder: {"repositories": {location: first seen verified, ISO 8601}}.
VERIFIED_NAME = "verified.json"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        # a damaged record must not silently forget what was verified
        raise IntegrityError(
            f"{path} (the repositories this cache has seen publish hashes) is unreadable: "
            f"{err}. Restore it, or delete it to forget them."
        ) from err
    repositories = data.get("repositories") if isinstance(data, dict) else None
    if not isinstance(repositories, dict):
        raise IntegrityError(f"{path} is not a record of verified repositories: delete it.")
    return {str(k): str(v) for k, v in repositories.items()}


def remember_verified(state: Path, repository: str) -> None:
    """Record that ``repository`` served a verified index (once; kept for good)."""
    path = state / VERIFIED_NAME
    known = _read(path)
    if any(same_repository(repository, seen) for seen in known):
        return
    known[repository.rstrip("/")] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write(path, json.dumps({"repositories": known}, indent=1, sort_keys=True).encode())


def check_unverified(state: Path, settings: Settings) -> None:
    """Allow, or refuse, reading ``settings.repository`` without hashes (no ``index.json``).

    Raises
    ------
    IntegrityError
        The repository served a verified index to this cache before: its hashes are gone now
        (an outage, a misconfigured proxy, or an attack); nothing is installed without them.
    RepositoryError
        The repository has never published hashes and the user has not allowed that.
    """
    repository = settings.repository
    path = state / VERIFIED_NAME
    if any(same_repository(repository, seen) for seen in _read(path)):
        raise IntegrityError(
            f"{repository} answered without its index.json, but it served a verified index "
            f"(sha256 of every archive) to this cache before ({path}). Nothing is installed "
            "without those hashes: a proxy, an outage or an attacker may be hiding them. Try "
            "again later; if the repository really stopped publishing index.json, remove its "
            f"line from {path}."
        )
    if not settings.allows_unverified():
        raise RepositoryError(
            f"{repository} publishes no index.json, so its archives cannot be checked against "
            "a published sha256. Install from it anyway only if you trust the connection: "
            "--allow-unverified (one command), ATLASMITH_ALLOW_UNVERIFIED=1, or "
            f'allow_unverified = ["{repository}"] in config.toml.'
        )
