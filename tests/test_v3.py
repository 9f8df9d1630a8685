"""BrainGlobe 3's format: the tree a build writes (brainglobe-v3.md section 2, items 1-9), reading
it through ``Atlas``, conversion both ways, and damaged or hostile trees.

BrainGlobe 3.0.2's own client and packager are exercised in test_bg3_interop.py.
"""

from __future__ import annotations

import configparser
import csv
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atlasmith import Atlas
from atlasmith.convert import convert_atlas
from atlasmith.errors import (
    AtlasExistsError,
    AtlasFormatError,
    ConfigError,
    HierarchyError,
    IntegrityError,
    MeshError,
)
from atlasmith.formats import V3Atlas, find_manifest, open_atlas_files
from atlasmith.formats._precomputed import decode_segmentation, segmentation_chunks
from atlasmith.meshes.obj import read_obj

ATLAS = "allen_mouse_100um"
VERSION_FOLDER = "3_2"


def _root(build: Any) -> Path:
    return Path(build.v3_manifest).parents[3]


def _manifest(build: Any) -> dict[str, Any]:
    return json.loads(Path(build.v3_manifest).read_text())


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def v1(allen_all_build: Any) -> Atlas:
    return Atlas(allen_all_build.folder)


@pytest.fixture(scope="module")
def v3(allen_all_build: Any) -> Atlas:
    return Atlas(allen_all_build.v3_manifest)


# --- the tree (brainglobe-v3.md section 2) ----------------------------------------------------


def test_build_writes_both_formats_by_default(allen_all_build: Any) -> None:
    out = allen_all_build.folder.parent
    assert allen_all_build.folder.name == "allen_mouse_100um_v1.2"
    assert allen_all_build.v3_manifest == (
        out / "brainglobe-atlasapi" / "atlases" / ATLAS / VERSION_FOLDER / "manifest.json"
    )


def test_manifest_has_brainglobes_keys_and_locations(allen_all_build: Any) -> None:
    manifest = _manifest(allen_all_build)
    keys = list(manifest)
    assert keys[:16] == [
        "name", "location", "citation", "atlas_link", "species", "symmetric", "resolution",
        "orientation", "version", "shape", "additional_references", "atlas_packager",
        "coordinate_space", "terminology", "annotation_set", "template",
    ]  # fmt: skip
    assert manifest["name"] == "allen_mouse"
    assert manifest["version"] == "3.2"
    assert manifest["resolution"] == [100.0, 100.0, 100.0]
    assert manifest["shape"] == [132, 80, 114]
    assert manifest["orientation"] == "asr"
    assert manifest["location"] == f"/atlases/{ATLAS}/{VERSION_FOLDER}"
    root = _root(allen_all_build)
    for key in ("template", "terminology", "annotation_set", "coordinate_space"):
        location = manifest[key]["location"]
        assert location.startswith("/"), key
        assert (root / location[1:]).is_dir(), key
        assert manifest[key]["version"] == "3.2"
    assert manifest["annotation_set"]["template"] == manifest["template"]
    assert manifest["annotation_set"]["terminology"] == manifest["terminology"]
    space = _json(root / manifest["coordinate_space"]["location"][1:] / "manifest.json")
    assert space == manifest["coordinate_space"]


def test_every_file_is_listed_with_its_sha256(allen_all_build: Any) -> None:
    root = _root(allen_all_build)
    listed = _manifest(allen_all_build)["atlasmith"]
    assert listed["format"] == "atlasmith-v3-files/1"
    on_disk = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != "last_versions.conf"
    }
    manifest_key = f"atlases/{ATLAS}/{VERSION_FOLDER}/manifest.json"
    assert set(listed["files"]) == on_disk - {manifest_key}
    for relative, entry in listed["files"].items():
        data = (root / relative).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_last_versions_conf(allen_all_build: Any) -> None:
    config = configparser.ConfigParser()
    config.read(_root(allen_all_build) / "atlases" / "last_versions.conf")
    assert dict(config["atlases"]) == {ATLAS: "3.2"}


def _array_meta(folder: Path) -> dict[str, Any]:
    return _json(folder / "s0" / "zarr.json")


@pytest.mark.parametrize(
    ("component", "name", "dtype"),
    [
        ("template", "template.ome.zarr", "uint16"),
        ("annotation_set", "annotations_compressed.ome.zarr", "uint32"),
        ("annotation_set", "hemispheres.ome.zarr", "uint8"),
    ],
)
def test_ome_zarr_images(allen_all_build: Any, component: str, name: str, dtype: str) -> None:
    root = _root(allen_all_build)
    folder = root / _manifest(allen_all_build)[component]["location"][1:] / name
    group = _json(folder / "zarr.json")
    assert group["node_type"] == "group"
    assert group["zarr_format"] == 3
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert [a["orientation"]["value"] for a in multiscale["axes"]] == [
        "anterior-to-posterior", "superior-to-inferior", "right-to-left",
    ]  # fmt: skip
    assert {a["unit"] for a in multiscale["axes"]} == {"millimeter"}
    (dataset,) = multiscale["datasets"]
    assert dataset["path"] == "s0"
    assert dataset["coordinateTransformations"] == [
        {"type": "scale", "scale": [0.1, 0.1, 0.1]},
        {"type": "translation", "translation": [0.0, 0.0, 0.0]},
    ]
    meta = _array_meta(folder)
    assert meta["data_type"] == dtype
    assert meta["shape"] == [132, 80, 114]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [128, 128, 128]
    assert meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
    assert meta["dimension_names"] == ["z", "y", "x"]
    assert meta["codecs"][-1] == {"name": "zstd", "configuration": {"level": 3, "checksum": True}}
    assert (folder / "s0" / "c" / "0" / "0" / "0").is_file()


def test_masks_are_post_order_with_descendants(allen_all_build: Any, v1: Atlas) -> None:
    root = _root(allen_all_build)
    folder = root / _manifest(allen_all_build)["annotation_set"]["location"][1:]
    masks = folder / "annotations.ome.zarr"
    meta = _array_meta(masks)
    assert meta["shape"] == [len(v1.tree), 132, 80, 114]
    assert meta["dimension_names"] == ["c", "z", "y", "x"]
    group = _json(masks / "zarr.json")["attributes"]["ome"]["multiscales"][0]
    assert group["axes"][0] == {"name": "c", "type": "channel"}
    assert group["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.1, 0.1, 0.1]
    values = _values(V3Atlas(allen_all_build.v3_manifest))
    tree = v1.tree
    assert values.tolist() == tree.postorder()
    position = {sid: i for i, sid in enumerate(values.tolist())}
    for sid in (997, 8, 315, 385):  # every structure comes after all of its descendants
        assert all(position[d] < position[sid] for d in tree.descendants(sid))
    for i in range(len(values)):  # BrainGlobe 3 takes a missing c/<i>/ for "not downloaded"
        assert (masks / "s0" / "c" / str(i)).is_dir()


@pytest.mark.parametrize("chunk", [256, 48])
def test_masks_ranked_a_block_of_rows_at_a_time_are_the_same(
    allen_all_build: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The masks read and rank the annotation a block of rows at a time into one reused
    slab (at 10 um a whole slab of chunk rows, ranked and copied, held 3.7 GB): blocks of 5
    rows, which cross the chunks' rows (48: chunks of 48, 48 and 36 rows), give the same
    files as one block per chunk."""
    from atlasmith.formats import _v3_writer

    files = open_atlas_files(allen_all_build.folder)
    monkeypatch.setattr(_v3_writer, "MASK_CHUNK", chunk)

    def masks(name: str, rows: int) -> dict[str, bytes]:
        monkeypatch.setattr(_v3_writer, "MAP_VOXELS", rows * 80 * 114)
        root = tmp_path / name
        root.mkdir()
        _v3_writer.V3Writer(root, files.metadata, files.tree).write_masks(files.annotation)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    whole, blocks = masks("whole", 1000), masks("blocks", 5)
    assert len(whole) > len(files.tree)  # a chunk (or its empty marker) per structure at least
    assert blocks == whole


def _values(files: V3Atlas) -> Any:
    from atlasmith.formats import ZarrArray

    folder = files.root / files.location("annotation_set") / "annotations.ome.zarr"
    return np.asarray(ZarrArray(folder / "annotation_values"))


def test_terminology_csv(allen_all_build: Any, v1: Atlas) -> None:
    root = _root(allen_all_build)
    location = _manifest(allen_all_build)["terminology"]["location"][1:]
    text = (root / location / "terminology.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "identifier", "parent_identifier", "annotation_value", "name", "abbreviation",
        "color_hex_triplet", "root_identifier_path",
    ]  # fmt: skip
    assert rows[1] == ["997", "", "997", "root", "root", "#FFFFFF", "[997]"]
    assert '"[997, 8]"' in text  # the path is quoted as BrainGlobe writes it
    by_id = {int(r[0]): r for r in rows[1:]}
    big_parents = [s for s in v1.tree if s.parent_id is not None and s.parent_id > 65535]
    assert big_parents  # Allen has some: 3.0.2 reads the column as UInt16
    for s in big_parents:
        assert by_id[s.id][1] == ""
        assert by_id[s.id][6] == "[" + ", ".join(map(str, s.structure_id_path)) + "]"
    small = next(s for s in v1.tree if s.parent_id is not None and s.parent_id <= 65535)
    assert by_id[small.id][1] == str(small.parent_id)
    assert all(r[5] == r[5].upper() and len(r[5]) == 7 for r in rows[1:])


def test_precomputed_annotation_and_meshes(allen_all_build: Any, v1: Atlas) -> None:
    root = _root(allen_all_build)
    folder = root / _manifest(allen_all_build)["annotation_set"]["location"][1:]
    pre = folder / "annotations.precomputed"
    info = _json(pre / "info")
    assert info["type"] == "segmentation"
    assert info["data_type"] == "uint32"
    assert info["mesh"] == "mesh"
    assert info["segment_properties"] == "segment_properties"
    (scale,) = info["scales"]
    assert scale["encoding"] == "compressed_segmentation"
    assert scale["chunk_sizes"] == [[256, 256, 64]]
    assert scale["size"] == [114, 80, 132]
    assert scale["resolution"] == [100000, 100000, 100000]
    annotation = np.asarray(v1.annotation)
    for name, region in segmentation_chunks(annotation.shape):  # every chunk decodes back
        data = (pre / scale["key"] / name).read_bytes()
        block = decode_segmentation(data, annotation[region].shape)
        assert np.array_equal(block, annotation[region])
    mesh_info = _json(pre / "mesh" / "info")
    assert mesh_info["@type"] == "neuroglancer_multilod_draco"
    assert mesh_info["vertex_quantization_bits"] == 16
    assert (pre / "mesh" / "997").is_file()
    assert (pre / "mesh" / "997.index").is_file()
    properties = _json(pre / "segment_properties" / "info")["inline"]
    assert properties["ids"][0] == "997"
    assert properties["properties"][0]["values"][0] == "root: (root)"


def test_draco_meshes_are_nanometres_xyz_reversed(allen_all_build: Any, v1: Atlas) -> None:
    import DracoPy

    root = _root(allen_all_build)
    folder = root / _manifest(allen_all_build)["annotation_set"]["location"][1:]
    raw = DracoPy.decode((folder / "annotations.precomputed" / "mesh" / "672").read_bytes())
    points, faces = read_obj(v1.files.mesh_path(672))
    assert np.abs(np.asarray(raw.points) / 1000 - points[:, ::-1]).max() < 0.1
    assert np.array_equal(np.asarray(raw.faces).reshape(-1, 3), faces[:, ::-1])


# --- reading through Atlas --------------------------------------------------------------------


def test_atlas_opens_manifest_or_version_folder(allen_all_build: Any) -> None:
    by_manifest = Atlas(allen_all_build.v3_manifest)
    by_folder = Atlas(allen_all_build.v3_manifest.parent)
    assert by_manifest.format == by_folder.format == "brainglobe-v3"
    assert by_manifest.metadata["version"] == "3.2"
    assert isinstance(open_atlas_files(allen_all_build.v3_manifest), V3Atlas)
    assert find_manifest(allen_all_build.folder) is None


def test_v3_answers_as_v1(v1: Atlas, v3: Atlas) -> None:
    rng = np.random.default_rng(1)
    points = rng.integers(0, v1.shape, size=(10_000, 3))
    assert np.array_equal(v3.structure_from_coords(points), v1.structure_from_coords(points))
    assert np.array_equal(
        v3.structure_from_coords(points, as_acronym=True, hierarchy_lev=3),
        v1.structure_from_coords(points, as_acronym=True, hierarchy_lev=3),
    )
    assert np.array_equal(
        v3.hemisphere_from_coords(points * 100.0, microns=True),
        v1.hemisphere_from_coords(points * 100.0, microns=True),
    )
    assert v3.structure_from_coords((66, 40, 57), as_acronym=True) == v1.structure_from_coords(
        (66, 40, 57), as_acronym=True
    )
    assert v3.structures_list == [
        {**s, "mesh_filename": v3.files.mesh_path(s["id"])} for s in v1.files.structures_list
    ]
    assert v3.lookup_df.equals(v1.lookup_df)
    assert np.array_equal(np.asarray(v3.reference), np.asarray(v1.reference))
    assert np.array_equal(np.asarray(v3.hemispheres), np.asarray(v1.hemispheres))
    stats3, stats1 = v3.structure_statistics(), v1.structure_statistics()
    assert stats3.equals(stats1)


def test_stacks_are_read_lazily(v3: Atlas) -> None:
    from atlasmith.formats import ZarrArray

    annotation = v3.annotation
    assert isinstance(annotation, ZarrArray)
    assert annotation.shape == (132, 80, 114)
    assert annotation[10:12, 3, ::7].shape == (2, 17)
    assert len(annotation._cache) <= 2  # a slab touches at most the chunks along axis 0


def test_structure_mask_per_format(v1: Atlas, v3: Atlas) -> None:
    for structure in ("CH", "VISp", 997):
        binary = v3.get_structure_mask(structure)
        ids = v1.get_structure_mask(structure)
        assert binary.dtype == np.uint8
        assert set(np.unique(binary)) <= {0, 1}
        assert np.array_equal(binary.astype(bool), ids > 0)


def test_meshes_decode_to_meshio_in_micrometres(v1: Atlas, v3: Atlas) -> None:
    for structure in ("CH", "VISp", "MOp"):
        mesh3, mesh1 = v3.mesh_from_structure(structure), v1.mesh_from_structure(structure)
        assert np.array_equal(mesh3.cells[0].data, mesh1.cells[0].data)
        assert np.abs(mesh3.points - mesh1.points).max() < 0.1


def test_a_structure_without_mesh_says_so(tree_copy: Path) -> None:
    files = V3Atlas(tree_copy)
    path = files.mesh_path(672)
    path.unlink()
    listed = _json(tree_copy)
    del listed["atlasmith"]["files"][path.relative_to(files.root).as_posix()]
    tree_copy.write_text(json.dumps(listed))
    with pytest.raises(MeshError, match="has no mesh for this structure"):
        Atlas(tree_copy).mesh_from_structure(672)


# --- conversion ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(allen_all_build: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("converted")
    to_v3 = convert_atlas(allen_all_build.archive, "v3", out / "v3")
    to_v1 = convert_atlas(allen_all_build.v3_manifest, "v1", out / "v1")
    back = convert_atlas(to_v1, "v3", out / "back")
    return {"v3": to_v3, "v1": to_v1, "back": back}


def test_v1_to_v3_is_the_builds_v3_byte_for_byte(
    allen_all_build: Any, converted: dict[str, Path]
) -> None:
    built = _json(allen_all_build.v3_manifest)
    assert _json(converted["v3"]) == built
    assert _json(converted["back"]) == built  # v3 -> v1 -> v3: every file the same


def test_v3_to_v1_keeps_stacks_structures_and_meshes(
    allen_all_build: Any, converted: dict[str, Path]
) -> None:
    original, folder = allen_all_build.folder, converted["v1"]
    assert folder.name == "allen_mouse_100um_v1.2"
    assert (folder.parent / "allen_mouse_100um_v1.2.tar.gz").is_file()
    for name in ("reference.tiff", "annotation.tiff"):
        assert np.array_equal(
            open_atlas_files(folder).stack(name[:-5]), open_atlas_files(original).stack(name[:-5])
        )
    for name in ("structures.json", "metadata.json", "structures.csv"):
        assert (folder / name).read_bytes() == (original / name).read_bytes(), name
    for mesh in sorted((original / "meshes").glob("*.obj")):
        points, faces = read_obj(mesh)
        back, back_faces = read_obj(folder / "meshes" / mesh.name)
        assert np.array_equal(faces, back_faces)
        # 16-bit quantization over the largest side: half a step (0.1007 um for the 13.2 mm
        # root; under 0.1 um for every mesh less than 13.1 mm across)
        extent = float(np.ptp(points, axis=0).max())
        assert np.abs(back - points).max() <= max(0.1, extent / 131070 + 1e-3), mesh.name


def test_convert_refuses_existing_output_and_same_format(
    allen_all_build: Any, converted: dict[str, Path]
) -> None:
    with pytest.raises(AtlasExistsError, match="--overwrite"):
        convert_atlas(allen_all_build.folder, "v3", converted["v3"].parents[4])
    with pytest.raises(ConfigError, match="already a v1.2"):
        convert_atlas(allen_all_build.folder, "v1", converted["v1"].parent)
    with pytest.raises(ConfigError, match="v1 or v3"):
        convert_atlas(allen_all_build.folder, "v2", converted["v1"].parent)


# --- damaged and hostile trees -------------------------------------------------------------


@pytest.fixture
def tree_copy(allen_all_build: Any, tmp_path: Path) -> Path:
    """A private copy of the v3 tree; returns its manifest."""
    root = _root(allen_all_build)
    shutil.copytree(root, tmp_path / "brainglobe-atlasapi")
    return tmp_path / "brainglobe-atlasapi" / "atlases" / ATLAS / VERSION_FOLDER / "manifest.json"


def _annotation_chunk(manifest: Path) -> Path:
    files = V3Atlas(manifest)
    return (
        files.root / files.location("annotation_set") / "annotations_compressed.ome.zarr/s0/c/1/0/0"
    )


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_missing_chunk_is_an_error_naming_it_never_zeros(tree_copy: Path) -> None:
    chunk = _annotation_chunk(tree_copy)
    chunk.unlink()
    atlas = Atlas(tree_copy)
    atlas.structure_from_coords((10, 40, 57))  # chunk 0/0/0 is intact
    with pytest.raises(IntegrityError, match=r"c/1/0/0 is missing, but the manifest lists it"):
        atlas.structure_from_coords((130, 40, 57))


def test_flipped_byte_in_chunk_is_an_error_naming_it(tree_copy: Path) -> None:
    chunk = _annotation_chunk(tree_copy)
    _flip(chunk, len(chunk.read_bytes()) // 2)
    with pytest.raises(IntegrityError, match=r"c/1/0/0 is damaged"):
        Atlas(tree_copy).structure_from_coords(np.array([[130, 40, 57], [131, 40, 57]]))


def test_flipped_byte_in_draco_mesh_is_an_error_naming_it(tree_copy: Path) -> None:
    atlas = Atlas(tree_copy)
    path = atlas.files.mesh_path(672)
    _flip(path, len(path.read_bytes()) // 3)
    with pytest.raises(IntegrityError, match=r"mesh/672 is damaged"):
        Atlas(tree_copy).mesh_from_structure(672)


def test_location_outside_the_root_is_refused(tree_copy: Path) -> None:
    manifest = _json(tree_copy)
    manifest["annotation_set"]["location"] = "/../../../etc"
    tree_copy.write_text(json.dumps(manifest))
    with pytest.raises(AtlasFormatError, match="not a path inside the atlas root"):
        Atlas(tree_copy).annotation  # noqa: B018


def _edit_terminology(manifest: Path, edit: Any) -> Path:
    files = V3Atlas(manifest)
    path = files.root / files.location("terminology") / "terminology.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    edit(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue())
    listed = _json(manifest)  # keep the checksum right: the tree itself is what is wrong
    data = path.read_bytes()
    relative = path.relative_to(files.root).as_posix()
    listed["atlasmith"]["files"][relative] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    manifest.write_text(json.dumps(listed))
    return path


def test_terminology_with_a_cycle_names_the_file(tree_copy: Path) -> None:
    def cycle(rows: list[list[str]]) -> None:
        rows[2][6] = "[997, 8, 8]"  # 8 is its own ancestor

    path = _edit_terminology(tree_copy, cycle)
    with pytest.raises(HierarchyError, match=re.escape(str(path))):
        Atlas(tree_copy).tree  # noqa: B018


def test_terminology_with_a_missing_parent_names_the_file(tree_copy: Path) -> None:
    def orphan(rows: list[list[str]]) -> None:
        rows[3][6] = "[997, 123456789, " + rows[3][0] + "]"

    path = _edit_terminology(tree_copy, orphan)
    with pytest.raises(HierarchyError, match=re.escape(str(path))):
        Atlas(tree_copy).tree  # noqa: B018


def test_damaged_tree_is_not_converted_and_leaves_nothing(tree_copy: Path, tmp_path: Path) -> None:
    _annotation_chunk(tree_copy).unlink()
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="is missing"):
        convert_atlas(tree_copy, "v1", out)
    assert not out.exists() or list(out.iterdir()) == []


# --- the chunked reader on its own --------------------------------------------------------------


def test_zarr_reader_agrees_with_numpy_on_every_path(tmp_path: Path) -> None:
    from atlasmith.formats import ZarrArray
    from atlasmith.formats._v3_writer import V3Tree
    from atlasmith.formats._zarr import ZarrWriter

    rng = np.random.default_rng(5)
    array = rng.integers(0, 2**20, size=(70, 33, 45)).astype(np.uint32)
    array[:16] = 0  # whole chunks of fill value: left out, read back as zeros
    tree = V3Tree(tmp_path)
    writer = ZarrWriter(tree.put, "a", array.shape, (16, 16, 16), np.uint32, ("z", "y", "x"))
    writer.write_all(array)
    assert not (tmp_path / "a/c/0/0/0").exists()
    stored = ZarrArray(tmp_path / "a")
    assert np.array_equal(np.asarray(stored), array)
    assert np.array_equal(stored[3:61:7, -5, ::4], array[3:61:7, -5, ::4])
    assert stored[69, 32, 44] == array[69, 32, 44]
    few = rng.integers(0, array.shape, size=(20, 3))  # grouped by chunk
    assert np.array_equal(ZarrArray(tmp_path / "a").values_at(few), array[tuple(few.T)])
    many = rng.integers(0, array.shape, size=(5000, 3))  # decoded once, then gathered
    fresh = ZarrArray(tmp_path / "a")
    assert np.array_equal(fresh.values_at(many), array[tuple(many.T)])
    assert fresh._dense is not None
    flat = np.ravel_multi_index(tuple(many.T), array.shape)
    assert np.array_equal(fresh.take(flat), array.reshape(-1)[flat])
    small = ZarrArray(tmp_path / "a", cache_bytes=3 * 16**3 * 4)  # a bounded chunk cache
    assert np.array_equal(small.values_at(many), array[tuple(many.T)])
    assert small._dense is None
    assert len(small._cache) <= 3


@pytest.mark.parametrize("size", [1, 100, 255, 256, 300, 65791, 70000, 2**24])
def test_zstd_content_size_is_the_decompressed_size(size: int) -> None:
    from numcodecs import Zstd

    from atlasmith.formats._readers import zstd_content_size as _zstd_content_size

    for checksum in (False, True):
        frame = Zstd(checksum=checksum).encode(np.zeros(size, np.uint8))
        assert _zstd_content_size(frame) == size == len(Zstd().decode(frame))
    assert _zstd_content_size(b"not zstd at all") is None
    assert _zstd_content_size(b"\x28\xb5\x2f\xfd") is None  # cut inside the header


def test_uncached_reads_agree_with_numpy_and_keep_nothing(tmp_path: Path) -> None:
    from atlasmith.formats import ZarrArray
    from atlasmith.formats._v3_writer import V3Tree
    from atlasmith.formats._zarr import ZarrWriter

    array = np.random.default_rng(7).integers(0, 2**20, size=(40, 33, 45)).astype(np.uint32)
    array[:16] = 0  # chunks of fill value, left out
    writer = ZarrWriter(V3Tree(tmp_path).put, "a", array.shape, (16, 16, 16), np.uint32)
    writer.write_all(array)
    whole = ZarrArray(tmp_path / "a")  # a read of the whole array caches no chunk
    assert np.array_equal(np.asarray(whole), array)
    assert not whole._cache
    assert np.array_equal(whole[1:39, 2, 5:44], array[1:39, 2, 5:44])
    assert whole._cache
    uncached = ZarrArray(tmp_path / "a", cache_bytes=0)
    for key in [(slice(None),) * 3, (slice(3, 37, 2), slice(None), 7), (20, 5)]:
        assert np.array_equal(uncached[key], array[key])
    assert not uncached._cache
    assert np.array_equal(ZarrArray(tmp_path / "a").dense(), array)


@pytest.mark.parametrize("damage", ["short", "flipped"])
def test_a_damaged_chunk_is_an_error_never_stale_values(tmp_path: Path, damage: str) -> None:
    from numcodecs import Zstd

    from atlasmith.formats import ZarrArray
    from atlasmith.formats._v3_writer import V3Tree
    from atlasmith.formats._zarr import ZarrWriter

    array = np.arange(32 * 16 * 16, dtype=np.uint32).reshape(32, 16, 16) + 1
    writer = ZarrWriter(V3Tree(tmp_path).put, "a", array.shape, (16, 16, 16), np.uint32)
    writer.write_all(array)
    chunk = tmp_path / "a/c/1/0/0"
    if damage == "short":  # a valid frame of half a chunk: decoded into a buffer that held
        # the first chunk, the rest of the buffer would be the first chunk's values
        chunk.write_bytes(Zstd(checksum=True).encode(array[16:24].copy()))
    else:
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0x10
        chunk.write_bytes(bytes(data))
    for stored in (ZarrArray(tmp_path / "a", cache_bytes=0), ZarrArray(tmp_path / "a")):
        with pytest.raises(IntegrityError, match="c/1/0/0"):
            np.asarray(stored)


def test_draco_meshes_decode_to_float64_micrometres_and_int64_faces() -> None:
    import DracoPy

    from atlasmith.formats._precomputed import decode_mesh

    rng = np.random.default_rng(3)
    points = rng.uniform(0, 8e6, size=(500, 3)).astype(np.float32)
    faces = rng.integers(0, 500, size=(900, 3)).astype(np.uint32)
    mesh = DracoPy.decode(DracoPy.encode(points, faces, quantization_bits=16))
    got_points, got_faces = decode_mesh(DracoPy.encode(points, faces, quantization_bits=16), "m")
    assert got_points.dtype == np.float64
    assert got_faces.dtype == np.int64
    assert got_points.flags.c_contiguous
    assert got_faces.flags.c_contiguous
    expected = np.asarray(mesh.points, dtype=np.float64).reshape(-1, 3)[:, ::-1] / 1000.0
    assert np.array_equal(got_points, expected)
    assert np.array_equal(got_faces, np.asarray(mesh.faces, np.int64).reshape(-1, 3)[:, ::-1])


def test_meshes_for_users_have_brainglobe_3s_types_and_values(v3: Atlas) -> None:
    """What ``mesh_from_structure`` returns for a v3 atlas is what BrainGlobe 3.0.2 computes
    from the same bytes (``mesh.points / 1000`` in float32, columns reversed; uint32 faces)."""
    import DracoPy

    mesh = v3.mesh_from_structure("CH")
    path = v3.meshfile_from_structure("CH")
    decoded = DracoPy.decode(path.read_bytes())
    assert mesh.points.dtype == np.float32
    assert mesh.cells[0].data.dtype == np.uint32
    assert mesh.points.flags.c_contiguous
    assert mesh.cells[0].data.flags.c_contiguous
    expected = (np.asarray(decoded.points).reshape(-1, 3) / 1000.0)[:, [2, 1, 0]]
    assert expected.dtype == np.float32
    assert np.array_equal(mesh.points, expected)
    faces = np.asarray(decoded.faces).reshape(-1, 3)[:, [2, 1, 0]]
    assert np.array_equal(mesh.cells[0].data, faces)


def test_the_tree_is_the_one_that_checked_the_terminology(
    tree_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlasmith.hierarchy import StructureTree

    built = []
    from_list = StructureTree.from_list

    def counted(structures: Any) -> StructureTree:
        built.append(structures)
        return from_list(structures)

    monkeypatch.setattr(StructureTree, "from_list", counted)
    files = V3Atlas(tree_copy)
    assert files.tree["CH"].acronym == "CH"
    assert len(files.structures_list) == len(files.tree)
    assert len(built) == 1
