"""StructureTree on the real Allen hierarchy: rules, relations, lookup tables, treelib rendering."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nrrd
import numpy as np
import pytest
from brainglobe_atlasapi.structure_tree_util import get_structures_tree
from hypothesis import given, strategies as st

from atlasmith import _labels
from atlasmith.errors import HierarchyError, StructureNotFoundError
from atlasmith.hierarchy import Structure, StructureTree


@pytest.fixture(scope="module")
def structures(bundled_data: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((bundled_data / "structures.json").read_text())
    return data


@pytest.fixture(scope="module")
def tree(structures: list[dict[str, Any]]) -> StructureTree:
    return StructureTree.from_list(structures)


@pytest.fixture(scope="module")
def annotation(bundled_data: Path) -> np.ndarray:
    data, _ = nrrd.read(str(bundled_data / "annotation_100um.nrrd"))
    return np.ascontiguousarray(data, dtype=np.uint32)


def test_real_tree_basics(tree: StructureTree, structures: list[dict[str, Any]]) -> None:
    assert len(tree) == 840
    assert tree.root.id == 997
    assert tree.root.acronym == "root"
    assert tree.to_list() == structures
    assert [s.id for s in tree] == [s["id"] for s in structures]
    assert tree.ids.dtype == np.int64
    assert tree.ids.tolist() == [s["id"] for s in structures]
    assert 567 in tree
    assert "CH" in tree
    assert 0 not in tree
    assert "nope" not in tree
    assert tree["CH"] == tree[567] == tree[np.uint32(567)]
    assert tree["CH"].parent_id == 8
    assert tree.root.parent_id is None
    assert isinstance(tree["VISp"], Structure)


def test_relations_agree_with_the_paths(
    tree: StructureTree, structures: list[dict[str, Any]]
) -> None:
    for s in structures[::7]:
        sid, path = s["id"], s["structure_id_path"]
        assert tree.ancestors(sid) == path[:-1]
        assert tree.depth(sid) == len(path) - 1
        assert tree.parent(sid) == (path[-2] if len(path) > 1 else None)
        expected = [t["id"] for t in structures if sid in t["structure_id_path"][:-1]]
        assert tree.descendants(sid) == expected
        children = [t["id"] for t in structures if t["structure_id_path"][:-1] == path]
        assert tree.children(sid) == children
    assert tree.max_depth == max(len(s["structure_id_path"]) for s in structures) - 1


@pytest.mark.parametrize("key", [123456, "nope", 0])
def test_unknown_structure(tree: StructureTree, key: int | str) -> None:
    with pytest.raises(StructureNotFoundError, match="no structure with") as info:
        tree[key]
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError):
        tree.descendants(key)


def test_treelib_rendering_is_brainglobes(
    tree: StructureTree, structures: list[dict[str, Any]]
) -> None:
    ours = tree.to_treelib()
    theirs = get_structures_tree(copy.deepcopy(structures))
    assert ours.show(stdout=False) == theirs.show(stdout=False)
    assert [n.identifier for n in ours.children(567)] == [
        n.identifier for n in theirs.children(567)
    ]
    assert len(ours.leaves(567)) == len(theirs.leaves(567))


def test_ancestor_table(tree: StructureTree, structures: list[dict[str, Any]]) -> None:
    table = tree.ancestor_table
    assert table.shape == (tree.max_depth + 1, len(tree) + 1)
    assert (table[:, 0] == 0).all()
    for i, s in enumerate(structures, start=1):
        path = s["structure_id_path"]
        for level in range(tree.max_depth + 1):
            expected = path[min(level, len(path) - 1)]
            assert tree.structures[table[level, i] - 1].id == expected


@pytest.mark.parametrize("sid", [997, 567, 8, 385, 1097])
def test_member_lut(tree: StructureTree, sid: int) -> None:
    lut = tree.member_lut(sid)
    members = set(tree.ids[lut[1:]].tolist())
    assert members == {sid, *tree.descendants(sid)}
    assert not lut[0]


def _reference_compact(tree: StructureTree, labels: np.ndarray) -> np.ndarray:
    position = {sid: i + 1 for i, sid in enumerate(tree.ids.tolist())}
    flat = [position.get(int(x), 0) for x in labels.ravel()]
    return np.array(flat).reshape(labels.shape)


def test_compact_on_the_real_annotation(tree: StructureTree, annotation: np.ndarray) -> None:
    compact = tree.compact(annotation)
    assert compact.shape == annotation.shape
    assert compact.dtype == np.uint16
    values, first = np.unique(annotation, return_index=True)
    np.testing.assert_array_equal(compact.ravel()[first], _reference_compact(tree, values))
    np.testing.assert_array_equal(tree.ids[compact[annotation > 0].astype(np.int64) - 1],
                                  annotation[annotation > 0])  # fmt: skip
    assert (compact[annotation == 0] == 0).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int32, np.int64])
def test_compact_unknown_and_out_of_range_labels(tree: StructureTree, dtype: type) -> None:
    raw = np.array([0, 997, 8, 614454277, 5, 255, -1, 2**32 + 997, 2**32 - 1], dtype=np.int64)
    info = np.iinfo(dtype)
    labels = raw[(raw >= info.min) & (raw <= info.max)].astype(dtype)
    expected = _reference_compact(tree, labels.astype(np.int64))
    np.testing.assert_array_equal(tree.compact(labels), expected)


@pytest.mark.parametrize("mode", ["lut", "hash", "search"])
def test_every_label_map_mode_agrees(
    structures: list[dict[str, Any]],
    annotation: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    if mode == "lut":
        monkeypatch.setattr(_labels, "_DIRECT_LUT_MAX", 2**31)
    if mode == "search":
        monkeypatch.setattr(_labels, "_MAX_HASH_BITS", 0)
    tree = StructureTree.from_list(structures)
    sample = annotation[::3, ::3, ::3]
    assert tree._label_map.mode == mode
    np.testing.assert_array_equal(tree.compact(sample), _reference_compact(tree, sample))


def test_map_labels(tree: StructureTree, annotation: np.ndarray) -> None:
    values = np.where(tree.member_lut("CH"), 567, 0).astype(np.uint32)
    mask = tree.map_labels(annotation, values)
    members = [567, *tree.descendants(567)]
    np.testing.assert_array_equal(mask, np.where(np.isin(annotation, members), 567, 0))
    with pytest.raises(ValueError, match="one entry per compact index"):
        tree.map_labels(annotation, values[:-1])
    with pytest.raises(TypeError, match="integers"):
        tree.compact(np.zeros(3, dtype=np.float32))


def test_map_labels_into_rows_of_a_result(tree: StructureTree, annotation: np.ndarray) -> None:
    values = np.where(tree.member_lut("CH"), 567, 0).astype(np.uint32)
    out = np.full(annotation.shape, 7, dtype=np.uint32)
    tree.map_labels(annotation[10:30], values, out=out[10:30])
    np.testing.assert_array_equal(out[10:30], tree.map_labels(annotation[10:30], values))
    assert (out[:10] == 7).all()
    assert (out[30:] == 7).all()
    for wrong in (out[10:31], out[10:30].astype(np.uint16), out[10:30, :, ::2]):
        with pytest.raises(ValueError, match="out must be a C-contiguous"):
            tree.map_labels(annotation[10:30], values, out=wrong)


def test_present_keeps_ancestors_of_labelled_structures(
    tree: StructureTree, annotation: np.ndarray
) -> None:
    labels = np.unique(annotation)
    kept, removed = tree.present(labels.tolist())
    assert len(kept) + len(removed) == len(tree)
    kept_ids = {s.id for s in kept}
    for sid in labels[labels > 0].tolist():
        assert sid in kept_ids
        assert set(tree.ancestors(sid)) <= kept_ids
    for s in removed:
        assert s.id not in labels
        assert not set(tree.descendants(s.id)) & set(labels.tolist())
    assert [s.id for s in kept] == [s.id for s in tree if s.id in kept_ids]  # input order
    with pytest.raises(HierarchyError, match="none of the structures"):
        tree.present([0, 5])


# --- each rule broken -> its own error ----------------------------------------------------


def _edit(index: int, **changes: Any) -> Callable[[list[dict[str, Any]]], None]:
    def apply(structures: list[dict[str, Any]]) -> None:
        structures[index].update(changes)

    return apply


def _drop_key(index: int, key: str) -> Callable[[list[dict[str, Any]]], None]:
    return lambda structures: structures[index].pop(key) and None


def _append(entry: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    return lambda structures: structures.append(entry)


BROKEN = {
    "not a mapping": (lambda s: s.__setitem__(3, [1, 2]), "expected a mapping"),
    "missing key": (_drop_key(3, "rgb_triplet"), "is missing \\['rgb_triplet'\\]"),
    "acronym not str": (_edit(3, acronym=5), "acronym must be a non-empty string"),
    "id not int": (_edit(3, id="688"), "id must be an int"),
    "id 0": (_edit(3, id=0, structure_id_path=[997, 8, 567, 0]), "has id 0"),
    "id too large": (_edit(3, id=2**32, structure_id_path=[997, 8, 567, 2**32]), "uint32"),
    "duplicate id": (
        _edit(3, id=567, structure_id_path=[997, 8, 567, 567]),
        "id 567 is used twice",
    ),
    "duplicate acronym": (_edit(3, acronym="CH"), "acronym 'CH' is used twice"),
    "rgb length": (_edit(3, rgb_triplet=[1, 2]), "rgb_triplet must be three ints"),
    "rgb range": (_edit(3, rgb_triplet=[1, 2, 256]), "rgb_triplet must be three ints"),
    "rgb float": (_edit(3, rgb_triplet=[1, 2.0, 3]), "rgb_triplet must be three ints"),
    "path not ending at id": (_edit(3, structure_id_path=[997, 8, 567]), "must end with"),
    "empty path": (_edit(3, structure_id_path=[]), "non-empty list of ids"),
    "no root": (_edit(0, structure_id_path=[1, 997]), "has no root"),
    "two roots": (
        _append(
            {
                "acronym": "r2",
                "id": 99999999,
                "name": "r2",
                "structure_id_path": [99999999],
                "rgb_triplet": [0, 0, 0],
            }
        ),
        "2 roots",
    ),  # fmt: skip
    "path not from root": (_edit(3, structure_id_path=[8, 567, 688]), "must start at the root"),
    "missing parent": (_edit(3, structure_id_path=[997, 8, 123456, 688]), "parent id 123456"),
    "path disagrees with parent": (_edit(3, structure_id_path=[997, 567, 688]), "not its parent's"),
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_broken_rule_has_its_own_error(structures: list[dict[str, Any]], rule: str) -> None:
    broken = copy.deepcopy(structures)
    mutate, message = BROKEN[rule]
    mutate(broken)
    with pytest.raises(HierarchyError, match=message) as info:
        StructureTree.from_list(broken)
    assert isinstance(info.value, ValueError)


def test_many_roots_are_summarised(structures: list[dict[str, Any]]) -> None:
    flat = [dict(s, structure_id_path=[s["id"]]) for s in structures]
    with pytest.raises(HierarchyError) as info:
        StructureTree.from_list(flat)
    message = str(info.value)
    n = len(structures)
    first = ", ".join(repr(s["acronym"]) for s in structures[:5])
    assert f"{n} roots ({first} and {n - 5} more ({n} in all))" in message
    assert repr(structures[6]["acronym"]) not in message
    assert len(message) < 400


def test_many_missing_parents_are_summarised(structures: list[dict[str, Any]]) -> None:
    kept = [s for s in structures if len(s["structure_id_path"]) != 3]  # drop a whole level
    orphans = [s for s in kept if len(s["structure_id_path"]) == 4]
    assert len(orphans) > 5
    with pytest.raises(HierarchyError) as info:
        StructureTree.from_list(kept)
    message = str(info.value)
    first = orphans[0]
    assert message.startswith(
        f"{len(orphans)} structures have a parent that is not in the structure list: "
        f"{first['acronym']!r} (parent id {first['structure_id_path'][-2]}), "
    )
    assert f"and {len(orphans) - 5} more ({len(orphans)} in all)" in message
    assert repr(orphans[5]["acronym"]) not in message


@pytest.mark.parametrize(("value", "match"), [([], "empty"), ("root", "expected a list")])
def test_not_a_list(value: Any, match: str) -> None:
    with pytest.raises(HierarchyError, match=match):
        StructureTree.from_list(value)


# --- invariants on random trees ------------------------------------------------------------


@st.composite
def _random_trees(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 40))
    ids = draw(st.lists(st.integers(1, 2**32 - 1), min_size=n, max_size=n, unique=True))
    parents = [None] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    paths: list[list[int]] = []
    for i, parent in enumerate(parents):
        paths.append([ids[i]] if parent is None else [*paths[parent], ids[i]])
    order = draw(st.permutations(range(n)))
    return [
        {"acronym": f"s{i}", "id": ids[i], "name": f"n{i}", "structure_id_path": paths[i],
         "rgb_triplet": [i % 256, 0, 0]}
        for i in order
    ]  # fmt: skip


@given(_random_trees())
def test_ancestors_and_descendants_are_consistent(structures: list[dict[str, Any]]) -> None:
    tree = StructureTree.from_list(structures)
    for s in tree:
        for d in tree.descendants(s.id):
            assert s.id in tree.ancestors(d)
        for a in tree.ancestors(s.id):
            assert s.id in tree.descendants(a)
        assert len(tree.descendants(s.id)) == int(tree.member_lut(s.id).sum()) - 1
    assert len(tree.descendants(tree.root.id)) == len(tree) - 1
    assert sorted(tree.preorder()) == sorted(tree.ids.tolist())


@given(_random_trees(), st.lists(st.integers(0, 2**32 - 1), max_size=30))
def test_compact_round_trip(structures: list[dict[str, Any]], others: list[int]) -> None:
    tree = StructureTree.from_list(structures)
    labels = np.array([*tree.ids.tolist(), *others, 0], dtype=np.uint32)
    compact = tree.compact(labels)
    known = compact > 0
    np.testing.assert_array_equal(tree.ids[compact[known].astype(np.int64) - 1], labels[known])
    assert set(labels[~known].tolist()) <= ({0} | set(others)) - set(tree.ids.tolist())


@pytest.mark.parametrize("structure", ["CH", "root", "VISp1"])
def test_mask_fast_path_with_unknown_and_sentinel_labels(
    tree: StructureTree, structure: str
) -> None:
    lm = tree._label_map
    assert lm.mode == "hash"
    rng = np.random.default_rng(5)
    labels = np.concatenate(
        [
            tree.ids,
            [0, 2**32 - 1],
            np.unique(lm.sentinels).astype(np.int64),  # values chosen never to match
            np.arange(2**32 - 4096, 2**32, 7),
            rng.integers(0, 2**32, 5000),
        ]
    ).astype(np.uint32)
    sid = tree[structure].id
    values = np.where(tree.member_lut(structure), sid, 0).astype(np.uint32)
    members = {sid, *tree.descendants(sid)}
    expected = np.array([sid if int(x) in members else 0 for x in labels], dtype=np.uint32)
    np.testing.assert_array_equal(tree.map_labels(labels, values), expected)
    # the general path (taken for labels that are not uint32) agrees
    np.testing.assert_array_equal(tree.map_labels(labels.astype(np.uint64), values), expected)
