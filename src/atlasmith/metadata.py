"""Atlas metadata (``metadata.json``) as a frozen, validated dataclass, and BrainGlobe's naming.

``AtlasMetadata.from_dict`` parses the JSON once, at the boundary, and raises a
:class:`~atlasmith.errors.MetadataError` naming the key, the expected value and the value found.
Every key BrainGlobe writes is a field; any other key (``license``, the legacy ``trasform_to_bg``
(sic) of atlases packaged before 2025, ...) is kept, in order, in ``extra``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from atlasmith.errors import MetadataError, ScriptError
from atlasmith.names import atlas_name, folder_name, is_version
from atlasmith.orientation import check_origin

__all__ = ["METADATA_KEYS", "AtlasMetadata", "check_citation", "read_json_file"]

#: Keys in the order BrainGlobe 2.3.1 writes them (``generate_metadata_dict``).
METADATA_KEYS: tuple[str, ...] = (
    "name",
    "citation",
    "atlas_link",
    "species",
    "symmetric",
    "resolution",
    "orientation",
    "version",
    "shape",
    "additional_references",
    "atlas_packager",
)
_REQUIRED = METADATA_KEYS[:9]
_NAME_RE = re.compile(r"^[a-z0-9_.-]+$")
_DOI_RE = re.compile(r"(https?://(dx\.)?doi\.org/|doi:\s*)10\.\d{4,9}/\S+", re.IGNORECASE)


def check_citation(citation: object, where: str = "CITATION") -> str:
    """Return ``citation`` when it holds a DOI or is exactly ``"unpublished"``, else raise.

    >>> check_citation("Wang et al 2020, https://doi.org/10.1016/j.cell.2020.04.007")[-5:]
    '04.007'

    Raises
    ------
    ScriptError
        Naming ``where`` the citation came from.
    """
    if not isinstance(citation, str) or not (citation == "unpublished" or _DOI_RE.search(citation)):
        raise ScriptError(
            f"{where} must contain a DOI written as 'https://doi.org/10....' or 'doi:10....', "
            f"or be exactly 'unpublished'; got {citation!r}."
        )
    return citation


def _fail(key: str, expected: str, got: Any) -> MetadataError:
    return MetadataError(
        f"metadata key {key!r}: expected {expected}, got {got!r}. Fix metadata.json (or the "
        "atlas script's constants) and try again."
    )


def _string(d: Mapping[str, Any], key: str, empty_ok: bool = False) -> str:
    value = d[key]
    if not isinstance(value, str) or not (value or empty_ok):
        raise _fail(key, "a string" if empty_ok else "a non-empty string", value)
    return value


def _triple(d: Mapping[str, Any], key: str, integer: bool) -> tuple[Any, Any, Any]:
    value = d[key]
    kind = "int" if integer else "number"
    expected = f"a list of 3 positive {kind}s"
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise _fail(key, expected, value)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _fail(key, expected, value)
        if (integer and not float(item).is_integer()) or not math.isfinite(item) or item <= 0:
            raise _fail(key, expected, value)
    if integer:
        return (int(value[0]), int(value[1]), int(value[2]))
    return (float(value[0]), float(value[1]), float(value[2]))


def _references(d: Mapping[str, Any]) -> tuple[str, ...]:
    value = d.get("additional_references", [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise _fail("additional_references", "a list of names (strings)", value)
    if len(set(value)) != len(value):
        raise _fail("additional_references", "names without duplicates", value)
    return tuple(value)


def _packager(d: Mapping[str, Any]) -> str | None:
    value = d.get("atlas_packager")
    if value is not None and not isinstance(value, str):
        raise _fail("atlas_packager", "a string or null", value)
    return value


@dataclass(frozen=True)
class AtlasMetadata:
    """The contents of an atlas's ``metadata.json``, validated.

    Parameters
    ----------
    name : str
        Atlas name without resolution, ``author_species`` (e.g. ``"allen_mouse"``).
    citation, atlas_link, species : str
        Credits and species, as shown to users.
    symmetric : bool
        True when the atlas has no ``hemispheres.tiff`` (hemispheres are synthesised).
    resolution : tuple of 3 floats
        Voxel size in micrometres, in "asr" axis order.
    orientation : str
        brainglobe-space origin string of the stacks (``"asr"`` in a package).
    version : str
        Atlas data version ``"<major>.<minor>"``.
    shape : tuple of 3 ints
        Shape of every stack.
    additional_references : tuple of str
        Names of the extra ``<name>.tiff`` reference stacks.
    atlas_packager : str or None
        Who packaged the atlas (absent in atlases packaged before 2025).
    extra : Mapping
        Every other key, in file order (e.g. ``license``, legacy ``trasform_to_bg``).

    Examples
    --------
    >>> meta = AtlasMetadata.from_dict({"name": "allen_mouse", "citation": "unpublished",
    ...     "atlas_link": "http://www.brain-map.org", "species": "Mus musculus",
    ...     "symmetric": True, "resolution": [100, 100, 100], "orientation": "asr",
    ...     "version": "1.2", "shape": [132, 80, 114]})
    >>> meta.folder_name
    'allen_mouse_100um_v1.2'
    """

    name: str
    citation: str
    atlas_link: str
    species: str
    symmetric: bool
    resolution: tuple[float, float, float]
    orientation: str
    version: str
    shape: tuple[int, int, int]
    additional_references: tuple[str, ...] = ()
    atlas_packager: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        # a read-only copy, so that the instance stays immutable (extra is left out of hash)
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AtlasMetadata:
        """Parse and validate a metadata mapping; raise MetadataError on any problem."""
        if not isinstance(d, Mapping):
            raise MetadataError(
                f"metadata must be a JSON object (a mapping), got {type(d).__name__}."
            )
        missing = [key for key in _REQUIRED if key not in d]
        if missing:
            raise MetadataError(
                f"metadata is missing the key(s) {missing}; every BrainGlobe atlas has "
                f"{list(_REQUIRED)}. Add them to metadata.json."
            )
        return cls(**_parse_fields(d), extra={k: v for k, v in d.items() if k not in METADATA_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: BrainGlobe's keys in its order, then the extra keys."""
        out: dict[str, Any] = {
            "name": self.name,
            "citation": self.citation,
            "atlas_link": self.atlas_link,
            "species": self.species,
            "symmetric": self.symmetric,
            "resolution": list(self.resolution),
            "orientation": self.orientation,
            "version": self.version,
            "shape": list(self.shape),
            "additional_references": list(self.additional_references),
            "atlas_packager": self.atlas_packager,
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> AtlasMetadata:
        """Read and validate a ``metadata.json`` file."""
        return cls.from_dict(read_json_file(Path(path), "metadata"))

    @property
    def atlas_name(self) -> str:
        """Atlas name with resolution, e.g. ``"allen_mouse_100um"`` (named after axis 0)."""
        return atlas_name(self.name, self.resolution[0])

    @property
    def folder_name(self) -> str:
        """Folder (and archive stem) name, e.g. ``"allen_mouse_100um_v1.2"``."""
        return folder_name(self.atlas_name, self.version)


def _parse_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    name = _string(d, "name")
    if not _NAME_RE.match(name):
        raise _fail("name", "lowercase letters, digits, '_', '.' or '-' (e.g. 'allen_mouse')", name)
    if not isinstance(d["symmetric"], bool):
        raise _fail("symmetric", "true or false", d["symmetric"])
    version = d["version"]
    if not is_version(version):
        raise _fail("version", "a string '<major>.<minor>' such as '1.2'", version)
    return {
        "name": name,
        "citation": _string(d, "citation", empty_ok=True),
        "atlas_link": _string(d, "atlas_link", empty_ok=True),
        "species": _string(d, "species", empty_ok=True),
        "symmetric": d["symmetric"],
        "resolution": _triple(d, "resolution", integer=False),
        "orientation": _orientation(d),
        "version": version,
        "shape": _triple(d, "shape", integer=True),
        "additional_references": _references(d),
        "atlas_packager": _packager(d),
    }


def _orientation(d: Mapping[str, Any]) -> str:
    value = _string(d, "orientation")
    try:
        return check_origin(value)
    except ValueError as err:
        raise _fail("orientation", "a brainglobe-space origin string such as 'asr'", value) from err


def read_json_file(path: Path, what: str) -> Any:
    """Read a JSON file, turning a missing or broken file into a MetadataError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise MetadataError(
            f"{what} file {path} does not exist: an atlas folder needs it. Check the path, or "
            "re-install the atlas."
        ) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MetadataError(
            f"{what} file {path} is not valid JSON ({err}). The file is corrupt: re-install or "
            "rebuild the atlas."
        ) from err
