"""What the stacks themselves tell about an atlas: mirror symmetry, hemispheres, intensities.

Each check is a pure function of arrays in "asr" order that returns a :class:`Finding`. The
build runs them on its inputs (:func:`atlasmith.inputs.prepare_inputs`) before anything is
written or meshed, and :mod:`atlasmith.validation` runs the same ones on a finished folder,
so a problem is found in seconds with the same message in both places. Messages say what to
change: in an atlas script (``load_hemispheres``, ``ORIENTATION``) or in a package
(``hemispheres.tiff``, ``"symmetric"`` in ``metadata.json``).

Mirror symmetry is measured over the whole volume, not at a probe voxel: the fraction of
labelled voxels whose mirror image across the midline of axis 2 carries the same label. The
midline is taken at the volume's centre or half a voxel either side (the best of the three):
an atlas subsampled from a finer one has its midline between grid planes (Allen's 100 um
volume, every 4th voxel of the 25 um one, matches 73 % at the centre, 96 % half a voxel
off). Measured on the real atlases: symmetric ones (Allen 100 and 25 um 96 %; DSURQE 85 %
and AAL 73 % once their left and right labels are merged) against atlases whose left and
right copies carry different labels (AAL 2.9 %, AAL3 4.0 %, HCPEx 0.4 %); the other two
axes of the symmetric ones match at most 16 %. :data:`SYMMETRY_THRESHOLD` (50 %) lies far
from both groups.

An upside-down atlas (a wrong superior/inferior letter in ``ORIENTATION``) is not detected:
no signal measured on these atlases tells superior from inferior for both species (where
along that axis the labelled volume is largest: 46-47 % of the extent from the top in the
mice, 67 % in AAL; its centroid: 49-52 % in all), so the build points at the section sheet
instead. A wrong left/right letter is detected for asymmetric atlases (the hemispheres end
up on the wrong sides); for symmetric ones it changes nothing a reader can tell.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from atlasmith.statistics import label_histogram, value_range

__all__ = [
    "SYMMETRY_THRESHOLD",
    "Finding",
    "additional_reference_finding",
    "hemisphere_sides_finding",
    "hemisphere_values_finding",
    "mirror_agreement",
    "reference_range_finding",
    "symmetry_finding",
]

Array = npt.NDArray[Any]

#: The least fraction of labelled voxels that must match their mirror in a symmetric atlas.
SYMMETRY_THRESHOLD = 0.5
_SAMPLE_VOXELS = 1 << 22  # voxels compared per mirror measure (a subsample of big volumes)
_SEARCH_VOXELS = 1 << 20  # per offset, when searching an off-centre midline
_MIN_REFERENCE_MAX = 128  # below this everywhere: an intensity in 0..1 cast to integers
_AXIS_NAMES = ("anterior-posterior", "superior-inferior", "left-right")
_LETTER_AXES = {"a": 0, "p": 0, "s": 1, "i": 1, "l": 2, "r": 2}
_HEMISPHERE_VALUES = (
    "1 for the left hemisphere and 2 for the right (BrainGlobe's values; 0 outside)"
)


class Finding(NamedTuple):
    """A check's outcome: whether it passed, and what it found (or what to change)."""

    ok: bool
    message: str


def _sample(stack: Array, axis: int, voxels: int) -> Array:
    """Every k-th plane of the two axes other than ``axis``: about ``voxels`` voxels."""
    others = [a for a in range(3) if a != axis]
    size = math.prod(stack.shape[a] for a in others) * stack.shape[axis]
    step = max(1, math.ceil(math.sqrt(size / voxels)))
    index = [slice(None, None, step) if a in others else slice(None) for a in range(3)]
    return np.asarray(stack[tuple(index)])


def _agreement(labels: Array, axis: int, shift: int) -> float:
    """Fraction of labelled voxels equal to their mirror about plane ``(n - 1 + shift) / 2``."""
    n = labels.shape[axis]
    part = np.take(labels, range(max(0, shift), n + min(0, shift)), axis=axis)
    labelled = part != 0
    total = int(np.count_nonzero(labelled))
    if total == 0:
        return 0.0
    same = np.count_nonzero((part == np.flip(part, axis=axis)) & labelled)
    return float(same / total)


def mirror_agreement(annotation: Array, axis: int = 2) -> float:
    """Fraction of labelled voxels whose mirror across ``axis``'s midline has the same label.

    The best of the midline at the centre and half a voxel either side; measured on a
    subsample of about four million voxels (every k-th plane of the other two axes).

    >>> labels = np.zeros((2, 2, 6), np.uint32)
    >>> labels[:, :, 1], labels[:, :, 4] = 7, 7
    >>> mirror_agreement(labels), mirror_agreement(labels, axis=0)
    (1.0, 1.0)
    >>> labels[:, :, 4] = 8  # the right copy labelled apart from the left
    >>> mirror_agreement(labels)
    0.0
    """
    labels = _sample(annotation, axis, _SAMPLE_VOXELS)
    return max(_agreement(labels, axis, shift) for shift in (-1, 0, 1))


def _off_centre_midline(annotation: Array) -> tuple[float, float] | None:
    """Where along axis 2 the labels are mirror-symmetric, when that is off the centre:
    (midline position, agreement), or None."""
    labels = _sample(annotation, 2, _SEARCH_VOXELS)
    n = labels.shape[2]
    reach = n // 4
    scores = {s: _agreement(labels, 2, s) for s in range(-reach, reach + 1) if abs(s) > 1}
    if not scores:
        return None
    shift = max(scores, key=scores.__getitem__)
    if scores[shift] < SYMMETRY_THRESHOLD:
        return None
    return (n - 1 + shift) / 2, scores[shift]


def _axis_words(axis: int, orientation: str | None) -> str:
    """An "asr" axis named for the reader: by the source axis ORIENTATION maps to it."""
    if orientation is None:
        return f"axis {axis} ({_AXIS_NAMES[axis]} in 'asr')"
    source = next(i for i, letter in enumerate(orientation) if _LETTER_AXES[letter] == axis)
    return f"source axis {source} (which ORIENTATION {orientation!r} calls {_AXIS_NAMES[axis]})"


def symmetry_finding(annotation: Array, orientation: str | None = None) -> Finding:
    """Whether an atlas declared symmetric (no hemispheres stack) is mirror-symmetric.

    ``orientation``: the script's source orientation, to name axes as the packager knows
    them (None: a package, named in "asr").
    """
    agreement = mirror_agreement(annotation)
    if agreement >= SYMMETRY_THRESHOLD:
        return Finding(
            True,
            f"{agreement:.1%} of labelled voxels match their mirror across the midline "
            f"(at least {SYMMETRY_THRESHOLD:.0%} needed)",
        )
    found = (
        f"only {agreement:.1%} of labelled voxels have the same label as their mirror image "
        f"across the left-right midline (axis 2 in 'asr'); an atlas without a hemispheres "
        f"stack is declared symmetric, and readers split it into hemispheres at that midline "
        f"(at least {SYMMETRY_THRESHOLD:.0%} must match)."
    )
    return Finding(False, f"{found} {_symmetry_advice(annotation, orientation)}")


def _symmetry_advice(annotation: Array, orientation: str | None) -> str:
    """What to change, from what else the labels show."""
    hemispheres = (
        "provide a hemispheres stack: "
        + ("load_hemispheres in the atlas script" if orientation else "hemispheres.tiff")
        + f", with {_HEMISPHERE_VALUES}"
        + ("" if orientation else ', and "symmetric": false in metadata.json')
    )
    for axis in (0, 1):
        other = mirror_agreement(annotation, axis)
        if other >= SYMMETRY_THRESHOLD:
            return (
                f"The labels are mirror-symmetric along {_axis_words(axis, orientation)} "
                f"instead ({other:.1%} match): ORIENTATION is probably wrong, naming the "
                "left-right axis as another one. Fix the orientation, or, if the atlas really "
                f"is asymmetric, {hemispheres}."
            )
    off = _off_centre_midline(annotation)
    if off is not None:
        midline, score = off
        centre = (annotation.shape[2] - 1) / 2
        return (
            f"The labels are mirror-symmetric about axis-2 position {midline:g} ({score:.1%} "
            f"match), not the volume's centre {centre:g}: crop or pad the stacks so that the "
            f"brain's midline is at the centre, or {hemispheres}."
        )
    return (
        "If the left and right copies of a region carry different labels (or the brain is "
        f"not symmetric), the atlas is asymmetric: {hemispheres}; BrainGlobe asks for one id "
        "per region for both sides, the side coming from the hemispheres. If the atlas is "
        "symmetric, check that ORIENTATION is right (a wrongly declared orientation puts "
        "another axis where left-right should be)."
    )


def hemisphere_values_finding(hemispheres: Array) -> Finding:
    """Whether a hemispheres stack holds both sides (values checked to be 0, 1, 2 before)."""
    counts = label_histogram(hemispheres, 2**8)
    left, right = int(counts[1]), int(counts[2])
    if left and right:
        return Finding(True, f"{left} left (1) and {right} right (2) voxels")
    if not left and not right:
        problem = "the hemispheres stack is empty (every voxel is 0)"
    else:
        has, lacks = ("left (1)", "right (2)") if left else ("right (2)", "left (1)")
        problem = f"the hemispheres stack has {has} voxels but no {lacks} voxel"
    return Finding(
        False,
        f"{problem}; expected {_HEMISPHERE_VALUES}. Fix the loader or the file that makes it "
        "(a stack meant as a brain mask, or values 0/1 for right/left, gives this), or leave "
        "it out for a symmetric atlas.",
    )


def hemisphere_sides_finding(hemispheres: Array, orientation: str | None = None) -> Finding:
    """Whether the left hemisphere (1) lies on the left: at higher axis-2 indices than the
    right one (2), as "asr" axis 2 runs from right to left."""
    values = hemisphere_values_finding(hemispheres)
    if not values.ok:
        return Finding(False, f"cannot tell the sides apart: {values.message}")
    sample = _sample(hemispheres, 2, _SAMPLE_VOXELS)
    columns = np.arange(sample.shape[2])
    per_column = np.stack([np.count_nonzero(sample == v, axis=(0, 1)) for v in (1, 2)])
    left, right = (per_column * columns).sum(axis=1) / np.maximum(per_column.sum(axis=1), 1)
    if left > right:
        return Finding(
            True, "the left hemisphere (1) lies at higher axis-2 indices than the right (2) (asr)"
        )
    where = f"ORIENTATION {orientation!r}" if orientation else "the data's orientation"
    return Finding(
        False,
        f"the left hemisphere (1) lies on the right: its voxels are centred at axis-2 index "
        f"{left:.1f}, the right hemisphere's (2) at {right:.1f}, and in 'asr' axis 2 runs "
        "from right to left. Either the hemisphere values are swapped (BrainGlobe: 1 = left, "
        f"2 = right), or {where} has the wrong left/right letter (then the whole atlas is "
        "mirrored: fix the orientation, not the values).",
    )


def reference_range_finding(reference: Array, name: str = "reference") -> Finding:
    """Whether a uint16 intensity stack uses its range (not a 0..1 float cast to integers)."""
    top = int(value_range(reference)[1])
    if top >= _MIN_REFERENCE_MAX:
        return Finding(True, f"{name} values reach {top}")
    return Finding(
        False,
        f"every {name} voxel is below {_MIN_REFERENCE_MAX} (max {top}) on the 0..65535 scale "
        "of uint16: an image scaled to 0..1 cast to integers, or an empty image? Return the "
        "image as floats (atlasmith rescales them to 0..65535) or as integers in their own "
        "range.",
    )


def additional_reference_finding(name: str, stack: Array, reference: Array) -> Finding:
    """Whether an additional reference differs from the reference."""
    if stack.shape == reference.shape and np.array_equal(stack, reference):
        return Finding(
            False,
            f"additional reference {name!r} is the reference itself: return the other "
            "image (another modality or contrast), or leave it out.",
        )
    return Finding(True, f"additional reference {name!r} differs from the reference")
