"""Per-structure statistics (atlasmith.statistics) on the real bundled Allen annotation,
against direct counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atlasmith import statistics
from atlasmith.formats import V1Folder
from atlasmith.statistics import label_profiles, structure_stats, unknown_labels


@pytest.fixture(scope="module")
def atlas(example_atlas_dir: Path) -> V1Folder:
    return V1Folder(example_atlas_dir)


def test_structure_stats_match_direct_counts(
    atlas: V1Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statistics, "_PROFILE_VOXELS", 17 * 80 * 114)  # blocks of 17 rows
    stats = structure_stats(atlas.annotation, atlas.tree)
    annotation = np.asarray(atlas.annotation)
    tree = atlas.tree
    for acronym in ("root", "grey", "Isocortex", "CA1", "HY", "VS"):
        i = tree.index(acronym)
        members = [tree[acronym].id, *tree.descendants(acronym)]
        mask = np.isin(annotation, members)
        where = np.argwhere(mask)
        assert stats.voxels[i] == np.count_nonzero(mask)
        assert stats.own_voxels[i] == np.count_nonzero(annotation == tree[acronym].id)
        assert stats.low[i].tolist() == where.min(axis=0).tolist()
        assert stats.high[i].tolist() == where.max(axis=0).tolist()
        np.testing.assert_allclose(stats.centroid[i], where.mean(axis=0), rtol=1e-12)
    assert stats.unknown_labels == ()
    empty = stats.voxels == 0
    assert np.isnan(stats.centroid[empty]).all()
    assert stats.ids.tolist() == tree.ids.tolist()


def test_unknown_labels_are_found_in_one_pass(atlas: V1Folder) -> None:
    annotation = np.array(atlas.annotation)
    annotation[3, 4, 5], annotation[-1, -1, -1] = 123456789, 42424242
    assert unknown_labels(annotation, atlas.tree) == (42424242, 123456789)
    assert structure_stats(annotation, atlas.tree).unknown_labels == (42424242, 123456789)
    assert unknown_labels(atlas.annotation, atlas.tree) == ()


def test_boxes_of_labels_and_of_unions(atlas: V1Folder) -> None:
    labels = np.asarray(atlas.tree.compact(atlas.annotation))
    n = len(atlas.tree) + 1
    profiles = label_profiles(labels, n)
    assert profiles.counts.tolist() == np.bincount(labels.ravel(), minlength=n).tolist()
    present = np.unique(labels)[1:]
    members = np.zeros((3, n), dtype=bool)
    members[0, present[[0, -1]]] = True  # a union of two labels
    members[1, present[len(present) // 2]] = True
    # row 2 is empty
    boxes = profiles.boxes(members)
    for row in range(2):
        where = np.argwhere(np.isin(labels, np.flatnonzero(members[row])))
        expected = [*where.min(axis=0), *(where.max(axis=0) + 1)]
        assert boxes[row].tolist() == expected
    assert boxes[2].tolist() == [*labels.shape, 0, 0, 0]


@pytest.mark.parametrize("rows_per_block", [1, 7, 200])
def test_blocked_passes_equal_whole_array_ones(rows_per_block, monkeypatch):
    """value_range, label_histogram, sample_every and plane, for any block of rows."""
    rng = np.random.default_rng(rows_per_block)
    volume = rng.integers(0, 40, (61, 23, 17)).astype(np.uint16)
    monkeypatch.setattr(statistics.row_blocks, "__defaults__", (23 * 17 * rows_per_block,))
    assert statistics.value_range(volume) == (volume.min(), volume.max())
    expected = np.bincount(volume.ravel(), minlength=64)
    np.testing.assert_array_equal(statistics.label_histogram(volume, 64), expected)
    others = ((1, 2), (0, 2), (0, 1))
    for axis, along in enumerate(statistics.labelled_along(volume * (volume > 30))):
        np.testing.assert_array_equal(along, (volume * (volume > 30)).any(axis=others[axis]))
    for step in (1, 2, 3, 8, 100):
        sample = statistics.sample_every(volume, step)
        np.testing.assert_array_equal(sample, volume[::step, ::step, ::step])
    for axis in range(3):
        for index in (0, 9, 16):
            np.testing.assert_array_equal(
                statistics.plane(volume, axis, index), np.take(volume, index, axis=axis)
            )
