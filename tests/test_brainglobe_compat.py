"""Differential tests: BrainGlobe 2.3.1's own reader and atlasmith.Atlas on the same folders.

Folders: the bundled real Allen 100 um atlas; an asymmetric variant of it (hemispheres.tiff
with 0 outside the brain, one additional reference); symmetric variants 113 and 115 voxels
wide (BrainGlobe's midline rounding). Every query member must give identical answers, and every
error the same exception class, apart from the two deliberate differences (tested at the end,
showing both behaviours).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import meshio
import numpy as np
import pandas as pd
import pytest
import tifffile
from brainglobe_atlasapi import core as bg_core

from atlasmith import Atlas
from atlasmith.errors import CoordinateError


def write_asymmetric_variant(source: Path, parent: Path) -> Path:
    """Copy an atlas folder as an asymmetric one, with hemispheres.tiff and a second reference."""
    folder = parent / "allen_mouse_asym_100um_v1.2"
    shutil.copytree(source, folder)
    annotation = tifffile.imread(folder / "annotation.tiff")
    reference = tifffile.imread(folder / "reference.tiff")
    width = annotation.shape[2]
    hemispheres = np.where(np.arange(width) < width // 2 + 3, 2, 1).astype(np.uint8)
    hemispheres = np.broadcast_to(hemispheres, annotation.shape).copy()
    hemispheres[annotation == 0] = 0  # outside the brain: on no hemisphere
    tifffile.imwrite(folder / "hemispheres.tiff", hemispheres)
    tifffile.imwrite(folder / "inverted.tiff", (65535 - reference).astype(np.uint16))
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(name="allen_mouse_asym", symmetric=False, additional_references=["inverted"])
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def write_cropped_variant(source: Path, parent: Path, width: int) -> Path:
    """Copy a symmetric atlas folder cropped to ``width`` voxels along the left-right axis."""
    folder = parent / f"allen_mouse_w{width}_100um_v1.2"
    folder.mkdir()
    for name in ("structures.json", "README.txt", "structures.csv"):
        shutil.copyfile(source / name, folder / name)
    for name in ("annotation.tiff", "reference.tiff"):
        tifffile.imwrite(
            folder / name, np.ascontiguousarray(tifffile.imread(source / name)[..., :width])
        )
    meta = json.loads((source / "metadata.json").read_text())
    meta["shape"][2] = width
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def folders(example_atlas_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    parent = tmp_path_factory.mktemp("compat")
    return {
        "example": example_atlas_dir,
        "asymmetric": write_asymmetric_variant(example_atlas_dir, parent),
        "width113": write_cropped_variant(example_atlas_dir, parent, 113),
        "width115": write_cropped_variant(example_atlas_dir, parent, 115),
    }


@pytest.fixture(scope="module", params=["example", "asymmetric"])
def pair(request: pytest.FixtureRequest, folders: dict[str, Path]) -> tuple[Any, Atlas]:
    path = folders[request.param]
    return bg_core.Atlas(path), Atlas(path)


def contract_class(err: BaseException) -> type[BaseException]:
    """The class the contract promises: meshio's ReadError or the nearest builtin exception."""
    for cls in type(err).__mro__:
        if cls is meshio.ReadError or cls.__module__ == "builtins":
            return cls
    raise AssertionError(f"no builtin base in {type(err).__mro__}")


def same(theirs: Callable[[], Any], ours: Callable[[], Any]) -> Any:
    """Both give equal results, or both raise, ours an instance of BrainGlobe's class
    (its builtin class, e.g. ValueError for json's JSONDecodeError)."""
    try:
        expected = theirs()
    except Exception as err:  # noqa: BLE001 - any exception of BrainGlobe's is the oracle
        with pytest.raises(contract_class(err)):
            ours()
        return err
    got = ours()
    assert_same_value(got, expected)
    return expected


def assert_same_value(got: Any, expected: Any) -> None:
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype
    else:
        assert got == expected
        assert type(got) is type(expected)


# --- description ------------------------------------------------------------------------------


def test_description_members(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    for member in ("metadata", "shape", "resolution", "shape_um", "orientation", "root_dir",
                   "left_hemisphere_value", "right_hemisphere_value"):  # fmt: skip
        assert getattr(ours, member) == getattr(bg, member), member
    assert ours.structures_list == bg.structures_list  # mesh_filename paths included
    pd.testing.assert_frame_equal(ours.lookup_df, bg.lookup_df)
    assert ours.hierarchy.show(stdout=False) == bg.hierarchy.show(stdout=False)
    assert repr(ours.structures) == repr(bg.structures)
    assert ours.space == bg.space
    assert ours.space.axes_order == bg.space.axes_order


def test_structures_mapping(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    assert list(ours.structures) == list(bg.structures.keys())
    assert len(ours.structures) == len(bg.structures)
    assert ours.structures.acronym_to_id_map == bg.structures.acronym_to_id_map
    for sid in list(bg.structures.keys())[::5]:
        assert ours.structures[sid].data == bg.structures[sid].data  # mesh not read


@pytest.mark.parametrize(
    "key", [997, "997", 997.0, 997.9, np.uint32(385), np.int64(8), "VISp", "root", "nope",
            123456, 0, None, [997], "CH ", float("nan")]
)  # fmt: skip
def test_structures_keys(pair: tuple[Any, Atlas], key: Any) -> None:
    bg, ours = pair
    same(lambda: bg.structures[key].data, lambda: ours.structures[key].data)


@pytest.mark.parametrize("name", ["reference", "annotation", "hemispheres"])
def test_stacks(pair: tuple[Any, Atlas], name: str) -> None:
    bg, ours = pair
    theirs, mine = getattr(bg, name), getattr(ours, name)
    np.testing.assert_array_equal(mine, theirs)
    assert mine.dtype == theirs.dtype
    assert mine.shape == theirs.shape


@pytest.mark.parametrize("width", [113, 115])
def test_symmetric_midline_rounding(folders: dict[str, Path], width: int) -> None:
    path = folders[f"width{width}"]
    bg, ours = bg_core.Atlas(path), Atlas(path)
    np.testing.assert_array_equal(ours.hemispheres, bg.hemispheres)
    middle = (40, 40, width // 2)
    same(lambda: bg.hemisphere_from_coords(middle), lambda: ours.hemisphere_from_coords(middle))
    # Python's round: 56.5 -> 56 (middle plane left), 57.5 -> 58 (middle plane right)
    assert ours.hemisphere_from_coords(middle) == (1 if width == 113 else 2)


def test_additional_references(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    assert list(ours.additional_references) == list(bg.additional_references)
    assert ours.additional_references.references_list == bg.additional_references.references_list
    for name in bg.additional_references.references_list:
        np.testing.assert_array_equal(
            ours.additional_references[name], bg.additional_references[name]
        )
    with pytest.warns(UserWarning, match="No reference named nope"):
        assert bg.additional_references["nope"] is None
    with pytest.warns(UserWarning, match="No reference named nope"):
        assert ours.additional_references["nope"] is None


# --- point queries ----------------------------------------------------------------------------


def _points(shape: tuple[int, ...], n: int = 300) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(7)
    pts = rng.integers(0, shape, size=(n, 3))
    return [tuple(int(v) for v in p) for p in pts] + [(0, 0, 0), (66, 40, 57), (131, 79, 113)]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"as_acronym": True}, {"as_acronym": True, "key_error_string": "nowhere"},
     {"hierarchy_lev": 2}, {"hierarchy_lev": 4, "as_acronym": True}, {"hierarchy_lev": 9},
     {"hierarchy_lev": -1}, {"hierarchy_lev": 0}],
)  # fmt: skip
def test_structure_from_coords_voxels(pair: tuple[Any, Atlas], kwargs: dict[str, Any]) -> None:
    bg, ours = pair
    errors = 0
    for p in _points(bg.shape):
        for coords in (p, list(p), np.array(p)):
            result = same(
                lambda c=coords: bg.structure_from_coords(c, **kwargs),
                lambda c=coords: ours.structure_from_coords(c, **kwargs),
            )
            errors += isinstance(result, Exception)
    if "hierarchy_lev" in kwargs:
        assert errors > 0  # outside the brain: KeyError(0) in both


def test_structure_from_coords_microns(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    rng = np.random.default_rng(3)
    um = rng.uniform(0, np.array(bg.shape_um) - 1e-6, size=(300, 3))
    for p in um:
        for kwargs in ({}, {"as_acronym": True}):
            same(
                lambda p=p, k=kwargs: bg.structure_from_coords(tuple(p), microns=True, **k),
                lambda p=p, k=kwargs: ours.structure_from_coords(tuple(p), microns=True, **k),
            )


def test_vectorised_lookups_equal_brainglobe_point_by_point(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    rng = np.random.default_rng(11)
    um = rng.uniform(0, np.array(bg.shape_um) - 1e-6, size=(2000, 3))
    ids = ours.structure_from_coords(um, microns=True)
    acronyms = ours.structure_from_coords(um, microns=True, as_acronym=True)
    hemis = ours.hemisphere_from_coords(um, microns=True)
    assert ids.shape == acronyms.shape == hemis.shape == (2000,)
    assert ids.tolist() == [bg.structure_from_coords(p, microns=True) for p in um]
    assert acronyms.tolist() == [
        bg.structure_from_coords(p, microns=True, as_acronym=True) for p in um
    ]
    assert hemis.tolist() == [bg.hemisphere_from_coords(p, microns=True) for p in um]


def test_hemisphere_from_coords(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    for p in _points(bg.shape):
        same(lambda p=p: bg.hemisphere_from_coords(p), lambda p=p: ours.hemisphere_from_coords(p))
        if bg.hemispheres[p] != 0:
            same(
                lambda p=p: bg.hemisphere_from_coords(p, as_string=True),
                lambda p=p: ours.hemisphere_from_coords(p, as_string=True),
            )
        um = tuple(c * r + 0.5 for c, r in zip(p, bg.resolution, strict=True))
        same(
            lambda u=um: bg.hemisphere_from_coords(u, microns=True),
            lambda u=um: ours.hemisphere_from_coords(u, microns=True),
        )


@pytest.mark.parametrize(
    "coords", [(132, 0, 0), (0, 80, 0), (0, 0, 114), (500, 500, 500), (13200.0, 0.0, 0.0)]
)
def test_out_of_range_is_an_index_error_in_both(
    pair: tuple[Any, Atlas], coords: tuple[float, ...]
) -> None:
    bg, ours = pair
    microns = isinstance(coords[0], float)
    err = same(
        lambda: bg.structure_from_coords(coords, microns=microns),
        lambda: ours.structure_from_coords(coords, microns=microns),
    )
    assert isinstance(err, IndexError)
    same(lambda: bg.hemisphere_from_coords(coords, microns=microns),
         lambda: ours.hemisphere_from_coords(coords, microns=microns))  # fmt: skip


@pytest.mark.parametrize("coords", [(float("nan"), 1, 1), ("a", 1, 1)])
def test_non_numeric_coordinates_are_value_errors_in_both(
    pair: tuple[Any, Atlas], coords: tuple[Any, ...]
) -> None:
    bg, ours = pair
    err = same(lambda: bg.structure_from_coords(coords), lambda: ours.structure_from_coords(coords))
    assert isinstance(err, ValueError)


# --- hierarchy queries ------------------------------------------------------------------------


def test_ancestors_and_descendants(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    keys = [*list(bg.structures.keys())[::40], "CH", "VISp", "root", 1097, "nope", 123456]
    for key in keys:
        same(
            lambda k=key: bg.get_structure_ancestors(k),
            lambda k=key: ours.get_structure_ancestors(k),
        )
        same(
            lambda k=key: bg.get_structure_descendants(k),
            lambda k=key: ours.get_structure_descendants(k),
        )


@pytest.mark.parametrize(
    ("structure", "level"),
    [("CTX", 3), ("CTX", 5), ("CTX", 4), ("root", 1), ("root", 2), (567, 3), ("VISp", 8),
     ("VISp1", 8), ("VISp1", 9), ("CTX", None), ("VISp", None), ("root", None), ("CTX", 0),
     ("VISp", 20), ("CTX", -1), ("CTX", "2"), ("CTX", True), ("CTX", 2.0), ("nope", 1),
     (123456, None)],
)  # fmt: skip
def test_structures_at_hierarchy_level(pair: tuple[Any, Atlas], structure: Any, level: Any) -> None:
    bg, ours = pair
    for as_acronym in (False, True):
        try:
            expected = bg.get_structures_at_hierarchy_level(structure, level, as_acronym=as_acronym)
        except Exception as err:  # noqa: BLE001
            with pytest.raises(contract_class(err)):
                ours.get_structures_at_hierarchy_level(structure, level, as_acronym=as_acronym)
            continue
        got = ours.get_structures_at_hierarchy_level(structure, level, as_acronym=as_acronym)
        if level is None:
            assert got == expected  # ancestors then breadth-first: a defined order
        else:
            assert sorted(got, key=str) == sorted(expected, key=str)  # BrainGlobe: set order
            assert len(got) == len(expected)


@pytest.mark.parametrize("structure", ["CH", 997, "VISp", 382, "VISp1", "nope"])
def test_structure_mask(pair: tuple[Any, Atlas], structure: Any) -> None:
    bg, ours = pair
    same(lambda: bg.get_structure_mask(structure), lambda: ours.get_structure_mask(structure))


# --- meshes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("structure", ["CA1", 385, 1097, [382, "VISp"], ("HY",)])
def test_meshes(pair: tuple[Any, Atlas], structure: Any) -> None:
    bg, ours = pair
    theirs, mine = bg.mesh_from_structure(structure), ours.mesh_from_structure(structure)
    theirs_list = theirs if isinstance(theirs, list) else [theirs]
    mine_list = mine if isinstance(mine, list) else [mine]
    assert len(theirs_list) == len(mine_list)
    for t, m in zip(theirs_list, mine_list, strict=True):
        assert isinstance(m, meshio.Mesh)
        np.testing.assert_array_equal(m.points, t.points)
        np.testing.assert_array_equal(m.cells_dict["triangle"], t.cells_dict["triangle"])
    same(
        lambda: bg.meshfile_from_structure(structure),
        lambda: ours.meshfile_from_structure(structure),
    )


@pytest.mark.parametrize("structure", ["CH", 997, "nope", [382, 567]])
def test_missing_meshes_raise_the_same(pair: tuple[Any, Atlas], structure: Any) -> None:
    bg, ours = pair
    err = same(
        lambda: bg.mesh_from_structure(structure), lambda: ours.mesh_from_structure(structure)
    )
    assert isinstance(err, meshio.ReadError | KeyError)


def test_root_mesh(pair: tuple[Any, Atlas]) -> None:
    bg, ours = pair
    assert ours.root_meshfile() == bg.root_meshfile()
    err = same(bg.root_mesh, ours.root_mesh)  # the bundled atlas has no root mesh
    assert isinstance(err, meshio.ReadError)


# --- opening bad folders ----------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["no metadata", "no structures", "bad json", "no folder"])
def test_broken_folders_fail_with_the_same_class(example_atlas_copy: Path, damage: str) -> None:
    folder = example_atlas_copy
    if damage == "no metadata":
        (folder / "metadata.json").unlink()
    elif damage == "no structures":
        (folder / "structures.json").unlink()
    elif damage == "bad json":
        (folder / "structures.json").write_text("[{")
    else:
        folder = folder / "missing"
    err = same(lambda: bg_core.Atlas(folder), lambda: Atlas(folder))
    assert isinstance(err, OSError | ValueError)


def test_missing_stack_fails_on_access_in_both(example_atlas_copy: Path) -> None:
    (example_atlas_copy / "annotation.tiff").unlink()
    bg, ours = bg_core.Atlas(example_atlas_copy), Atlas(example_atlas_copy)  # opening is fine
    err = same(lambda: bg.annotation, lambda: ours.annotation)
    assert isinstance(err, FileNotFoundError)


def test_missing_additional_references_key_warns_in_both(example_atlas_copy: Path) -> None:
    meta = json.loads((example_atlas_copy / "metadata.json").read_text())
    del meta["additional_references"]
    (example_atlas_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="outdated"):
        bg_core.Atlas(example_atlas_copy)
    with pytest.warns(UserWarning, match="outdated"):
        ours = Atlas(example_atlas_copy)
    assert dict(ours.additional_references) == {}  # BrainGlobe leaves the attribute unset


# --- the deliberate differences (CONTRACTS.md), both behaviours shown -------------------------


@pytest.mark.parametrize("coords", [(-1, 40, 57), (66, -1, 57), (66, 40, -114), (-0.5, 40.0, 57.0)])
def test_difference_negative_coordinates_raise_instead_of_wrapping(
    pair: tuple[Any, Atlas], coords: tuple[float, ...]
) -> None:
    bg, ours = pair
    # BrainGlobe truncates toward 0 and indexes with numpy, so negatives wrap around
    wrapped = tuple(int(c) for c in coords)
    assert bg.structure_from_coords(coords) == bg.annotation[wrapped]
    assert bg.hemisphere_from_coords(coords) == bg.hemispheres[wrapped]
    with pytest.raises(CoordinateError, match="outside the atlas volume") as info:
        ours.structure_from_coords(coords)
    assert isinstance(info.value, IndexError)
    with pytest.raises(IndexError):
        ours.hemisphere_from_coords(coords)
    with pytest.raises(IndexError):
        ours.structure_from_coords(np.array([(66, 40, 57), coords]))


def test_difference_hemisphere_string_outside(folders: dict[str, Path]) -> None:
    path = folders["asymmetric"]
    bg, ours = bg_core.Atlas(path), Atlas(path)
    outside = (0, 0, 0)
    assert bg.hemispheres[outside] == 0
    # BrainGlobe computes ["left", "right"][hem - 1]: with numpy 1, int(0) - 1 = -1 -> "right";
    # with numpy 2, uint8(0) - 1 wraps to 255 -> IndexError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if int(np.__version__.split(".")[0]) >= 2:
            with pytest.raises(IndexError):
                bg.hemisphere_from_coords(outside, as_string=True)
        else:  # pragma: no cover - numpy 1
            assert bg.hemisphere_from_coords(outside, as_string=True) == "right"
    assert ours.hemisphere_from_coords(outside, as_string=True) == "outside"
    assert ours.hemisphere_from_coords(outside) == bg.hemisphere_from_coords(outside) == 0
    inside_left = tuple(int(v) for v in np.argwhere(bg.hemispheres == 1)[0])
    assert ours.hemisphere_from_coords(inside_left, as_string=True) == "left"
    assert bg.hemisphere_from_coords(inside_left, as_string=True) == "left"


# --- atlas.structures is a mutable dict-like, as BrainGlobe's ----------------------------------


def _fresh(path: Path) -> tuple[Any, Atlas]:
    return bg_core.Atlas(path), Atlas(path)


def _mask_sums(atlas: Any) -> Any:
    return {k: int(np.count_nonzero(atlas.get_structure_mask(k))) for k in ("CTX", 385, "VISp")}


def test_edited_entry_ids_are_followed_by_masks_ancestors_and_descendants(
    folders: dict[str, Path],
) -> None:
    path = folders["example"]
    stored = (path / "structures.json").read_bytes()
    bg, ours = _fresh(path)
    same(lambda: bg.get_structure_mask(385), lambda: ours.get_structure_mask(385))  # tables cached
    for atlas in (bg, ours):
        atlas.structures[385]["id"] = 123456  # VISp's id, edited in memory
        atlas.structures[593]["structure_id_path"] = [997, 8, 567, 593]  # VISp1 moved up
        atlas.structures["FRP1"]["acronym"] = "F1"  # not in acronym_to_id_map: CTX's fail
        atlas.structures["CA1"]["mesh_filename"] = atlas.structures[385]["mesh_filename"]
    for key in (385, "VISp", "CTX", "VISp1", "F1", "nope"):
        same(lambda k=key: bg.get_structure_mask(k), lambda k=key: ours.get_structure_mask(k))
        same(lambda k=key: bg.get_structure_ancestors(k),
             lambda k=key: ours.get_structure_ancestors(k))  # fmt: skip
        same(lambda k=key: bg.get_structure_descendants(k),
             lambda k=key: ours.get_structure_descendants(k))  # fmt: skip
        same(lambda k=key: bg.structures[k].data, lambda k=key: ours.structures[k].data)
    assert int(ours.get_structure_mask(385).max()) == 123456
    for theirs_mesh, our_mesh in zip(*(a.mesh_from_structure(["CA1", 385]) for a in (bg, ours)),
                                     strict=True):  # fmt: skip
        np.testing.assert_array_equal(our_mesh.points, theirs_mesh.points)  # VISp's, twice
    point = (66, 40, 57)
    same(lambda: bg.structure_from_coords(point, hierarchy_lev=7, as_acronym=True),
         lambda: ours.structure_from_coords(point, hierarchy_lev=7, as_acronym=True))  # fmt: skip
    for atlas in (bg, ours):  # edited back: the stored hierarchy's answers again
        atlas.structures[385]["id"] = 385
        atlas.structures[593]["structure_id_path"] = [
            *atlas.structures[385]["structure_id_path"],
            593,
        ]
        atlas.structures[68]["acronym"] = "FRP1"
    assert not ours._follows_entries()
    same(lambda: _mask_sums(bg), lambda: _mask_sums(ours))
    # never written, and other readers of the same folder (or of the same files) see none of it
    ours.structures[385]["structure_id_path"].append(1)
    assert (path / "structures.json").read_bytes() == stored
    for other in (Atlas(path), Atlas(ours.files)):
        assert other.structures[385]["structure_id_path"] == [997, 8, 567, 688, 695, 315, 669, 385]
        same(lambda o=other: bg_core.Atlas(path).get_structure_mask("VISp"),
             lambda o=other: o.get_structure_mask("VISp"))  # fmt: skip


def _ops() -> list[tuple[str, Callable[[Any], Any]]]:
    """Changes of the mapping itself, each with a plain result (or an exception) to compare."""
    entry = lambda s, k: s[k].data  # noqa: E731
    return [
        ("pop", lambda s: entry({385: s.pop(385)}, 385)),
        ("pop acronym", lambda s: s.pop("VISp1")),  # BrainGlobe deletes by the raw key
        ("len and members", lambda s: (len(s), 385 in s, 593 in s, list(s)[:5])),
        ("get missing", lambda s: s[385]),
        ("setitem", lambda s: s.__setitem__(385, s[593])),
        ("set then get", lambda s: (entry(s, 385), entry(s, "VISp"))),
        ("setdefault", lambda s: (s.setdefault(1, "x") is s[1], s.setdefault(7777, "x"))),
        ("popitem", lambda s: (lambda k, v: (k, v.data))(*s.popitem())),
        ("update", lambda s: s.update({997: s[8], 8: s[8]})),
        ("after update", lambda s: (entry(s, 997), len(s))),
        ("copy", lambda s: (type(s.copy()).__name__, len(s.copy()), s.copy()[8] is s[8])),
        ("copy is its own", lambda s: (s.copy().pop(8) is not None, 8 in s)),
        ("del", lambda s: s.__delitem__(8)),
        ("del again", lambda s: s.__delitem__(8)),
        ("clear", lambda s: (s.clear(), len(s), list(s))),
    ]


def test_structures_mapping_changes_as_in_brainglobe(folders: dict[str, Path]) -> None:
    bg, ours = _fresh(folders["example"])
    for name, op in _ops():
        try:
            same(lambda op=op: op(bg.structures), lambda op=op: op(ours.structures))
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from err
    untouched = Atlas(folders["example"])
    assert len(untouched.structures) == len(bg_core.Atlas(folders["example"]).structures)


def test_masks_follow_a_changed_mapping_as_in_brainglobe(folders: dict[str, Path]) -> None:
    bg, ours = _fresh(folders["example"])
    for atlas in (bg, ours):
        atlas.structures[385] = atlas.structures[593]  # VISp's key now holds VISp1's entry
    for key in (385, "VISp", "VISp1", "CTX"):
        same(lambda k=key: bg.get_structure_mask(k), lambda k=key: ours.get_structure_mask(k))
    for atlas in (bg, ours):
        del atlas.structures[593]
    for key in ("VISp", "CTX", 385):
        same(lambda k=key: bg.get_structure_mask(k), lambda k=key: ours.get_structure_mask(k))
        same(lambda k=key: bg.get_structure_descendants(k),
             lambda k=key: ours.get_structure_descendants(k))  # fmt: skip


# --- BrainGlobeAtlas: BrainGlobe 2.3.1's downloading class --------------------------------------

NAME = "allen_mouse_100um"
NOWHERE = "http://127.0.0.1:9/"  # nothing listens: the repository is unreachable, at once


@pytest.fixture
def bg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_atlas_dir: Path) -> Path:
    """A BrainGlobe config (in a temporary BRAINGLOBE_CONFIG_DIR) whose brainglobe_dir holds
    the atlas, read by 2.3.1 and by atlasmith; no repository reachable. atlasmith's own cache
    setting (ATLASMITH_CACHE_DIR, set for every test) points elsewhere."""
    import brainglobe_atlasapi.config as bg2_config
    from brainglobe_atlasapi import bg_atlas

    where, config = tmp_path / "brainglobe", tmp_path / "bgconfig"
    config.mkdir()
    (config / "bg_config.conf").write_text(
        f"[default_dirs]\nbrainglobe_dir = {where}\ninterm_download_dir = {where}\n"
    )
    monkeypatch.setenv("BRAINGLOBE_CONFIG_DIR", str(config))
    # 2.3.1 reads BRAINGLOBE_CONFIG_DIR once, when imported: point its module at the same file
    monkeypatch.setattr(bg2_config, "CONFIG_DIR", config)
    monkeypatch.setattr(bg2_config, "CONFIG_PATH", config / "bg_config.conf")
    monkeypatch.setattr(bg_atlas.BrainGlobeAtlas, "_remote_url_base", NOWHERE + "{}")
    monkeypatch.setenv("ATLASMITH_REPOSITORY", NOWHERE)
    shutil.copytree(example_atlas_dir, where / f"{NAME}_v1.2")
    return where


def test_brainglobe_config_folder_opens_without_download(
    bg_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brainglobe_atlasapi import bg_atlas

    from atlasmith.brainglobe import BrainGlobeAtlas

    (bg_home / "last_versions.conf").write_text(f"[atlases]\n{NAME} = 1.2\n")
    theirs = bg_atlas.BrainGlobeAtlas(NAME)  # check_latest=True: reads the versions file
    ours = BrainGlobeAtlas(NAME)
    assert ours.brainglobe_dir == theirs.brainglobe_dir == bg_home
    assert theirs.interm_download_dir == bg_home
    assert ours.interm_download_dir is None  # inside the cache: see BrainGlobeAtlas.__init__
    assert ours.root_dir == theirs.root_dir == bg_home / f"{NAME}_v1.2"
    assert ours.local_full_name == theirs.local_full_name == f"{NAME}_v1.2"
    assert ours.check_latest_version() is theirs.check_latest_version() is True
    assert sorted(p.name for p in bg_home.iterdir()) == ["allen_mouse_100um_v1.2",
                                                         "last_versions.conf"]  # fmt: skip
    assert ours.structure_from_coords((66, 40, 57)) == theirs.structure_from_coords((66, 40, 57))
    assert "not the latest" not in capsys.readouterr().err


def test_remote_version_offline_reads_the_cached_versions_file(bg_home: Path) -> None:
    from brainglobe_atlasapi import bg_atlas

    from atlasmith.brainglobe import BrainGlobeAtlas

    versions = bg_home / "last_versions.conf"
    versions.write_text(f"[atlases]\nother_mouse_10um = 2.0\n{NAME} = 1.3\n")
    theirs = bg_atlas.BrainGlobeAtlas(NAME, check_latest=False)
    ours = BrainGlobeAtlas(NAME, check_latest=False)
    assert ours.remote_version == theirs.remote_version == (1, 3)
    assert ours.remote_url == theirs.remote_url == f"{NOWHERE}{NAME}_v1.3.tar.gz"
    assert ours.check_latest_version(False) is theirs.check_latest_version(False) is False
    versions.write_text("[atlases]\nother_mouse_10um = 2.0\n")  # this atlas is not listed
    assert ours.remote_version is theirs.remote_version is None
    versions.unlink()  # no copy at all: 2.3.1 raises, atlasmith answers None (cannot be read)
    with pytest.raises(FileNotFoundError, match="Last versions cache file not found"):
        theirs.remote_version  # noqa: B018
    assert ours.remote_version is None
    assert ours.check_latest_version() is None


def test_stray_version_folder_is_multiple_versions_in_both(bg_home: Path) -> None:
    import re

    from brainglobe_atlasapi import bg_atlas

    from atlasmith.brainglobe import BrainGlobeAtlas

    (bg_home / f"{NAME}_v1.2_2").mkdir()
    expected = re.escape(f"Multiple versions of atlas {NAME} in {bg_home}")
    with pytest.raises(FileExistsError, match=expected):
        bg_atlas.BrainGlobeAtlas(NAME, check_latest=False)
    with pytest.raises(FileExistsError, match=expected) as info:
        BrainGlobeAtlas(NAME, check_latest=False)
    assert f"{NAME}_v1.2, {NAME}_v1.2_2" in str(info.value)
    assert "delete the others" in str(info.value)


def test_class_attributes_as_in_2_3_1() -> None:
    from brainglobe_atlasapi import bg_atlas, descriptors

    from atlasmith.brainglobe import BrainGlobeAtlas

    assert BrainGlobeAtlas.atlas_name is None
    assert bg_atlas.BrainGlobeAtlas.atlas_name is None
    assert BrainGlobeAtlas._remote_url_base == descriptors.remote_url_base


def test_remote_url_base_chooses_the_repository_and_unknown_names_fail_alike(
    repo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bg_home: Path
) -> None:
    from brainglobe_atlasapi import bg_atlas

    from atlasmith.brainglobe import BrainGlobeAtlas

    monkeypatch.delenv("ATLASMITH_REPOSITORY")
    for cls in (bg_atlas.BrainGlobeAtlas, BrainGlobeAtlas):
        monkeypatch.setattr(cls, "_remote_url_base", repo.url + "{}")
    # 2.3.1 probes google.com and gin.g-node.org before it downloads or names an atlas
    # unknown; these machines are offline, so the probes answer "up" (the repository is real)
    monkeypatch.setattr(bg_atlas, "check_internet_connection", lambda *a, **k: True)
    monkeypatch.setattr(bg_atlas, "check_gin_status", lambda *a, **k: True)
    theirs = bg_atlas.BrainGlobeAtlas(NAME, brainglobe_dir=tmp_path / "theirs")
    ours = BrainGlobeAtlas(NAME, brainglobe_dir=tmp_path / "ours")
    assert ours.remote_version == theirs.remote_version == (1, 1)
    assert ours.remote_url == theirs.remote_url == f"{repo.url}{NAME}_v1.1.tar.gz"
    assert ours.local_full_name == theirs.local_full_name == f"{NAME}_v1.1"
    assert ours.metadata == theirs.metadata
    for cls in (bg_atlas.BrainGlobeAtlas, BrainGlobeAtlas):
        with pytest.raises(ValueError, match="nonexistent_mouse_10um is not a valid atlas name!$"):
            cls("nonexistent_mouse_10um", brainglobe_dir=tmp_path / "x", check_latest=False)
    with pytest.raises(ValueError, match=f"Available: {NAME}") as info:
        BrainGlobeAtlas("nonexistent_mouse_10um", brainglobe_dir=tmp_path / "x")
    assert str(info.value).endswith("nonexistent_mouse_10um is not a valid atlas name!")


def test_bad_repository_base_and_missing_config_file_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlasmith.brainglobe import BrainGlobeAtlas
    from atlasmith.errors import ConfigError

    with pytest.raises(ConfigError, match=r"bg_config.conf does not exist: pass the path"):
        BrainGlobeAtlas(NAME, config_dir=tmp_path / "bg_config.conf")
    monkeypatch.setattr(BrainGlobeAtlas, "_remote_url_base", "http://127.0.0.1:9/atlases/")
    with pytest.raises(ConfigError, match=r"_remote_url_base must be the URL .* with '\{\}'"):
        BrainGlobeAtlas(NAME, brainglobe_dir=tmp_path)
