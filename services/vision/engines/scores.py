"""Scores in [0, 1] from raw margins and logits."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

Scores = TypeVar("Scores", float, npt.NDArray[np.float32])


def logistic(margin: Scores, centre: float = 0.0, spread: float = 1.0) -> Scores:
    """``1 / (1 + exp(-(margin - centre) / spread))``, elementwise for arrays.

    Computed as ``(1 + tanh(z / 2)) / 2``, which is the same function but cannot overflow
    for large negative margins.
    """
    squashed = 0.5 * (1.0 + np.tanh(0.5 * (margin - centre) / spread))
    if isinstance(margin, np.ndarray):
        return np.asarray(squashed, np.float32)
    return float(squashed)
