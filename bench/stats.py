"""Benchmark figures: durations summarised as percentiles in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.quantiles import percentile


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of durations given in seconds, in milliseconds (None for none)."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(1000 * percentile(seconds, q / 100), 3) for q in (50, 95, 99)}
