"""Percentiles as benchmarks and trace summaries report them."""

from __future__ import annotations

import pytest

from services.common.quantiles import percentile


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([7], 0.95) == 7
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile([1, 2, 3, 4], 0.5) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 0.95) == pytest.approx(95.05)
    assert percentile([1, 2], 1.0) == 2
    assert percentile([1, 2], 0.0) == 1


def test_no_values_and_fractions_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="outside 0 to 1"):
        percentile([1.0], 95)
