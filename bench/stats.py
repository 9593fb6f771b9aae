"""Order statistics for benchmark figures."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between order statistics."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None}
    return {
        "p50": round(1000 * statistics.median(seconds), 3),
        "p95": round(1000 * percentile(seconds, 95), 3),
        "p99": round(1000 * percentile(seconds, 99), 3),
    }
