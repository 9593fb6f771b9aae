"""The per-stage summary: every number worked out by hand from tests/traces/samples.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from services.traces.spans import Span
from services.traces.summary import (
    SHARE_MEANS,
    SLOWEST_MEANS,
    StageStats,
    render_summary,
    summarize,
)
from services.traces.trace_tree import group_traces
from tests.traces.samples import MS, SPEAK, SYNTHESIZE
from tests.traces.test_trace_tree import sample_traces

ORCH = "chorus-orchestrator"
TTS = "chorus-tts"

# Trace A is 40 ms, trace B 10 ms. Percentiles interpolate: of (10, 26) ms the p50 is
# 10 + 0.5 * 16 = 18 and the p95 is 10 + 0.95 * 16 = 25.2.
EXPECTED = (
    # service, span, count, traces, total, p50, p95, max, share, slowest
    StageStats(ORCH, SPEAK, 1, 1, 40.0, 40.0, 40.0, 40.0, 1.0, 0),
    # The tts server span: 26 of 40 ms in A, all 10 ms of B: (0.65 + 1) / 2.
    StageStats(TTS, SYNTHESIZE, 2, 2, 36.0, 18.0, 25.2, 26.0, 0.825, 0),
    StageStats(ORCH, SYNTHESIZE, 1, 1, 30.0, 30.0, 30.0, 30.0, 0.75, 0),
    # 24 of 40 ms in A, 4 of 10 ms in B; the slowest below B's root (self time 4 ms).
    StageStats(TTS, "tts.synthesize", 2, 2, 28.0, 14.0, 23.0, 24.0, 0.5, 1),
    # Two overlapping sentences in A cover 6..26 ms: 20 of 40; the 14 ms one is A's slowest.
    StageStats(TTS, "tts.sentence", 2, 1, 24.0, 12.0, 13.8, 14.0, 0.5, 1),
    StageStats(TTS, "cache.get", 1, 1, 1.0, 1.0, 1.0, 1.0, 0.025, 0),
)


def test_every_stage_with_exact_numbers_most_total_time_first() -> None:
    summary = summarize(sample_traces())
    assert (summary.traces, summary.spans) == (2, 9)
    # Requests of 10 and 40 ms: p50 25, p95 10 + 0.95 * 30.
    assert summary.request_p50_ms == pytest.approx(25.0)
    assert summary.request_p95_ms == pytest.approx(38.5)
    assert summary.request_max_ms == pytest.approx(40.0)
    assert [(s.service, s.name) for s in summary.stages] == [(s.service, s.name) for s in EXPECTED]
    for stage, expected in zip(summary.stages, EXPECTED, strict=True):
        assert dataclasses.asdict(stage) == pytest.approx(dataclasses.asdict(expected))


def test_the_table_is_aligned_and_says_what_it_computes() -> None:
    text = render_summary(summarize(sample_traces()))
    lines = text.splitlines()
    assert lines[0] == (
        "2 requests, 9 spans; request duration p50 25.000 ms, p95 38.500 ms, max 40.000 ms"
    )
    assert lines[1] == (
        "most often the slowest stage: chorus-tts tts.synthesize, chorus-tts tts.sentence"
        " (1 of 2 requests each)"
    )
    header, *table = lines[3:10]
    assert header.split() == [
        "service",
        "span",
        "count",
        "traces",
        "total",
        "ms",
        "p50",
        "ms",
        "p95",
        "ms",
        "max",
        "ms",
        "share",
        "slowest",
    ]
    assert table[1].split() == [
        TTS,
        SYNTHESIZE,
        "2",
        "2",
        "36.000",
        "18.000",
        "25.200",
        "26.000",
        "82.5%",
        "0",
    ]
    assert table[5].split()[-2:] == ["2.5%", "0"]
    # Right-aligned numbers: every row ends where the header ends.
    assert {len(row) for row in [header, *table]} == {len(header)}
    assert lines[-2:] == [SHARE_MEANS, SLOWEST_MEANS]


def test_top_keeps_the_first_stages_and_json_has_the_same_numbers() -> None:
    summary = summarize(sample_traces()).top(2)
    assert [stage.name for stage in summary.stages] == [SPEAK, SYNTHESIZE]
    data = json.loads(json.dumps(summary.to_json()))
    assert data["traces"] == 2
    assert data["stages"][1] == {
        "service": TTS,
        "name": SYNTHESIZE,
        "count": 2,
        "traces": 2,
        "total_ms": 36.0,
        "p50_ms": 18.0,
        "p95_ms": pytest.approx(25.2),
        "max_ms": 26.0,
        "mean_share": pytest.approx(0.825),
        "slowest": 0,
    }
    assert len(summarize(sample_traces()).top(0).stages) == len(EXPECTED)


def test_a_request_of_one_span_has_no_slowest_stage() -> None:
    lone = group_traces([Span("t", "a", "", "root", "svc", "server", 0, 5 * MS)])
    summary = summarize(lone)
    assert summary.stages == (StageStats("svc", "root", 1, 1, 5.0, 5.0, 5.0, 5.0, 1.0, 0),)
    assert "most often" not in render_summary(summary)
    no_requests = summarize([])
    assert (no_requests.traces, no_requests.stages, no_requests.request_max_ms) == (0, (), 0.0)
    assert "most often" not in render_summary(no_requests)
