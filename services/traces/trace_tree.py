"""Spans grouped into traces (one per request) and linked into trees by parent span id."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from services.traces.spans import Span


@dataclass(frozen=True)
class Trace:
    """One request: its spans, linked by parent span id.

    A span whose parent is not among the spans (a partial export) is a root of its own,
    so a trace may have several roots; ``roots[0]`` is the earliest.
    """

    trace_id: str
    roots: tuple[Span, ...]
    children: Mapping[str, tuple[Span, ...]]
    """Each span id's children, earliest first."""
    spans: tuple[Span, ...]
    """Every span, in tree order (depth first, siblings earliest first)."""

    @cached_property
    def start_ns(self) -> int:
        """When the first span started."""
        return min(span.start_ns for span in self.spans)

    @cached_property
    def end_ns(self) -> int:
        """When the last span ended."""
        return max(span.end_ns for span in self.spans)

    @property
    def duration_ns(self) -> int:
        """The request's wall time: first span's start to last span's end.

        Not the root span's duration: with a partial export the true root may be missing,
        and spans recorded after the reply (a background cache write) still count.
        """
        return max(0, self.end_ns - self.start_ns)

    @property
    def services(self) -> list[str]:
        """The services with spans in this trace, sorted."""
        return sorted({span.service for span in self.spans})

    @property
    def orphans(self) -> list[Span]:
        """Spans whose parent is not in the input: the sign of a partial trace."""
        return [span for span in self.roots if self.is_orphan(span)]

    def is_orphan(self, span: Span) -> bool:
        """Whether ``span`` names a parent that is not in the input."""
        return bool(span.parent_id) and span.parent_id not in self.children

    def walk(self) -> Iterator[tuple[int, Span]]:
        """``(depth, span)`` for every span in tree order; roots are at depth 0."""
        return _walk(self.roots, self.children)

    def self_time_ns(self, span: Span) -> int:
        """``span``'s exclusive time: its wall time during which none of its direct
        children was running (children clipped to the span, overlaps counted once)."""
        return span.duration_ns - covered_ns(
            (max(child.start_ns, span.start_ns), min(child.end_ns, span.end_ns))
            for child in self.children[span.span_id]
        )


def group_traces(spans: Iterable[Span]) -> list[Trace]:
    """The spans as traces, earliest first.

    A span exported twice (a retried export lands twice in a collector's file) counts
    once: the first copy is kept.
    """
    by_trace: dict[str, dict[str, Span]] = defaultdict(dict)
    for span in spans:
        by_trace[span.trace_id].setdefault(span.span_id, span)
    traces = [_link(trace_id, list(members.values())) for trace_id, members in by_trace.items()]
    return sorted(traces, key=lambda trace: (trace.start_ns, trace.trace_id))


def covered_ns(intervals: Iterable[tuple[int, int]]) -> int:
    """Nanoseconds covered by the union of ``(start, end)`` intervals."""
    total, reached = 0, None
    for start, end in sorted(intervals):
        if reached is not None:
            start = max(start, reached)
        if end > start:
            total += end - start
            reached = end
    return total


def _link(trace_id: str, spans: list[Span]) -> Trace:
    spans.sort(key=_start_order)
    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {span.span_id: [] for span in spans}
    roots = []
    for span in spans:
        if span.parent_id in ids and span.parent_id != span.span_id:
            children[span.parent_id].append(span)
        else:
            roots.append(span)
    reached = {span.span_id for _, span in _walk(roots, children)}
    for span in spans:
        if span.span_id not in reached:
            # In a parent cycle (malformed input), reachable from no root: cut from the
            # cycle and made a root of its own, rather than silently dropped.
            children[span.parent_id].remove(span)
            roots.append(span)
            reached.update(member.span_id for _, member in _walk([span], children))
    roots.sort(key=_start_order)
    linked = {span_id: tuple(members) for span_id, members in children.items()}
    return Trace(trace_id, tuple(roots), linked, tuple(span for _, span in _walk(roots, linked)))


def _start_order(span: Span) -> tuple[int, int, str, str]:
    return span.start_ns, span.end_ns, span.name, span.span_id


def _walk(
    roots: Sequence[Span], children: Mapping[str, Sequence[Span]]
) -> Iterator[tuple[int, Span]]:
    # Iterative, not recursive: a deep trace must not hit Python's recursion limit.
    stack = [(0, root) for root in reversed(roots)]
    while stack:
        depth, span = stack.pop()
        yield depth, span
        stack.extend((depth + 1, child) for child in reversed(children[span.span_id]))
