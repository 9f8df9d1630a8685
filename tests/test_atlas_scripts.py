"""The bundled atlas scripts build offline from the checkout, and BrainGlobe 2.3.1's own reader
opens what they build with the same answers as atlasmith.Atlas."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from brainglobe_atlasapi import core as bg_core

from atlasmith import Atlas
from atlasmith.build import BuildResult, build_atlas
from atlasmith.hierarchy import StructureTree
from atlasmith.orientation import reorient_stack
from atlasmith.package import safe_extract

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "atlas_scripts"
DATA = REPO / "data"


def compare_with_brainglobe(archive: Path, workdir: Path) -> None:
    """Extract ``archive`` safely, open it with BrainGlobe's reader and with ours, compare."""
    folder = safe_extract(archive, workdir)
    theirs, ours = bg_core.Atlas(folder), Atlas(folder)
    assert theirs.metadata == ours.metadata
    assert list(theirs.structures) == list(ours.structures)
    for sid in theirs.structures:
        a, b = theirs.structures[sid], ours.structures[sid]
        for key in ("acronym", "name", "structure_id_path", "rgb_triplet"):
            assert a[key] == b[key]
    np.testing.assert_array_equal(theirs.reference, ours.reference)
    np.testing.assert_array_equal(theirs.annotation, ours.annotation)
    np.testing.assert_array_equal(theirs.hemispheres, ours.hemispheres)
    pd.testing.assert_frame_equal(theirs.lookup_df, ours.lookup_df)
    points = np.random.default_rng(0).integers(0, ours.shape, size=(300, 3))
    expected = [theirs.structure_from_coords(tuple(p)) for p in points]
    assert ours.structure_from_coords(points).tolist() == expected
    acronyms = [theirs.structure_from_coords(tuple(p), as_acronym=True) for p in points[:50]]
    assert [ours.structure_from_coords(tuple(p), as_acronym=True) for p in points[:50]] == acronyms
    hemis = [theirs.hemisphere_from_coords(tuple(p)) for p in points]
    assert ours.hemisphere_from_coords(points).tolist() == hemis
    leaf = int(ours.tree.structures[-1].id)
    assert theirs.get_structure_ancestors(leaf) == ours.get_structure_ancestors(leaf)
    assert theirs.get_structure_descendants("root") == ours.get_structure_descendants("root")
    root = ours.tree.root.id
    np.testing.assert_array_equal(theirs.get_structure_mask(root), ours.get_structure_mask(root))
    np.testing.assert_array_equal(
        theirs.mesh_from_structure(root).points, ours.mesh_from_structure(root).points
    )


@pytest.fixture(scope="module")
def dsurqe(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build_atlas(SCRIPTS / "dsurqe_mouse.py", tmp_path_factory.mktemp("dsurqe"), workers=2)


@pytest.fixture(scope="module")
def aal(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build_atlas(SCRIPTS / "aal_human.py", tmp_path_factory.mktemp("aal"), workers=2)


def _structures(result: BuildResult) -> StructureTree:
    return StructureTree.from_list(json.loads((result.folder / "structures.json").read_text()))


def test_dsurqe_hierarchy_and_merged_hemispheres(dsurqe: BuildResult) -> None:
    assert dsurqe.folder.name == "dsurqe_mouse_200um_v1.0"
    assert dsurqe.report.ok
    tree = _structures(dsurqe)
    assert tree.max_depth == 3  # root -> tissue type -> region group -> region
    assert {tree[c].acronym for c in tree.children(999)} >= {"GM", "WM", "CSF"}
    gm = tree["GM"]
    assert gm.name == "grey matter"
    assert tree.parent(tree["Hippocampal region"].id) == gm.id
    names = [s.name for s in tree.structures]
    assert not any(n.startswith(("left ", "right ")) for n in names)
    table = pd.read_csv(DATA / "mouse_dsurqe_ccf_200um" / "DSURQE_40micron_R_mapping_long.csv")
    left = table[table["Hemisphere"] == "left"]
    assert len(left) == 154
    # "right amygdala" (51) and "left amygdala" (151) are one structure with the lower id
    assert tree["amygdala"].id == 51
    assert 151 not in tree
    meta = json.loads((dsurqe.folder / "metadata.json").read_text())
    assert meta["symmetric"] is False
    assert meta["shape"] == [67, 41, 58]  # (AP, SI, LR) from the MINC (SI, AP, LR) arrays
    atlas = Atlas(dsurqe.folder)
    # left labels of the source are on hemisphere 1, right ones on 2, in the package
    labels = np.rint(
        np.asarray(
            nib.load(DATA / "mouse_dsurqe_ccf_200um" / "DSURQE_CCFv3_labels_200um.mnc").dataobj
        )
    )
    labels_asr = reorient_stack(labels, "ipl", "asr")
    right_ids = table.loc[table["Hemisphere"] == "right", "Label"].to_numpy()
    assert set(np.unique(atlas.hemispheres[np.isin(labels_asr, right_ids)])) == {2}
    left_ids = left["Label"].to_numpy()
    assert set(np.unique(atlas.hemispheres[np.isin(labels_asr, left_ids)])) == {1}
    assert atlas.reference.max() == 65535  # the float MRI average was rescaled to uint16


def test_dsurqe_brainglobe_reader(dsurqe: BuildResult, tmp_path: Path) -> None:
    assert dsurqe.archive is not None
    compare_with_brainglobe(dsurqe.archive, tmp_path)


def test_aal_flat_list_under_a_root_and_resampled_template(aal: BuildResult) -> None:
    assert aal.folder.name == "aal_human_1000um_v1.0"
    tree = _structures(aal)
    assert tree.root.id == 999
    assert len(tree) == 63  # root + 54 merged left/right pairs + 8 vermis labels
    assert tree.max_depth == 1
    assert tree["Precentral"].id == 1  # Precentral_L (1) and Precentral_R (2) merged
    atlas = Atlas(aal.folder)
    assert atlas.metadata["resolution"] == [1000.0, 1000.0, 1000.0]
    template = np.asarray(
        nib.load(
            DATA / "mni_icbm152_2009a" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
        ).dataobj
    )
    # the AAL grid starts at (-90, -125, -71) mm, the template's at (-98, -134, -72) mm
    expected = template[8 : 8 + 181, 9 : 9 + 217, 1 : 1 + 181]
    np.testing.assert_array_equal(reorient_stack(atlas.reference, "asr", "lpi"), expected)
    labels = np.asarray(nib.load(DATA / "human_aal_mni" / "AAL.nii.gz").dataobj)
    hemi = reorient_stack(atlas.hemispheres, "asr", "lpi")
    assert set(np.unique(hemi[labels == 1])) == {1}  # Precentral_L
    assert set(np.unique(hemi[labels == 2])) == {2}  # Precentral_R


def test_aal_brainglobe_reader(aal: BuildResult, tmp_path: Path) -> None:
    assert aal.archive is not None
    compare_with_brainglobe(aal.archive, tmp_path)


def test_builds_are_reproducible_across_workers(dsurqe: BuildResult, tmp_path: Path) -> None:
    again = build_atlas(SCRIPTS / "dsurqe_mouse.py", tmp_path, workers=1)
    assert again.sha256 == dsurqe.sha256
    # the BrainGlobe 3 tree too: its manifest lists every file's sha256
    assert again.v3_manifest is not None
    assert dsurqe.v3_manifest is not None
    assert again.v3_manifest.read_bytes() == dsurqe.v3_manifest.read_bytes()
