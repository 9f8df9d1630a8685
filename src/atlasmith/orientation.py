"""Anatomical orientation: a thin, validating layer over brainglobe-space.

An orientation is a brainglobe-space *origin*: three letters (or words) naming the anatomical
side at index 0 of each axis, one from each pair ``a/p``, ``s/i``, ``r/l``, e.g. ``"asr"``
(axis 0 anterior->posterior, 1 superior->inferior, 2 right->left, the atlas package
orientation). brainglobe-space rejects bad strings with a bare ``AssertionError``; here they
raise :class:`~atlasmith.errors.OrientationError` (a ``ValueError``) that says what is wrong.

brainglobe-space (and scipy under it) is imported only when a function here needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasmith.errors import OrientationError

if TYPE_CHECKING:  # pragma: no cover
    from brainglobe_space import AnatomicalSpace

__all__ = ["as_space", "check_origin", "reorient_points", "reorient_stack"]

_PAIRS = ("ap", "si", "rl")
_LETTER_TO_PAIR = {letter: pair for pair in _PAIRS for letter in pair}
ATLAS_ORIENTATION = "asr"


def check_origin(origin: str | Sequence[str]) -> str:
    """Validate an origin and return it as a 3-letter lowercase string.

    Parameters
    ----------
    origin : str or sequence of str
        ``"asr"``, ``["a", "s", "r"]`` or ``("anterior", "superior", "right")``.

    Raises
    ------
    OrientationError
        When it is not three axes, one from each of a/p, s/i, r/l.

    Examples
    --------
    >>> check_origin(("Anterior", "superior", "right"))
    'asr'
    """
    if isinstance(origin, str):
        parts: list[Any] = list(origin)
    elif isinstance(origin, Sequence):
        parts = list(origin)
    else:
        raise OrientationError(_message(origin, f"got a {type(origin).__name__}"))
    if len(parts) != 3 or not all(isinstance(p, str) and p for p in parts):
        raise OrientationError(_message(origin, "it does not name exactly three axes"))
    letters = "".join(p[0].lower() for p in parts)
    unknown = [c for c in letters if c not in _LETTER_TO_PAIR]
    if unknown:
        raise OrientationError(_message(origin, f"unknown direction(s) {unknown}"))
    if len({_LETTER_TO_PAIR[c] for c in letters}) != 3:
        raise OrientationError(_message(origin, "an anatomical axis appears twice"))
    return letters


def _message(origin: object, why: str) -> str:
    return (
        f"invalid orientation {origin!r}: {why}. Expected three letters, one from each pair "
        "a/p (anterior/posterior), s/i (superior/inferior), r/l (right/left), giving the side "
        "at index 0 of each axis, e.g. 'asr' or 'lpi'."
    )


def as_space(
    origin: str | Sequence[str] | AnatomicalSpace,
    shape: Sequence[int] | None = None,
    resolution: Sequence[float] | None = None,
) -> AnatomicalSpace:
    """Return a brainglobe-space ``AnatomicalSpace`` for an origin (or pass a space through).

    Parameters
    ----------
    origin : str, sequence of str or AnatomicalSpace
        An orientation (validated with :func:`check_origin`) or an existing space, returned
        unchanged when no ``shape``/``resolution`` is given.
    shape, resolution : sequence of 3, optional
        Stack shape and voxel size, stored on the space.
    """
    from brainglobe_space import AnatomicalSpace

    if isinstance(origin, AnatomicalSpace):
        if shape is None and resolution is None:
            return origin
        origin = origin.origin_string
    letters = check_origin(origin)
    shape_t = None if shape is None else tuple(int(s) for s in shape)
    res_t = None if resolution is None else tuple(float(r) for r in resolution)
    return AnatomicalSpace(letters, shape=shape_t, resolution=res_t)


def axis_map(
    source: str | Sequence[str], target: str | Sequence[str]
) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Axis order and flips (in target order) taking ``source`` stacks to ``target``.

    >>> axis_map("lpi", "asr")
    ((1, 2, 0), (True, True, True))
    """
    src, tgt = check_origin(source), check_origin(target)
    src_pairs = [_LETTER_TO_PAIR[c] for c in src]
    order = tuple(src_pairs.index(_LETTER_TO_PAIR[c]) for c in tgt)
    flips = tuple(src[o] != c for o, c in zip(order, tgt, strict=True))
    return order, flips  # type: ignore[return-value]


def reorient_stack(
    stack: npt.NDArray[Any], source: str | Sequence[str], target: str | Sequence[str] = "asr"
) -> npt.NDArray[Any]:
    """Transpose and flip a 3D stack from ``source`` to ``target`` orientation.

    Returns a view of ``stack`` (no copy; call ``np.ascontiguousarray`` before writing it).
    The result equals brainglobe-space's ``map_stack_to`` (voxel ``i`` of a flipped axis of
    length ``n`` goes to ``n - 1 - i``).

    Raises
    ------
    OrientationError
        For an invalid orientation, or a stack that is not 3D.
    """
    array = np.asarray(stack)
    if array.ndim != 3:
        raise OrientationError(
            f"reorient_stack needs a 3D stack, got an array of shape {array.shape}."
        )
    order, flips = axis_map(source, target)
    moved = np.transpose(array, order)
    flipped: npt.NDArray[Any] = np.flip(moved, tuple(i for i, f in enumerate(flips) if f))
    return flipped


def reorient_points(
    points: npt.ArrayLike,
    source: str | Sequence[str],
    shape_um: Sequence[float],
    target: str | Sequence[str] = "asr",
) -> npt.NDArray[np.float64]:
    """Map (N, 3) points from ``source`` to ``target`` orientation.

    Along a flipped axis a coordinate ``x`` becomes ``extent - x``, where ``extent`` is the
    source extent on that axis from ``shape_um`` (in source axis order): brainglobe-space's
    ``map_points_to`` convention. Pass ``shape * resolution`` to match BrainGlobe's packager,
    or ``(shape - 1) * resolution`` to keep points at voxel centres (``i * resolution``) on the
    same voxels as :func:`reorient_stack`.

    Raises
    ------
    OrientationError
        For an invalid orientation, or points that are not (N, 3) / (3,).
    """
    pts = np.asarray(points, dtype=np.float64)
    single = pts.ndim == 1
    pts2 = pts[np.newaxis, :] if single else pts
    if pts2.ndim != 2 or pts2.shape[1] != 3:
        raise OrientationError(f"points must have shape (N, 3) or (3,), got {pts.shape}.")
    extent = np.asarray(shape_um, dtype=np.float64)
    if extent.shape != (3,):
        raise OrientationError(f"shape_um must have 3 values, got {list(shape_um)!r}.")
    order, flips = axis_map(source, target)
    out = pts2[:, list(order)].copy()
    for axis, flipped in enumerate(flips):
        if flipped:
            out[:, axis] = extent[order[axis]] - out[:, axis]
    return out[0] if single else out
