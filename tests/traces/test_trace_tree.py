"""Grouping spans into traces and linking them into trees."""

from __future__ import annotations

from services.traces.otlp_json import read_spans
from services.traces.spans import Span
from services.traces.trace_tree import Trace, covered_ns, group_traces
from tests.traces import samples
from tests.traces.samples import MS, SPEAK, SYNTHESIZE, TRACE_A, TRACE_B


def sample_traces() -> list[Trace]:
    return group_traces(read_spans(samples.json_lines()))


def span(span_id: str, parent: str, start: int, end: int, name: str = "s") -> Span:
    return Span(TRACE_A, span_id, parent, name, "svc", "internal", start, end)


def test_traces_are_grouped_and_ordered_by_start() -> None:
    traces = sample_traces()
    assert [trace.trace_id for trace in traces] == [TRACE_A, TRACE_B]
    assert [len(trace.spans) for trace in traces] == [7, 2]
    assert [trace.duration_ns for trace in traces] == [40 * MS, 10 * MS]
    assert traces[0].services == ["chorus-orchestrator", "chorus-tts"]


def test_tree_order_is_depth_first_with_siblings_by_start() -> None:
    a, _ = sample_traces()
    assert [(depth, s.name) for depth, s in a.walk()] == [
        (0, SPEAK),
        (1, SYNTHESIZE),
        (2, SYNTHESIZE),
        (3, "tts.synthesize"),
        (4, "cache.get"),
        (4, "tts.sentence"),
        (4, "tts.sentence"),
    ]
    assert [s.start_ns for _, s in a.walk()][-2:] == [
        samples.A_START + 6 * MS,
        samples.A_START + 12 * MS,
    ]
    assert a.spans == tuple(s for _, s in a.walk())
    assert a.orphans == []


def test_a_span_whose_parent_is_missing_is_a_root_and_an_orphan() -> None:
    _, b = sample_traces()
    assert [s.span_id for s in b.roots] == ["aaaaaaaaaaaaaaaa"]
    assert [s.span_id for s in b.orphans] == ["aaaaaaaaaaaaaaaa"]
    assert [(depth, s.name) for depth, s in b.walk()] == [(0, SYNTHESIZE), (1, "tts.synthesize")]


def test_self_time_excludes_time_covered_by_children_once() -> None:
    a, _ = sample_traces()
    self_ms = [a.self_time_ns(s) / MS for s in a.spans]
    # Speak 40-30, client 30-26, server 26-24, tts.synthesize 24-(5..26), cache, sentences.
    assert self_ms == [10, 4, 2, 3, 1, 10, 14]


def test_self_time_clips_children_that_outlive_their_parent() -> None:
    trace = group_traces([span("p", "", 0, 10), span("c", "p", 5, 25)])[0]
    assert trace.self_time_ns(trace.roots[0]) == 5
    assert trace.duration_ns == 25


def test_a_span_exported_twice_counts_once() -> None:
    spans = read_spans(samples.json_lines() * 2)
    assert [len(trace.spans) for trace in group_traces(spans)] == [7, 2]


def test_spans_in_a_parent_cycle_are_kept_as_roots() -> None:
    spans = [
        span("a", "b", 0, 10, "a"),
        span("b", "a", 1, 5, "b"),
        span("self", "self", 2, 3, "self"),
        span("c", "b", 2, 4, "c"),
    ]
    (trace,) = group_traces(spans)
    assert [(depth, s.name) for depth, s in trace.walk()] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
        (0, "self"),
    ]
    assert trace.orphans == []


def test_negative_durations_read_as_zero() -> None:
    assert span("x", "", 10, 5).duration_ns == 0


def test_covered_counts_overlaps_once_and_ignores_empty_intervals() -> None:
    assert covered_ns([]) == 0
    assert covered_ns([(0, 10), (5, 15), (20, 30), (22, 25)]) == 25
    assert covered_ns([(5, 3), (4, 4), (0, 1)]) == 1
    assert covered_ns([(0, 10), (2, 3)]) == 10
