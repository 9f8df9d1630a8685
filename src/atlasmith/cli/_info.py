"""What ``atlasmith info`` prints by default: an atlas's summary, or the client settings, as
aligned ``label  value`` lines (``--json`` prints the raw dicts instead)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["atlas_summary", "installed_facts", "settings_summary"]

_LABEL_WIDTH = 14


def atlas_summary(info: Mapping[str, Any], facts: Mapping[str, int] | None = None) -> str:
    """The readable summary of :func:`~atlasmith.cli._client.atlas_info`'s dict (pure).

    ``facts`` (:func:`installed_facts`) add the installed folder's structure count and size.

    >>> print(atlas_summary({"name": "allen_mouse_25um", "installed": False,
    ...     "latest_version": "1.2", "published_metadata": {"species": "Mus musculus"}}))
    allen_mouse_25um
      installed     no (`atlasmith install allen_mouse_25um` installs 1.2)
      latest        1.2
      species       Mus musculus
    """
    facts = facts or {}
    meta = info.get("metadata") or info.get("published_metadata") or {}
    lines = [(label, value) for label, value in _atlas_lines(info, meta, facts) if value]
    return "\n".join([str(info["name"]), *_aligned(lines)])


def _atlas_lines(
    info: Mapping[str, Any], meta: Mapping[str, Any], facts: Mapping[str, int]
) -> list[tuple[str, str]]:
    return [
        ("installed", _installed(info, facts)),
        ("latest", info.get("latest_version") or ""),
        ("versions", _versions(info.get("versions", []))),
        ("species", str(meta.get("species") or "")),
        ("resolution", _joined(meta.get("resolution"), " µm")),
        ("shape", _joined(meta.get("shape"), " voxels")),
        ("orientation", str(meta.get("orientation") or "")),
        ("structures", str(facts["structures"]) if "structures" in facts else ""),
        ("citation", str(meta.get("citation") or "")),
        ("link", str(meta.get("atlas_link") or "")),
        ("licence", str(meta.get("license") or "")),
        ("repository", str(info.get("repository") or "")),
    ]


def _installed(info: Mapping[str, Any], facts: Mapping[str, int]) -> str:
    if not info.get("installed"):
        latest = info.get("latest_version")
        offer = f" installs {latest}" if latest else ""
        return f"no (`atlasmith install {info['name']}`{offer})"
    size = f", {_size(facts['bytes'])} on disk" if "bytes" in facts else ""
    checked = "" if info.get("manifest") else "; no manifest.json: cannot be verified"
    return f"{info.get('version')} in {info.get('path')}{size}{checked}"


def _versions(rows: Sequence[Mapping[str, Any]]) -> str:
    """``1.1 (installed, 3.1 MB), 1.2 (3.2 MB, yanked)``."""
    shown = []
    for row in rows:
        notes = ["installed"] if row.get("installed") else []
        if row.get("size_mb") is not None:
            notes.append(f"{row['size_mb']} MB")
        if row.get("yanked"):
            notes.append("yanked")
        shown.append(f"{row['version']} ({', '.join(notes)})" if notes else str(row["version"]))
    return ", ".join(shown)


def _joined(values: Any, unit: str) -> str:
    """``[25.0, 25.0, 25.0]`` as ``25 x 25 x 25`` and the unit ("" when absent)."""
    if not isinstance(values, list | tuple) or not values:
        return ""
    return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) + unit


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


def _aligned(lines: Sequence[tuple[str, str]]) -> list[str]:
    return [f"  {label:<{_LABEL_WIDTH}}{value}" for label, value in lines]


def settings_summary(info: Mapping[str, Any]) -> str:
    """The client settings (:func:`~atlasmith.cli._client.settings_info`) as aligned lines.

    >>> print(settings_summary({"offline": False, "installed": []}))
      offline       no
      installed     none
    """
    lines = [(key.replace("_", " "), _plain(value)) for key, value in info.items()]
    return "\n".join(_aligned(lines))


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def installed_facts(path: str | None) -> dict[str, int]:
    """The structure count and size in bytes of an installed atlas folder ({} without one;
    what cannot be read is left out)."""
    if path is None:
        return {}
    from atlasmith.errors import AtlasmithError
    from atlasmith.formats import open_atlas_files

    folder = Path(path)
    facts = {"bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())}
    try:
        files = open_atlas_files(folder)
        try:
            facts["structures"] = len(files.structures_list)
        finally:
            files.close()
    except AtlasmithError:
        pass  # a damaged folder: `atlasmith verify` says what is wrong
    return facts
