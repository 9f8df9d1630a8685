"""BrainGlobe 3's atlas format (brainglobe-atlasapi 3.x): the layout, and reading it.

An atlas version is a manifest that points at components under one root ``R``
(``<brainglobe_dir>/brainglobe-atlasapi/``; ``s3://brainglobe/atlas/`` remotely)::

    atlases/<atlas>/<M_m>/manifest.json
    templates/<atlas>-template/<M_m>/template.ome.zarr/                 (uint16)
    annotation-sets/<atlas>-annotation/<M_m>/annotations_compressed.ome.zarr/   (uint32)
                                            hemispheres.ome.zarr/       (uint8)
                                            annotations.ome.zarr/       (4-D masks, uint8,
                                                                         + annotation_values)
                                            annotations.precomputed/    (neuroglancer: info,
                                                                         chunks, mesh/, ...)
    terminologies/<atlas>-terminology/<M_m>/terminology.csv
    coordinate-spaces/<atlas>-space/<M_m>/manifest.json

``<atlas>`` is the atlas name with its resolution (atlasmith writes one resolution per
component, so that every published component is immutable; BrainGlobe's own packager names
components after the base name and stacks resolutions as pyramid levels, which this reader
reads too). atlasmith's manifests add ``atlasmith.files``: the sha256 and size of every file
of the atlas's components (BrainGlobe's client ignores extra keys), which :class:`V3Atlas`
checks as it reads each piece.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._types import Float64Array, IntArray
from atlasmith.errors import (
    AtlasFormatError,
    HierarchyError,
    IntegrityError,
    MissingFileError,
)
from atlasmith.formats._base import AtlasFiles, read_json
from atlasmith.formats._precomputed import decode_mesh
from atlasmith.formats._readers import each_in_readers
from atlasmith.formats._zarr import CACHE_BYTES, ZarrArray
from atlasmith.hierarchy import StructureTree
from atlasmith.metadata import METADATA_KEYS
from atlasmith.names import is_version

__all__ = [
    "ANNOTATION_MASKS",
    "MANIFEST",
    "TERMINOLOGY_HEADER",
    "V3_ROOT",
    "V3Atlas",
    "V3Layout",
    "find_manifest",
    "parse_terminology",
]

V3_ROOT = "brainglobe-atlasapi"
MANIFEST = "manifest.json"
TEMPLATE = "template.ome.zarr"
ANNOTATION = "annotations_compressed.ome.zarr"
HEMISPHERES = "hemispheres.ome.zarr"
ANNOTATION_MASKS = "annotations.ome.zarr"
ANNOTATION_VALUES = "annotation_values"
PRECOMPUTED = "annotations.precomputed"
MESHES = f"{PRECOMPUTED}/mesh"
TERMINOLOGY = "terminology.csv"
LAST_VERSIONS = "atlases/last_versions.conf"
TERMINOLOGY_HEADER = (
    "identifier",
    "parent_identifier",
    "annotation_value",
    "name",
    "abbreviation",
    "color_hex_triplet",
    "root_identifier_path",
)
#: Manifest keys BrainGlobe's packager writes: v1's metadata keys, the manifest's location
#: and the components (anything else is extra metadata).
MANIFEST_KEYS = (
    *METADATA_KEYS,
    "location",
    "coordinate_space",
    "terminology",
    "annotation_set",
    "template",
)
#: ``fetch(relative path, sha256, size) -> bytes``: gets a listed piece (lazy downloads).
PieceFetcher = Callable[[str, str, int], bytes]
FILES_KEY = "atlasmith"  # extra manifest key: {"format": ..., "files": {path: {sha256, size}}}
FILES_FORMAT = "atlasmith-v3-files/1"


def underscore(version: str) -> str:
    """``"3.2"`` -> ``"3_2"`` (version folders)."""
    return version.replace(".", "_")


@dataclass(frozen=True)
class V3Layout:
    """Where one atlas version's manifest and components live, relative to the root."""

    atlas: str  # with resolution: allen_mouse_100um
    version: str  # 3.2

    def _component(self, root: str, suffix: str) -> str:
        return f"{root}/{self.atlas}-{suffix}/{underscore(self.version)}"

    @property
    def atlas_folder(self) -> str:
        return f"atlases/{self.atlas}/{underscore(self.version)}"

    @property
    def manifest(self) -> str:
        return f"{self.atlas_folder}/{MANIFEST}"

    @property
    def template(self) -> str:
        return self._component("templates", "template")

    def reference(self, name: str) -> str:
        """An additional reference's template component."""
        return self._component("templates", f"{name}-template")

    @property
    def annotation_set(self) -> str:
        return self._component("annotation-sets", "annotation")

    @property
    def terminology(self) -> str:
        return self._component("terminologies", "terminology")

    @property
    def coordinate_space(self) -> str:
        return self._component("coordinate-spaces", "space")


def find_manifest(path: Path) -> Path | None:
    """The manifest of a v3 atlas given as its manifest or its version folder, else None."""
    manifest = path if path.name == MANIFEST else path / MANIFEST
    if not manifest.is_file():
        return None
    if len(manifest.parents) < 4 or manifest.parents[2].name != "atlases":
        return None
    return manifest


def _read_json(path: Path) -> Any:
    return read_json(path, "the v3 atlas is incomplete. Re-install it.")


def _location(component: Any, what: str, manifest: Path) -> str:
    """A component's location, checked to stay inside the root (no ``..``, relative)."""
    location = component.get("location") if isinstance(component, Mapping) else None
    parts = str(location or "").strip("/").split("/")
    if (
        not location
        or not str(location).startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise AtlasFormatError(
            f"{manifest}: the {what} location {location!r} is not a path inside the atlas root "
            "('/<kind>/<name>/<M_m>'). The manifest is damaged or hostile; nothing is read."
        )
    return "/".join(parts)


# --- the terminology ---------------------------------------------------------------------------


def parse_terminology(text: str, where: str) -> list[dict[str, Any]]:
    """``terminology.csv`` -> BrainGlobe's structure dicts (acronym, id, name,
    structure_id_path, rgb_triplet), checked as a tree (HierarchyError naming ``where``)."""
    return _terminology(text, where)[0]


def _terminology(text: str, where: str) -> tuple[list[dict[str, Any]], StructureTree]:
    """The structure dicts and the tree that checked them."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0][: len(TERMINOLOGY_HEADER)]) != TERMINOLOGY_HEADER:
        raise AtlasFormatError(
            f"{where} does not start with the terminology header {','.join(TERMINOLOGY_HEADER)}."
        )
    column = {name: rows[0].index(name) for name in TERMINOLOGY_HEADER}
    structures = []
    for number, row in enumerate(rows[1:], start=2):
        try:
            colour = row[column["color_hex_triplet"]].strip().lstrip("#")
            path = row[column["root_identifier_path"]].strip().strip("[]")
            structures.append(
                {
                    "acronym": row[column["abbreviation"]],
                    "id": int(row[column["identifier"]]),
                    "name": row[column["name"]],
                    "structure_id_path": [int(p) for p in path.split(",") if p.strip()],
                    "rgb_triplet": [int(colour[i : i + 2], 16) for i in (0, 2, 4)],
                }
            )
        except (IndexError, ValueError) as err:
            raise AtlasFormatError(f"{where}, line {number}: {err}; the row is {row!r}.") from err
    try:
        tree = StructureTree.from_list(structures)
    except HierarchyError as err:
        raise HierarchyError(f"{where}: {err}") from err
    return structures, tree


# --- reading -----------------------------------------------------------------------------------


class V3Atlas(AtlasFiles):
    """A BrainGlobe 3 atlas (ours, or one BrainGlobe 3.0.2 wrote), read lazily.

    Parameters
    ----------
    path : str or Path
        The atlas manifest (``.../atlases/<atlas>/<M_m>/manifest.json``) or its folder.

    fetch : callable, optional
        ``fetch(relative path, sha256, size) -> bytes``: gets a listed piece that is missing or
        damaged here (the cache's lazy download: verified, written atomically); without it
        such a piece is an error.

    Stacks are :class:`~atlasmith.formats._zarr.ZarrArray` (read chunk by chunk); when the
    manifest lists its files' sha256 (atlasmith writes it), every file read is checked
    against it, and a listed file that is missing is fetched or an error, never zeros.
    """

    format_name = "brainglobe-v3"

    def __init__(self, path: str | Path, fetch: PieceFetcher | None = None) -> None:
        self.fetch = fetch
        manifest = find_manifest(Path(path))
        if manifest is None:
            raise MissingFileError(
                f"{path} is not a BrainGlobe 3 atlas: expected "
                f".../atlases/<atlas>/<version>/{MANIFEST}."
            )
        self.manifest_path = manifest
        self.path = manifest.parent
        self.root = manifest.parents[3]

    # --- the manifest and its files ----------------------------------------------------

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """``manifest.json`` as stored."""
        data = _read_json(self.manifest_path)
        if not isinstance(data, dict):
            raise AtlasFormatError(f"{self.manifest_path} must hold a JSON object.")
        return data

    @cached_property
    def files(self) -> dict[str, dict[str, Any]] | None:
        """Every file's sha256 and size (relative to the root), when the manifest has them."""
        listed = self.manifest.get(FILES_KEY)
        if not isinstance(listed, Mapping):
            return None
        files = listed.get("files")
        if listed.get("format") != FILES_FORMAT or not isinstance(files, Mapping):
            raise AtlasFormatError(f"{self.manifest_path}: '{FILES_KEY}' is not {FILES_FORMAT}.")
        for key in files:
            parts = str(key).split("/")
            if str(key).startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise AtlasFormatError(
                    f"{self.manifest_path} lists {key!r}, which is not a path inside the atlas "
                    "root. The manifest is damaged or hostile; nothing is read."
                )
        return {str(k): dict(v) for k, v in files.items()}

    def location(self, component: str) -> str:
        """A component's location relative to the root (``annotation_set``, ``template``...)."""
        return _location(self.manifest.get(component), component, self.manifest_path)

    def read(self, relative: str) -> bytes:
        """A file of the atlas, checked against its listed sha256 when there is a list."""
        data = self.check(relative, _read_or_none(self.root / relative))
        if data is None:
            raise MissingFileError(f"{self.root / relative} does not exist: re-install the atlas.")
        return data

    def check(self, relative: str, data: bytes | None) -> bytes | None:
        """The checking rule for every piece: listed files must exist and match their sha256;
        an unlisted chunk is one that was all fill value."""
        if self.files is None:
            return data
        expected = self.files.get(relative)
        if expected is None:
            if data is None:
                return None
            raise IntegrityError(
                f"{self.root / relative} is not listed in {self.manifest_path}: a file the atlas "
                "does not have. Re-install the atlas."
            )
        sha256, size = str(expected.get("sha256")), expected.get("size")
        intact = (
            data is not None and len(data) == size and hashlib.sha256(data).hexdigest() == sha256
        )
        if intact:
            return data
        if self.fetch is not None:  # a lazily downloaded atlas: get (or repair) the piece
            return self.fetch(relative, sha256, int(size or 0))
        if data is None:
            raise IntegrityError(
                f"{self.root / relative} is missing, but the manifest lists it (an interrupted "
                "download?). Nothing is read as zeros: re-install the atlas."
            )
        raise IntegrityError(
            f"{self.root / relative} is damaged: sha256 {hashlib.sha256(data).hexdigest()}, the "
            f"manifest says {sha256}. Re-install the atlas."
        )

    def _json(self, relative: str) -> Any:
        """A JSON file of the atlas, read (or fetched) and checked like every piece."""
        data = self.read(relative)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise AtlasFormatError(f"{self.root / relative} is not valid JSON ({err}).") from err

    def listed(self, relative: str) -> bool:
        """Whether the atlas has this file (here, or listed in its manifest)."""
        return (self.files is not None and relative in self.files) or (
            self.root / relative
        ).is_file()

    def problems(self, present_only: bool = False) -> list[str]:
        """Every listed file re-hashed: what is missing or changed ([] when intact, or when
        the manifest lists no files, as BrainGlobe's own do not). ``present_only``: the
        pieces downloaded so far (a lazily fetched atlas), never fetching one."""
        found = []
        for relative in sorted(self.files or {}):
            data = _read_or_none(self.root / relative)
            if data is None and present_only:
                continue
            expected = (self.files or {})[relative]
            if data is None:
                found.append(f"{self.root / relative} is missing, but the manifest lists it.")
            elif len(data) != expected.get("size") or (
                hashlib.sha256(data).hexdigest() != expected.get("sha256")
            ):
                found.append(
                    f"{self.root / relative} is damaged: its sha256 is not the listed one."
                )
        return found

    # --- AtlasFiles ----------------------------------------------------------------------------

    @cached_property
    def metadata_dict(self) -> dict[str, Any]:
        """The manifest as BrainGlobe v1 metadata (name, citation, ..., version "3.m")."""
        m = self.manifest
        missing = [k for k in ("name", "resolution", "shape", "version") if k not in m]
        if missing:
            raise AtlasFormatError(f"{self.manifest_path} lacks {missing}.")
        references = [self._reference_name(r) for r in m.get("additional_references") or []]
        out = {
            "name": m["name"],
            "citation": m.get("citation", ""),
            "atlas_link": m.get("atlas_link", ""),
            "species": m.get("species", ""),
            "symmetric": m.get("symmetric", True),
            "resolution": [float(r) for r in m["resolution"]],
            "orientation": m.get("orientation", "asr"),
            "version": m["version"],
            "shape": [int(s) for s in m["shape"]],
            "additional_references": references,
            "atlas_packager": m.get("atlas_packager"),
        }
        out.update({k: v for k, v in m.items() if k not in MANIFEST_KEYS and k != FILES_KEY})
        return out

    def _reference_name(self, reference: Any) -> str:
        name = str(reference.get("name", "")) if isinstance(reference, Mapping) else ""
        for prefix in (f"{self.atlas_name}-", f"{self.manifest.get('name')}-"):
            if name.startswith(prefix) and name.endswith("-template"):
                return name[len(prefix) : -len("-template")]
        return name

    @cached_property
    def atlas_name(self) -> str:
        """The atlas name with resolution (the manifest's folder)."""
        return self.manifest_path.parents[1].name

    @cached_property
    def _terminology(self) -> tuple[list[dict[str, Any]], StructureTree]:
        relative = f"{self.location('terminology')}/{TERMINOLOGY}"
        text = self.read(relative).decode("utf-8")
        return _terminology(text, str(self.root / relative))

    @cached_property
    def structures_list(self) -> list[dict[str, Any]]:
        """The terminology as BrainGlobe's structure dicts."""
        return self._terminology[0]

    @cached_property
    def tree(self) -> StructureTree:
        """The hierarchy the terminology was checked with when it was read (a first lookup
        by acronym, e.g. the first mesh, then builds no second tree: ~10 ms for Allen's)."""
        return self._terminology[1]

    def stack(self, name: str) -> Any:
        """``reference`` (the template), ``annotation``, ``hemispheres`` or an additional
        reference, read lazily at the atlas's resolution."""
        annotation_set = self.location("annotation_set")
        if name == "reference":
            folder = f"{self._template_location()}/{TEMPLATE}"
        elif name == "annotation":
            folder = f"{annotation_set}/{ANNOTATION}"
        elif name == "hemispheres":
            folder = f"{annotation_set}/{HEMISPHERES}"
        else:
            folder = f"{self._additional_reference(name)}/{TEMPLATE}"
        return self._level(folder)

    def _template_location(self) -> str:
        annotation_set = self.manifest.get("annotation_set")
        template = annotation_set.get("template") if isinstance(annotation_set, Mapping) else None
        if template is None:
            return self.location("template")
        return _location(template, "annotation_set template", self.manifest_path)

    def _additional_reference(self, name: str) -> str:
        for reference in self.manifest.get("additional_references") or []:
            if self._reference_name(reference) == name:
                return _location(reference, f"additional reference {name}", self.manifest_path)
        raise MissingFileError(f"{self.manifest_path} has no additional reference {name!r}.")

    def _level(self, folder: str, cache_bytes: int = CACHE_BYTES) -> ZarrArray:
        """The pyramid level of an OME-Zarr image whose scale is this atlas's resolution."""
        group = self._json(f"{folder}/zarr.json")
        resolution = np.asarray(self.metadata_dict["resolution"]) / 1000.0
        try:
            multiscales = group["attributes"]["ome"]["multiscales"][0]
            datasets = multiscales["datasets"]
        except (KeyError, IndexError, TypeError) as err:
            raise AtlasFormatError(
                f"{self.root / folder}: no OME-Zarr multiscales ({err})."
            ) from err
        for dataset in datasets:
            scale = next(
                (t["scale"] for t in dataset.get("coordinateTransformations", [])
                 if t.get("type") == "scale"),
                None,
            )  # fmt: skip
            if scale is not None and np.allclose(scale[-3:], resolution, rtol=1e-6, atol=0):
                path = str(dataset["path"])
                if "/" in path or path in ("", ".", ".."):
                    raise AtlasFormatError(f"{self.root / folder}: dataset path {path!r}.")
                return self._array(f"{folder}/{path}", cache_bytes)
        raise AtlasFormatError(
            f"{self.root / folder} has no level at {self.metadata_dict['resolution']} um."
        )

    def _array(self, folder: str, cache_bytes: int = CACHE_BYTES) -> ZarrArray:
        """A Zarr array of the atlas, its metadata and chunks read through :meth:`check`."""
        metadata = self._json(f"{folder}/zarr.json")
        return ZarrArray(
            self.root / folder,
            check=self.check,
            relative_to=self.root,
            metadata=metadata,
            cache_bytes=cache_bytes,
        )

    @property
    def mesh_folder(self) -> Path:
        return self.root / self.location("annotation_set") / MESHES

    def mesh_path(self, structure_id: int) -> Path:
        """``annotations.precomputed/mesh/<id>`` (a Draco fragment)."""
        return self.mesh_folder / str(int(structure_id))

    def mesh_files(self) -> dict[int, Path]:
        """Every mesh fragment the atlas has (listed in its manifest, or here), by id."""
        names: set[str] = set()
        if self.files is not None:
            base = f"{self.location('annotation_set')}/{MESHES}/"
            names = {key[len(base) :] for key in self.files if key.startswith(base)}
        elif self.mesh_folder.is_dir():
            names = {p.name for p in self.mesh_folder.iterdir()}
        return {int(name): self.mesh_folder / name for name in sorted(names) if name.isdigit()}

    def read_mesh(self, structure_id: int) -> tuple[Float64Array, IntArray]:
        """A structure's mesh in micrometres on the "asr" axes, checked and decoded."""
        relative = self._mesh_key(structure_id)
        return decode_mesh(self.read(relative), str(self.root / relative))

    def _read_native_mesh(self, structure_id: int) -> tuple[Any, Any]:
        relative = self._mesh_key(structure_id)
        return decode_mesh(self.read(relative), str(self.root / relative), native=True)

    def load_mesh(self, structure_id: int) -> Any:
        """The decoded Draco fragment as a ``meshio.Mesh`` in micrometres ("asr"), checked
        against the manifest first; MeshError when the atlas has no mesh for it."""
        import meshio

        from atlasmith.errors import MeshError

        if not self.listed(self._mesh_key(structure_id)):
            raise MeshError(
                f"No valid mesh for structure {structure_id}: {self.mesh_path(structure_id)} "
                "does not exist (the atlas has no mesh for this structure)."
            )
        # float32 points and uint32 faces, as BrainGlobe 3.0.2 gives them (the Draco data
        # holds 16-bit positions: float64 would add bytes, not precision)
        points, faces = self._read_native_mesh(structure_id)
        return meshio.Mesh(points, [("triangle", faces)])

    def _mesh_key(self, structure_id: int) -> str:
        return self.mesh_path(structure_id).relative_to(self.root).as_posix()

    # --- the 4-D masks -------------------------------------------------------------------------

    @cached_property
    def _masks(self) -> tuple[ZarrArray, dict[int, int]] | None:
        folder = f"{self.location('annotation_set')}/{ANNOTATION_MASKS}"
        if not self.listed(f"{folder}/zarr.json"):
            return None
        self._prefetch(
            key
            for key in self.files or {}
            if key.startswith(f"{folder}/")
            and (key.endswith("/zarr.json") or key.startswith(f"{folder}/{ANNOTATION_VALUES}/"))
        )
        values = self._array(f"{folder}/{ANNOTATION_VALUES}")
        index = {int(v): i for i, v in enumerate(np.asarray(values))}
        # no chunk cache: each structure's mask is its own chunks, read once (uncached, the
        # chunks decode into a few reused buffers instead of 16 MB of new memory each)
        return self._level(folder, cache_bytes=0), index

    def _prefetch(self, relatives: Iterable[str]) -> None:
        """Fetch these pieces of a lazily fetched atlas together (each checked as it comes),
        instead of one round trip after another as the reads that follow would."""
        if self.fetch is not None:
            each_in_readers(self.read, sorted(relatives))

    def structure_mask(self, structure_id: int) -> npt.NDArray[np.uint8] | None:
        """The structure's (and its descendants') voxels as 1, from the 4-D masks; None when
        the atlas has no masks."""
        if self._masks is None:
            return None
        masks, index = self._masks
        if structure_id not in index:
            return None
        return np.asarray(masks[index[structure_id]], dtype=np.uint8)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def is_v3_version(version: str) -> bool:
    """Whether a data version is a BrainGlobe 3 one (major 3 and above)."""
    return is_version(version) and int(version.split(".")[0]) >= 3
