"""Type aliases shared across atlasmith (arrays, paths, progress callbacks).

The array aliases are written as strings, so importing this module does not import numpy
(``atlasmith list`` and ``--help`` start without it); type checkers read them as written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "BoolArray",
    "Float32Array",
    "Float64Array",
    "IntArray",
    "PathLike",
    "ProgressCallback",
    "StepProgress",
]

IntArray: TypeAlias = "npt.NDArray[np.int64]"
BoolArray: TypeAlias = "npt.NDArray[np.bool_]"
Float32Array: TypeAlias = "npt.NDArray[np.float32]"
Float64Array: TypeAlias = "npt.NDArray[np.float64]"
PathLike: TypeAlias = str | os.PathLike[str]

#: ``progress(completed, total)``; total is 0 when unknown (BrainGlobe's ``fn_update``).
ProgressCallback: TypeAlias = Callable[[int, int], None]
#: ``progress(step, done, total)`` for the steps of a long job (a build).
StepProgress: TypeAlias = Callable[[str, int, int], None]
