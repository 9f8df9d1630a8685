"""Writing BrainGlobe 3 atlases (``_v3`` describes the layout): from the same inputs as the
v1.2 folder, or from any atlas (:func:`write_v3`), into a staging root, then moved into
place component by component (:func:`place_v3`), the manifest last.

Every piece is written once, a chunk at a time, and recorded with its sha256 as it is
written (:class:`V3Tree`), so the manifest can list every file without reading anything
back. The 4-D structure masks take one pass over the annotation: each slab of the
annotation becomes post-order ranks once, and every structure's mask in that slab is a
range test on them (its descendants are the ranks just before it), inside its bounding box.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith._fs import FILE_MODE, atomic_write, replace_path
from atlasmith._labels import in_run
from atlasmith._types import Float64Array, IntArray
from atlasmith.errors import AtlasExistsError, AtlasFormatError
from atlasmith.formats._base import AtlasFiles, symmetric_hemispheres
from atlasmith.formats._precomputed import (
    encode_mesh,
    encode_segmentation,
    mesh_info,
    scale_key,
    segment_properties,
    segmentation_chunks,
    segmentation_info,
)
from atlasmith.formats._v3 import (
    ANNOTATION,
    ANNOTATION_MASKS,
    ANNOTATION_VALUES,
    FILES_FORMAT,
    FILES_KEY,
    HEMISPHERES,
    LAST_VERSIONS,
    MANIFEST,
    MESHES,
    PRECOMPUTED,
    TEMPLATE,
    TERMINOLOGY,
    TERMINOLOGY_HEADER,
    V3Layout,
    is_v3_version,
)
from atlasmith.formats._zarr import ZarrWriter, write_group
from atlasmith.hierarchy import StructureTree
from atlasmith.metadata import AtlasMetadata
from atlasmith.names import parse_version
from atlasmith.statistics import label_profiles

__all__ = [
    "V3Tree",
    "V3Writer",
    "check_v3_free",
    "install_v3",
    "merge_last_versions",
    "place_v3",
    "terminology_csv",
    "v3_version",
    "write_v3",
]

STACK_CHUNK = 128  # OME-Zarr stacks, voxels per side (BrainGlobe's)
MASK_CHUNK = 256  # 4-D masks: one structure, up to 256 voxels per side (BrainGlobe's)
MAP_VOXELS = 1 << 25  # voxels of labels the masks read and rank at a time
MASK_ZSTD_LEVEL = 1  # binary masks: the same size as level 3 in half the time (measured)
_PARENT_MAX = 65535  # BrainGlobe 3.0.2 reads parent ids as UInt16
_AXES = (
    ("z", "anterior-to-posterior"),
    ("y", "superior-to-inferior"),
    ("x", "right-to-left"),
)


def v3_version(version: str) -> str:
    """The BrainGlobe 3 version of an atlas version: ``"1.2"`` -> ``"3.2"`` (a v3 one stays)."""
    return version if is_v3_version(version) else f"3.{parse_version(version)[1]}"


class V3Tree:
    """A staging root that records the sha256 and size of every file put in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._folders: set[Path] = set()
        root.mkdir(parents=True, exist_ok=True)

    def put(self, relative: str, data: bytes) -> None:
        """Write ``root/relative`` (a new file) and record it."""
        path = self.root / relative
        if path.parent not in self._folders:
            self._make_folder(path.parent)
        path.write_bytes(data)
        self.record(relative, data)

    def _make_folder(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, one ``mkdir`` each (the tree has
        thousands of small folders: BrainGlobe's chunk keys ``c/<i>/<z>/<y>/<x>``)."""
        missing = []
        while folder not in self._folders and folder != self.root:
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(new)
            with self._lock:
                self._folders.add(new)

    def record(self, relative: str, data: bytes) -> None:
        """Record a file written by someone else (the mesh engine's Draco fragments)."""
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        with self._lock:
            self.files[relative] = entry


def _dump(document: Any) -> bytes:
    return (json.dumps(document, indent=4) + "\n").encode()


def _ome(resolution_um: tuple[float, ...], channel: bool) -> dict[str, Any]:
    """The OME-Zarr 0.5 ``multiscales`` attributes of one level at the atlas's resolution."""
    scale = [float(r) / 1000.0 for r in resolution_um]
    axes: list[dict[str, Any]] = [
        {
            "name": name,
            "type": "space",
            "unit": "millimeter",
            "orientation": {"type": "anatomical", "value": value},
        }
        for name, value in _AXES
    ]
    if channel:
        scale, axes = [1.0, *scale], [{"name": "c", "type": "channel"}, *axes]
    dataset = {
        "path": "s0",
        "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": [0.0] * len(scale)},
        ],
    }
    multiscales = {"datasets": [dataset], "name": "/", "axes": axes}
    return {"ome": {"version": "0.5", "multiscales": [multiscales]}}


def terminology_csv(tree: StructureTree) -> str:
    """``terminology.csv``: one row per structure in input order; a parent id above 65535 is
    left empty (BrainGlobe 3.0.2 reads the column as UInt16; the tree is built from the
    path)."""
    out = io.StringIO()
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TERMINOLOGY_HEADER)
    for s in tree:
        parent = s.parent_id
        writer.writerow(
            [
                s.id,
                "" if parent is None or parent > _PARENT_MAX else parent,
                s.id,
                s.name,
                s.acronym,
                "#{:02X}{:02X}{:02X}".format(*s.rgb_triplet),
                "[" + ", ".join(str(p) for p in s.structure_id_path) + "]",
            ]
        )
    return out.getvalue()


def _boxes(annotation: Any, tree: StructureTree, order: list[int]) -> IntArray:
    """Bounding box of every structure with its descendants, by compact index: (N + 1, 6)
    as low 0..2 (inclusive) then high 0..2 (exclusive); empty: low = size, high = 0."""
    profiles = label_profiles(annotation, len(tree) + 1, tree.compact)
    boxes = profiles.boxes()
    for sid in order:  # post-order: children are folded into their parent before it is used
        parent = tree.parent(sid)
        if parent is None:
            continue
        child, up = tree.index(sid) + 1, tree.index(parent) + 1
        boxes[up, :3] = np.minimum(boxes[up, :3], boxes[child, :3])
        boxes[up, 3:] = np.maximum(boxes[up, 3:], boxes[child, 3:])
    return boxes


class V3Writer:
    """Writes one atlas version's BrainGlobe 3 components into a staging root.

    Parameters
    ----------
    root : Path
        The staging root (an empty folder on the same file system as the final root).
    metadata : AtlasMetadata
        The atlas's metadata ("asr"; its version becomes ``3.<minor>``).
    tree : StructureTree
        The structures (every one with voxels, for a build).
    executor : Executor, optional
        Threads for the chunk work (zstd and numpy release the GIL); default: sequential.

    The stacks, masks, segmentation and meshes can be written in any order (and the meshes
    by the mesh engine straight into :attr:`mesh_folder`); :meth:`finish` writes the tables
    and the manifest last.
    """

    def __init__(
        self,
        root: Path,
        metadata: AtlasMetadata,
        tree: StructureTree,
        executor: Executor | None = None,
    ) -> None:
        self.metadata = metadata
        self.tree = tree
        self.version = v3_version(metadata.version)
        self.layout = V3Layout(metadata.atlas_name, self.version)
        self.out = V3Tree(root)
        self.executor = executor

    # --- stacks ------------------------------------------------------------------------------

    def _map(self, function: Any, items: Iterable[Any]) -> None:
        if self.executor is None:
            for item in items:
                function(item)
            return
        for _ in self.executor.map(function, items):
            pass

    def _image(self, folder: str, array: Any, dtype: npt.DTypeLike) -> None:
        write_group(self.out.put, folder, _ome(self.metadata.resolution, channel=False))
        shape = tuple(int(s) for s in array.shape)
        writer = ZarrWriter(
            self.out.put, f"{folder}/s0", shape, (STACK_CHUNK,) * 3, dtype, ("z", "y", "x")
        )
        grid = [range(n) for n in writer.grid]

        def one_slab(k: int) -> None:
            slab = np.asarray(array[k * STACK_CHUNK : (k + 1) * STACK_CHUNK])
            for j, i in product(*grid[1:]):
                _, ys, xs = writer.region((k, j, i))
                writer.write_chunk((k, j, i), slab[:, ys, xs].astype(writer.dtype, copy=False))

        self._map(one_slab, grid[0])

    def write_stacks(
        self,
        reference: Any,
        annotation: Any,
        hemispheres: Any | None,
        additional_references: Mapping[str, Any],
    ) -> None:
        """The template, the annotation, the hemispheres (synthesised as BrainGlobe does for
        a symmetric atlas, so 3.x readers that read it anyway agree) and the additional
        references, as OME-Zarr images of 128-voxel chunks."""
        layout = self.layout
        self._image(f"{layout.template}/{TEMPLATE}", reference, np.uint16)
        self._image(f"{layout.annotation_set}/{ANNOTATION}", annotation, np.uint32)
        if hemispheres is None:
            hemispheres = symmetric_hemispheres(tuple(annotation.shape))
        self._image(f"{layout.annotation_set}/{HEMISPHERES}", hemispheres, np.uint8)
        for name, array in additional_references.items():
            self._image(f"{layout.reference(name)}/{TEMPLATE}", array, np.uint16)

    # --- 4-D masks -----------------------------------------------------------------------------

    def write_masks(self, annotation: Any) -> None:
        """``annotations.ome.zarr``: one binary mask per structure (with its descendants), in
        post-order, with ``annotation_values``; one pass over the annotation, a slab of
        chunk rows at a time."""
        tree, folder = self.tree, f"{self.layout.annotation_set}/{ANNOTATION_MASKS}"
        order = tree.postorder()
        shape = tuple(int(s) for s in annotation.shape)
        write_group(self.out.put, folder, _ome(self.metadata.resolution, channel=True))
        values = ZarrWriter(
            self.out.put, f"{folder}/{ANNOTATION_VALUES}", (len(order),), (len(order),), np.uint32
        )
        values.write_chunk((0,), np.asarray(order, dtype=np.uint32), keep_empty=True)
        chunk = tuple(min(MASK_CHUNK, n) for n in shape)
        masks = ZarrWriter(
            self.out.put, f"{folder}/s0", (len(order), *shape), (1, *chunk), np.uint8,
            ("c", "z", "y", "x"), MASK_ZSTD_LEVEL,
        )  # fmt: skip
        compact = np.array([tree.index(sid) + 1 for sid in order], dtype=np.int64)
        # uint16 ranks where they fit (a slab of them is 467 MB at 10 um)
        rank = np.zeros(len(tree) + 1, dtype=np.uint16 if len(order) < 2**16 else np.uint32)
        rank[compact] = np.arange(1, len(order) + 1)
        sizes = np.array([len(tree.descendants(sid)) + 1 for sid in order], dtype=np.int64)
        boxes = _boxes(annotation, tree, order)[compact]
        written = np.zeros(len(order), dtype=bool)
        scratch = threading.local()  # per thread: a chunk and a rank buffer, reused (no faults)
        # one slab of chunk rows of ranks, reused, filled a block of rows at a time: the slab's
        # labels read whole, their ranks and a copy of those held four slabs at once (3.7 GB
        # at 10 um, beside the meshes' memory)
        slab = np.empty(chunk[:1] + shape[1:], dtype=rank.dtype)
        step = max(1, MAP_VOXELS // max(1, shape[1] * shape[2]))
        for k in range(masks.grid[1]):
            z0, z1 = k * chunk[0], min((k + 1) * chunk[0], shape[0])
            for r0 in range(z0, z1, step):
                r1 = min(r0 + step, z1)
                labels = np.asarray(annotation[r0:r1])
                tree.map_labels(labels, rank, out=slab[r0 - z0 : r1 - z0])
            ranks = slab[: z1 - z0]
            inside = np.flatnonzero((boxes[:, 0] < z1) & (boxes[:, 3] > z0))

            def one_structure(i: int, k: int = k, z0: int = z0, ranks: Any = ranks) -> None:
                if not hasattr(scratch, "block"):
                    scratch.block = np.zeros((1, *chunk), dtype=np.uint8)
                    scratch.offsets = np.empty(chunk, dtype=np.uint32)
                block, offsets = scratch.block, scratch.offsets
                lo, hi = i + 2 - sizes[i], i + 1  # ranks of the descendants, then itself
                box = boxes[i]
                for j, m in product(range(masks.grid[2]), range(masks.grid[3])):
                    y0, x0 = j * chunk[1], m * chunk[2]
                    a = (max(box[0], z0), max(box[1], y0), max(box[2], x0))
                    b = (
                        min(box[3], z0 + chunk[0]),
                        min(box[4], y0 + chunk[1]),
                        min(box[5], x0 + chunk[2]),
                    )
                    if any(p >= q for p, q in zip(a, b, strict=True)):
                        continue
                    part = ranks[a[0] - z0 : b[0] - z0, a[1] : b[1], a[2] : b[2]]
                    local = tuple(slice(0, q - p) for p, q in zip(a, b, strict=True))
                    region = block[
                        0, a[0] - z0 : b[0] - z0, a[1] - y0 : b[1] - y0, a[2] - x0 : b[2] - x0
                    ]
                    in_run(part, int(lo), int(hi), out=region.view(bool), scratch=offsets[local])
                    if masks.write_chunk((i, k, j, m), block):
                        written[i] = True
                    region[...] = 0

            self._map(one_structure, inside.tolist())
        for i in np.flatnonzero(~written):  # BrainGlobe 3 takes a missing c/<i> as not cached
            masks.write_chunk((int(i), 0, 0, 0), np.zeros((1, *chunk), np.uint8), keep_empty=True)

    # --- neuroglancer's precomputed segmentation and meshes ------------------------------------

    def write_segmentation(self, annotation: Any) -> None:
        """``annotations.precomputed``: ``info`` and the compressed-segmentation chunks."""
        folder = f"{self.layout.annotation_set}/{PRECOMPUTED}"
        shape, resolution = tuple(annotation.shape), self.metadata.resolution
        key = scale_key(resolution)
        self.out.put(f"{folder}/info", _dump(segmentation_info(shape, resolution)))

        def one_chunk(item: tuple[str, tuple[slice, ...]]) -> None:
            name, region = item
            block = np.asarray(annotation[region])
            self.out.put(f"{folder}/{key}/{name}", encode_segmentation(block))

        self._map(one_chunk, segmentation_chunks(shape))

    @property
    def mesh_folder(self) -> Path:
        """Where the Draco fragments go (``annotations.precomputed/mesh``)."""
        return self.out.root / self.layout.annotation_set / MESHES

    def write_meshes(self, meshes: Iterable[tuple[int, Float64Array, IntArray]]) -> None:
        """Encode ``(structure id, points in um "asr", triangles)`` as Draco fragments."""

        def one_mesh(item: tuple[int, Float64Array, IntArray]) -> None:
            sid, points, faces = item
            fragment, index = encode_mesh(points, faces)
            self.out.put(f"{self.layout.annotation_set}/{MESHES}/{sid}", fragment)
            self.out.put(f"{self.layout.annotation_set}/{MESHES}/{sid}.index", index)

        self._map(one_mesh, meshes)

    def record_meshes(self) -> None:
        """Record the fragments the mesh engine wrote into :attr:`mesh_folder`."""
        base = f"{self.layout.annotation_set}/{MESHES}"
        for path in sorted(self.mesh_folder.iterdir()):
            self.out.record(f"{base}/{path.name}", path.read_bytes())

    # --- tables and manifests ------------------------------------------------------------------

    def _reference(self, location: str, name: str) -> dict[str, Any]:
        return {"name": name, "version": self.version, "location": f"/{location}"}

    def finish(self) -> Path:
        """Write the terminology, the neuroglancer tables, the coordinate space and last the
        atlas manifest (listing every file's sha256); return the manifest's path."""
        layout, tree, meta, put = self.layout, self.tree, self.metadata, self.out.put
        put(f"{layout.terminology}/{TERMINOLOGY}", terminology_csv(tree).encode("utf-8"))
        precomputed = f"{layout.annotation_set}/{PRECOMPUTED}"
        put(f"{precomputed}/mesh/info", _dump(mesh_info()))
        labels = [f"{s.acronym}: ({s.name})" for s in tree]
        properties = segment_properties(tree.ids.tolist(), labels)
        put(f"{precomputed}/segment_properties/info", _dump(properties))
        atlas = layout.atlas
        template = self._reference(layout.template, f"{atlas}-template")
        terminology = self._reference(layout.terminology, f"{atlas}-terminology")
        space = {**self._reference(layout.coordinate_space, f"{atlas}-space"), "template": template}
        put(f"{layout.coordinate_space}/{MANIFEST}", _dump(space))
        manifest: dict[str, Any] = {
            "name": meta.name,
            "location": f"/{layout.atlas_folder}",
            "citation": meta.citation,
            "atlas_link": meta.atlas_link,
            "species": meta.species,
            "symmetric": meta.symmetric,
            "resolution": [float(r) for r in meta.resolution],
            "orientation": "asr",
            "version": self.version,
            "shape": [int(s) for s in meta.shape],
            "additional_references": [
                self._reference(layout.reference(name), f"{atlas}-{name}-template")
                for name in meta.additional_references
            ],
            "atlas_packager": meta.atlas_packager,
            "coordinate_space": space,
            "terminology": terminology,
            "annotation_set": {
                **self._reference(layout.annotation_set, f"{atlas}-annotation"),
                "template": template,
                "terminology": terminology,
            },
            "template": template,
        }
        manifest.update(meta.extra)
        files = {key: self.out.files[key] for key in sorted(self.out.files)}
        manifest[FILES_KEY] = {"format": FILES_FORMAT, "files": files}
        path = self.out.root / layout.manifest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_dump(manifest))
        return path


def _meshes_of(
    files: AtlasFiles, tree: StructureTree
) -> Iterator[tuple[int, Float64Array, IntArray]]:
    present = files.mesh_files()
    for s in tree:
        if s.id in present:
            points, faces = files.read_mesh(s.id)
            yield s.id, points, faces


def write_v3(files: AtlasFiles, root: Path, workers: int = 2) -> V3Writer:
    """Write any atlas (a v1.2 folder, a v3 atlas) as BrainGlobe 3 components under the
    staging ``root``; return the writer (its ``layout`` says where everything went)."""
    if tuple(files.metadata.orientation) != tuple("asr"):
        raise AtlasFormatError(
            f"{files.path}: its stacks are {files.metadata.orientation!r}; only 'asr' atlases "
            "(every BrainGlobe package) can be written as BrainGlobe 3."
        )
    with ThreadPoolExecutor(workers) as pool:
        writer = V3Writer(root, files.metadata, files.tree, pool)
        hemispheres = None if files.metadata.symmetric else files.stack("hemispheres")
        references = {name: files.stack(name) for name in files.metadata.additional_references}
        writer.write_stacks(files.reference, files.annotation, hemispheres, references)
        writer.write_masks(files.annotation)
        writer.write_segmentation(files.annotation)
        writer.write_meshes(_meshes_of(files, files.tree))
        writer.finish()
    return writer


# --- moving a staged version into a root -------------------------------------------------------


def _components(layout: V3Layout, references: Iterable[str]) -> list[str]:
    """A version's component folders, the atlas's own folder (with the manifest) last."""
    return [
        layout.template,
        *(layout.reference(name) for name in references),
        layout.annotation_set,
        layout.terminology,
        layout.coordinate_space,
        layout.atlas_folder,
    ]


def check_v3_free(root: Path, layout: V3Layout, overwrite: bool) -> None:
    """AtlasExistsError when ``root`` already has this version and ``overwrite`` is False."""
    if (root / layout.atlas_folder).exists() and not overwrite:
        raise AtlasExistsError(
            f"output already exists: {root / layout.atlas_folder}. Remove it, choose another "
            "--out folder, or pass --overwrite to replace it."
        )


def install_v3(
    files: AtlasFiles, staging: Path, root: Path, overwrite: bool, workers: int = 2
) -> Path:
    """Write any atlas as BrainGlobe 3 components in ``staging`` (an empty folder on the
    root's disk) and move them into ``root``; return the manifest."""
    layout = write_v3(files, staging, workers).layout
    references = files.metadata.additional_references
    return place_v3(staging, layout, references, root, overwrite)


def place_v3(
    staging: Path, writer_layout: V3Layout, references: Iterable[str], root: Path, overwrite: bool
) -> Path:
    """Move a staged version's components into ``root`` (each folder swapped in whole, the
    atlas's manifest folder last, so a reader never finds a manifest before its pieces) and
    record its version in ``atlases/last_versions.conf``. Return the manifest's path.

    Raises
    ------
    AtlasExistsError
        The version is already in ``root`` and ``overwrite`` is False (checked before
        anything moves).
    """
    components = _components(writer_layout, list(references))
    final = root / writer_layout.manifest
    check_v3_free(root, writer_layout, overwrite)
    for component in components:
        target = root / component
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_path(staging / component, target)
    merge_last_versions(root / LAST_VERSIONS, {writer_layout.atlas: writer_layout.version})
    return final


def merge_last_versions(path: Path, versions: Mapping[str, str]) -> None:
    """Set ``[atlases] <atlas> = <version>`` in a ``last_versions.conf`` (BrainGlobe's INI
    of latest versions), keeping its other entries in their order and a newer version already
    listed; written atomically, in the repository's own rendering (no trailing blank line)."""
    sections: dict[str, dict[str, str]] = {"atlases": {}}
    if path.is_file():
        config = configparser.ConfigParser()
        config.optionxform = str  # type: ignore[assignment,method-assign]  # keep the case
        try:
            config.read_string(path.read_text(encoding="utf-8"))
            sections.update({name: dict(config[name]) for name in config.sections()})
        except (configparser.Error, UnicodeDecodeError):
            pass  # damaged: rewritten from what is known now
    listed = sections["atlases"]
    for atlas, version in versions.items():
        try:
            newer = atlas in listed and parse_version(listed[atlas]) > parse_version(version)
        except ValueError:
            newer = False
        if not newer:
            listed[atlas] = version
    text = "\n\n".join(
        "\n".join([f"[{name}]", *(f"{k} = {v}" for k, v in entries.items())])
        for name, entries in sections.items()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (text + "\n").encode(), FILE_MODE)
