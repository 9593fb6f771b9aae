"""Choosing requests: by root span name, without health checks, by id, longest first."""

from __future__ import annotations

import pytest

from services.traces.selection import TraceNotFound, pick_traces, select_requests
from services.traces.spans import Span
from services.traces.trace_tree import Trace, group_traces
from tests.traces.samples import SYNTHESIZE, TRACE_A, TRACE_B
from tests.traces.test_trace_tree import sample_traces


def health_check() -> Trace:
    (trace,) = group_traces(
        [Span("c" * 32, "1" * 16, "", "/grpc.health.v1.Health/Check", "tts", "server", 0, 9)]
    )
    return trace


def test_requests_are_chosen_by_root_name_and_health_checks_left_out() -> None:
    a, b = sample_traces()
    traces = [health_check(), a, b]
    assert select_requests(traces) == [a, b]
    assert select_requests(traces, infrastructure=True) == traces
    assert select_requests(traces, root="*/Speak") == [a]
    assert select_requests(traces, root=SYNTHESIZE) == [b]
    assert select_requests(traces, root="*Health*") == []
    assert select_requests(traces, root="*Health*", infrastructure=True) == [traces[0]]


def test_traces_are_picked_by_id_prefix_or_longest_first() -> None:
    traces = sample_traces()
    assert pick_traces(traces, trace_id=TRACE_B[:6].upper()) == [traces[1]]
    assert pick_traces(traces) == traces
    assert pick_traces(traces, slowest=True) == [traces[0], traces[1]]
    assert pick_traces(traces[::-1], slowest=True) == [traces[0], traces[1]]
    with pytest.raises(TraceNotFound, match="no trace with an id starting 'ffff'"):
        pick_traces(traces, trace_id="ffff")
    with pytest.raises(TraceNotFound, match="2 traces with an id starting '0af7'"):
        pick_traces(traces + traces, trace_id=TRACE_A[:4])
