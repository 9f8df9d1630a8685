"""What the stacks tell, measured on the project's real atlases: mirror symmetry over the
whole volume, hemisphere values and sides, the reference's range."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
import pytest

from atlasmith import _stack_checks
from atlasmith._stack_checks import (
    SYMMETRY_THRESHOLD,
    additional_reference_finding,
    hemisphere_sides_finding,
    hemisphere_values_finding,
    mirror_agreement,
    reference_range_finding,
    symmetry_finding,
)
from atlasmith.orientation import reorient_stack

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@pytest.fixture(scope="module")
def allen() -> np.ndarray:
    """Allen's 100 um annotation (every 4th voxel of the 25 um one), "asr"."""
    return np.asarray(nrrd.read(str(DATA / "allen_mouse_100um" / "annotation_100um.nrrd"))[0])


@pytest.fixture(scope="module")
def aal() -> Any:
    """The bundled AAL script's checked inputs (left and right labels merged, hemispheres)."""
    from atlasmith.inputs import load_raw_atlas, prepare_inputs
    from atlasmith.script import load_script, make_context

    script = load_script(REPO / "atlas_scripts" / "aal_human.py")
    return prepare_inputs(
        load_raw_atlas(script, make_context(script, script.pick_resolution(None), None))
    )


@pytest.fixture(scope="module")
def aal_sided() -> np.ndarray:
    """AAL's own labels (Precentral_L = 1, Precentral_R = 2, ...), "asr"."""
    labels = np.asarray(nib.load(DATA / "human_aal_mni" / "AAL.nii.gz").dataobj)
    return np.ascontiguousarray(reorient_stack(labels.astype(np.uint32), "lpi", "asr"))


def test_examples_run() -> None:
    assert doctest.testmod(_stack_checks).failed == 0


def test_symmetric_atlases_pass_and_sided_labels_fail(
    allen: np.ndarray, aal: Any, aal_sided: np.ndarray
) -> None:
    # the midline of the subsampled Allen volume lies between grid planes: 73 % at the centre
    assert mirror_agreement(allen) > 0.95
    assert symmetry_finding(allen).ok
    assert 0.6 < mirror_agreement(aal.annotation) < 0.8  # one subject's brain, sides merged
    assert symmetry_finding(aal.annotation).ok
    assert mirror_agreement(aal_sided) < 0.05
    for axis in (0, 1):  # the other axes of a brain are far from symmetric
        assert mirror_agreement(allen, axis) < 0.2
    found = symmetry_finding(aal_sided)
    assert not found.ok
    assert found.message.startswith("only 3.0% of labelled voxels have the same label")
    assert "provide a hemispheres stack: hemispheres.tiff, with 1 for the left" in found.message
    assert '"symmetric": false in metadata.json' in found.message
    in_script = symmetry_finding(aal_sided, "lpi").message
    assert "load_hemispheres in the atlas script" in in_script


def test_the_symmetric_axis_or_midline_is_named(allen: np.ndarray) -> None:
    """A symmetric atlas that fails tells what it is symmetric about: another axis (a wrong
    ORIENTATION), or a midline away from the centre (readers split at the centre)."""
    turned = np.ascontiguousarray(allen.transpose(2, 1, 0))  # left-right is now axis 0
    found = symmetry_finding(turned)
    assert not found.ok
    assert "mirror-symmetric along axis 0 (anterior-posterior in 'asr') instead" in found.message
    assert "ORIENTATION is probably wrong" in found.message
    named = symmetry_finding(turned, "rsa").message
    assert "along source axis 2 (which ORIENTATION 'rsa' calls anterior-posterior)" in named
    off_centre = np.pad(allen, ((0, 0), (0, 0), (0, 30)))
    found = symmetry_finding(off_centre)
    assert not found.ok
    assert "mirror-symmetric about axis-2 position 57 (9" in found.message
    assert "not the volume's centre 71.5" in found.message
    assert "crop or pad the stacks" in found.message
    assert mirror_agreement(off_centre) < SYMMETRY_THRESHOLD


def test_hemisphere_values_and_sides(aal: Any) -> None:
    hemispheres = aal.hemispheres
    assert hemisphere_values_finding(hemispheres).ok
    assert hemisphere_sides_finding(hemispheres).ok
    empty = np.zeros_like(hemispheres)
    found = hemisphere_values_finding(empty)
    assert not found.ok
    assert found.message.startswith(
        "the hemispheres stack is empty (every voxel is 0); expected 1 for the left hemisphere "
        "and 2 for the right (BrainGlobe's values; 0 outside)"
    )
    sides = hemisphere_sides_finding(empty)  # never "left lies right of right"
    assert not sides.ok
    assert sides.message.startswith("cannot tell the sides apart: the hemispheres stack is empty")
    mask = (hemispheres > 0).astype(np.uint8)  # a brain mask given as hemispheres
    assert "has left (1) voxels but no right (2) voxel" in hemisphere_values_finding(mask).message
    for wrong in (np.where(hemispheres > 0, 3 - hemispheres, 0), hemispheres[:, :, ::-1]):
        found = hemisphere_sides_finding(np.ascontiguousarray(wrong), "lpi")
        assert not found.ok
        assert "the left hemisphere (1) lies on the right" in found.message
        assert "or ORIENTATION 'lpi' has the wrong left/right letter" in found.message


def test_reference_range_and_additional_references(aal: Any) -> None:
    reference = aal.reference
    assert reference_range_finding(reference).ok
    dark = (reference / reference.max()).astype(np.uint16)  # 0..1 cast to integers
    found = reference_range_finding(dark)
    assert not found.ok
    assert "every reference voxel is below 128 (max 1)" in found.message
    assert additional_reference_finding("t2", reference // 2, reference).ok
    same = additional_reference_finding("t2", reference.copy(), reference)
    assert not same.ok
    assert "additional reference 't2' is the reference itself" in same.message
