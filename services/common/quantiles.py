"""Quantiles of measured values, computed one way for benchmarks and trace summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0 to 1) quantile of ``values`` by linear interpolation between the
    closest ranks (numpy's default, a spreadsheet's PERCENTILE.INC).

    ValueError for no values: a quantile of nothing is no number, and callers say what
    they show instead.
    """
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} is outside 0 to 1")
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)
