"""Orientation: validation errors, and stacks/points reoriented exactly as brainglobe-space does."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from brainglobe_space import AnatomicalSpace
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from atlasmith.errors import OrientationError
from atlasmith.orientation import as_space, check_origin, reorient_points, reorient_stack

ALL_ORIGINS = [
    "".join(p)
    for pairs in itertools.permutations(["ap", "si", "rl"])
    for p in itertools.product(*pairs)
]


def test_there_are_48_orientations() -> None:
    assert len(set(ALL_ORIGINS)) == 48
    assert all(check_origin(o) == o for o in ALL_ORIGINS)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [("ASR", "asr"), (["l", "p", "i"], "lpi"), (("anterior", "superior", "right"), "asr")],
)
def test_check_origin_normalises(origin: str | list[str], expected: str) -> None:
    assert check_origin(origin) == expected


@pytest.mark.parametrize(
    ("origin", "why"),
    [
        ("as", "exactly three"),
        ("asrl", "exactly three"),
        ("aas", "appears twice"),
        ("arl", "appears twice"),
        ("xyz", "unknown direction"),
        (["a", "", "r"], "exactly three"),
        (123, "got a int"),
    ],
)
def test_invalid_origin_is_an_orientation_error(origin: object, why: str) -> None:
    with pytest.raises(OrientationError, match=why) as info:
        check_origin(origin)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, AssertionError)


def test_brainglobe_space_itself_raises_a_bare_assertion() -> None:
    # the behaviour atlasmith wraps: a bare AssertionError, no message
    with pytest.raises(AssertionError):
        AnatomicalSpace("aas")
    with pytest.raises(OrientationError):
        as_space("aas")


def test_as_space() -> None:
    space = as_space("ASR", shape=(3, 4, 5), resolution=(10, 10, 20))
    assert isinstance(space, AnatomicalSpace)
    assert space.origin_string == "asr"
    assert space.shape == (3, 4, 5)
    assert space.resolution == (10.0, 10.0, 20.0)
    assert as_space(space) is space
    assert as_space(space, shape=(1, 2, 3)).shape == (1, 2, 3)


@pytest.mark.parametrize("source", ALL_ORIGINS)
def test_reorient_stack_matches_brainglobe_space(source: str) -> None:
    stack = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    ours = reorient_stack(stack, source, "asr")
    theirs = AnatomicalSpace(source).map_stack_to("asr", stack)
    np.testing.assert_array_equal(ours, theirs)
    assert np.shares_memory(ours, stack)  # a view, no copy


@pytest.mark.parametrize("source", ["asr", "lpi", "ipl", "ras", "sal"])
def test_reorient_points_matches_brainglobe_space(source: str) -> None:
    rng = np.random.default_rng(0)
    shape_um = np.array([1000.0, 800.0, 1140.0])
    pts = rng.uniform(0, 800, size=(20, 3))
    ours = reorient_points(pts, source, shape_um, "asr")
    theirs = AnatomicalSpace(source, shape=shape_um).map_points_to("asr", pts)
    np.testing.assert_allclose(ours, theirs)
    np.testing.assert_allclose(reorient_points(pts[0], source, shape_um), theirs[0])


def test_voxel_centre_points_follow_the_stack() -> None:
    # with extent (shape - 1) * resolution, a point at a voxel centre lands on the same voxel
    shape, res = np.array([4, 5, 6]), 10.0
    stack = np.arange(shape.prod()).reshape(shape)
    moved = reorient_stack(stack, "lpi", "asr")
    voxel = np.array([1, 3, 2])
    point = reorient_points(voxel * res, "lpi", (shape - 1) * res, "asr")
    assert moved[tuple((point / res).round().astype(int))] == stack[tuple(voxel)]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: reorient_stack(np.zeros((2, 2)), "asr"), "3D stack"),
        (lambda: reorient_points(np.zeros((2, 2)), "asr", (1, 1, 1)), r"\(N, 3\)"),
        (lambda: reorient_points(np.zeros((2, 3)), "asr", (1, 1)), "3 values"),
        (lambda: reorient_stack(np.zeros((2, 2, 2)), "abc"), "invalid orientation"),
    ],
)
def test_bad_arguments(call: object, match: str) -> None:
    with pytest.raises(OrientationError, match=match):
        call()  # type: ignore[operator]


_origins = st.sampled_from(ALL_ORIGINS)


@given(
    hnp.arrays(np.int16, hnp.array_shapes(min_dims=3, max_dims=3, max_side=5)),
    _origins,
    _origins,
)
def test_reorient_stack_round_trip(stack: np.ndarray, source: str, target: str) -> None:
    there = reorient_stack(stack, source, target)
    np.testing.assert_array_equal(reorient_stack(there, target, source), stack)
    assert sorted(there.shape) == sorted(stack.shape)


@given(
    hnp.arrays(np.float64, (7, 3), elements=st.floats(0, 1000)),
    _origins,
    _origins,
    st.tuples(*[st.floats(1, 2000)] * 3),
)
def test_reorient_points_round_trip(
    pts: np.ndarray, source: str, target: str, extent: tuple[float, float, float]
) -> None:
    there = reorient_points(pts, source, extent, target)
    extent_target = reorient_points(np.array(extent), source, (0.0, 0.0, 0.0), target)
    back = reorient_points(there, target, np.abs(extent_target), source)
    np.testing.assert_allclose(back, pts, atol=1e-9)
