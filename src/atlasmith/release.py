"""Releases: build every atlas script whose version is not in the repository yet, publish it,
and report the scripts that changed without a version bump (never republished silently).

This is what maintainers run whenever an atlas script is added or updated.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from atlasmith._types import StepProgress
from atlasmith.errors import AtlasmithError, ScriptError
from atlasmith.repository import IndexEntry, Repository, RepositoryIndex

__all__ = ["ReleaseOutcome", "ReleaseReport", "decide", "find_scripts", "release"]

Action = Literal["publish", "skip", "changed"]
Status = Literal["published", "skipped", "changed", "failed"]
_log = logging.getLogger("atlasmith.release")


@dataclass(frozen=True)
class ReleaseOutcome:
    """What ``release`` did with one script (at one resolution)."""

    script: Path
    atlas_name: str
    version: str
    status: Status
    message: str
    entry: IndexEntry | None = None

    def line(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.status:9} {self.atlas_name} {self.version} ({self.script.name}): {self.message}"
        )


@dataclass(frozen=True)
class ReleaseReport:
    """Every script's outcome; ``ok`` unless a script failed or changed without a bump."""

    outcomes: tuple[ReleaseOutcome, ...]

    def with_status(self, status: Status) -> list[ReleaseOutcome]:
        """The outcomes with one status."""
        return [o for o in self.outcomes if o.status == status]

    @property
    def published(self) -> list[ReleaseOutcome]:
        """Versions published by this run."""
        return self.with_status("published")

    @property
    def ok(self) -> bool:
        """No script failed and none changed without a version bump."""
        return not self.with_status("failed") and not self.with_status("changed")

    def render(self) -> str:
        """A readable summary, one line per script, then the totals."""
        lines = [o.line() for o in self.outcomes]
        counts = {
            s: len(self.with_status(s)) for s in ("published", "skipped", "changed", "failed")
        }
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        if not self.published:
            summary += ". Nothing to publish: every script's version is already in the repository"
        return "\n".join([*lines, summary + "."])


def find_scripts(scripts_dir: str | Path) -> list[Path]:
    """The atlas scripts in a folder (``*.py`` not starting with ``_``), sorted."""
    folder = Path(scripts_dir)
    if not folder.is_dir():
        raise ScriptError(f"{folder} is not a folder of atlas scripts.")
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def decide(script_sha256: str, entry: IndexEntry | None) -> tuple[Action, str]:
    """Pure decision for one script: publish a new version, skip it, or report a change.

    >>> decide("ab" * 32, None)
    ('publish', 'new version')
    """
    if entry is None:
        return "publish", "new version"
    recorded = _recorded_script_hash(entry.build)
    if recorded is None:
        return "skip", "already published (no script hash recorded to compare)"
    if recorded == script_sha256:
        return "skip", "already published, script unchanged"
    return "changed", (
        f"the script changed (sha256 {script_sha256[:12]}..., published from "
        f"{recorded[:12]}...) but its __version__ was not bumped: bump __version__ to "
        "publish the change as a new version"
    )


def _recorded_script_hash(build: Mapping[str, Any]) -> str | None:
    script = build.get("script")
    value = script.get("sha256") if isinstance(script, Mapping) else None
    return value if isinstance(value, str) else None


def release(
    scripts_dir: str | Path,
    repository: Repository,
    source_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    all_resolutions: bool = False,
    echo: Callable[[str], None] | None = None,
    progress: StepProgress | None = None,
) -> ReleaseReport:
    """Build and publish every atlas script whose version the repository lacks.

    Parameters
    ----------
    scripts_dir
        Folder of atlas scripts (e.g. ``atlas_scripts/``).
    repository
        Where to publish.
    source_dir
        Folder holding the scripts' declared source files.
    work_dir
        Where to build (default: a temporary folder, removed afterwards).
    all_resolutions
        Release every resolution in each script's ``RESOLUTIONS`` (default: the first only).
    echo
        Called with one line per script as the release goes.
    progress
        Called as ``progress(step, done, total)`` through each build and publication, the
        step named after the atlas (``"allen_mouse_25um 1.2: meshes"``).

    Returns
    -------
    ReleaseReport
        Published, skipped, changed-without-bump and failed scripts.
    """
    outcomes: list[ReleaseOutcome] = []
    with tempfile.TemporaryDirectory(prefix="atlasmith-release-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        for script in find_scripts(scripts_dir):
            outcomes_of = _release_script(
                script, repository, source_dir, work, all_resolutions, progress
            )
            for outcome in outcomes_of:
                outcomes.append(outcome)
                _log.info(outcome.line())
                if echo is not None:
                    echo(outcome.line())
    return ReleaseReport(tuple(outcomes))


def _release_script(
    script: Path,
    repository: Repository,
    source_dir: str | Path | None,
    work: Path,
    all_resolutions: bool,
    progress: StepProgress | None,
) -> Iterable[ReleaseOutcome]:
    from atlasmith.names import atlas_name
    from atlasmith.package import sha256_file
    from atlasmith.script import load_script

    try:
        parsed = load_script(script)
    except AtlasmithError as err:
        yield ReleaseOutcome(script, script.stem, "?", "failed", str(err))
        return
    digest = sha256_file(script)
    resolutions = parsed.resolutions if all_resolutions else parsed.resolutions[:1]
    for res in resolutions:
        name = atlas_name(parsed.name, res[0])
        index = repository.read_index()
        yield _one(
            script,
            name,
            parsed.version,
            res[0],
            digest,
            index,
            repository,
            source_dir,
            work,
            progress,
        )


def _one(
    script: Path,
    name: str,
    version: str,
    resolution: float,
    digest: str,
    index: RepositoryIndex,
    repository: Repository,
    source_dir: str | Path | None,
    work: Path,
    progress: StepProgress | None,
) -> ReleaseOutcome:
    action, reason = decide(digest, index.get(name, version))
    if action == "skip":
        return ReleaseOutcome(script, name, version, "skipped", reason)
    if action == "changed":
        return ReleaseOutcome(script, name, version, "changed", reason)
    from atlasmith.build import build_atlas

    def step(label: str, done: int, total: int) -> None:
        if progress is not None:
            progress(f"{name} {version}: {label}", done, total)

    try:
        out = work / f"{name}_v{version}"
        result = build_atlas(
            script,
            out,
            source_dir=source_dir,
            resolution=resolution,
            formats="v1",
            progress=step,
        )
        if result.archive is None:
            raise ScriptError(f"building {script.name} produced no archive")
        entry = repository.publish(result.archive, progress=step)
    except AtlasmithError as err:
        return ReleaseOutcome(script, name, version, "failed", str(err))
    message = f"published {entry.archive} ({entry.size} bytes, sha256 {str(entry.sha256)[:12]}...)"
    return ReleaseOutcome(script, name, version, "published", message, entry)
