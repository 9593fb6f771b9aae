"""A request's spans as a text waterfall: one line per span in tree order, with its start
offset, duration and a bar on a shared time axis, so parallel stages show as overlapping
bars; docs/tracing.md shows one and how to read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc

from services.traces.spans import AttributeValue, Span, SpanEvent, SpanStatus
from services.traces.trace_tree import Trace

BAR_WIDTH = 40
"""Characters the whole trace's time spans on the bar."""

_INDENT = "  "
# The kinds that tell which side of a call a span is (the same RPC name appears on both).
_TAGGED = frozenset({"client", "server", "producer", "consumer"})
_MESSAGE_CHARS = 120
_GRPC_CODES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass(frozen=True)
class _Row:
    start: str
    duration: str
    service: str
    label: str
    bar: str
    note: str
    details: str = ""
    """A line printed under the row, beneath the label (the span's attributes)."""


def render_waterfalls(
    traces: Sequence[Trace], *, limit: int = 0, width: int = BAR_WIDTH, attributes: bool = False
) -> str:
    """The first ``limit`` traces (all for 0) drawn one after another, and a line saying
    how many were left out."""
    shown = traces[:limit] if limit else traces
    parts = [render_waterfall(trace, width=width, attributes=attributes) for trace in shown]
    if len(shown) < len(traces):
        parts.append(f"({len(shown)} of {len(traces)} traces shown; --limit 0 shows all)\n")
    return "\n".join(parts)


def render_waterfall(trace: Trace, *, width: int = BAR_WIDTH, attributes: bool = False) -> str:
    """One trace: a header line, then a line per span and per kind of event, indented by
    depth in the tree; times in milliseconds from the trace's first span."""
    rows = [_Row("start ms", "dur ms", "service", "span", "timeline", "")]
    for depth, span in trace.walk():
        rows.append(_span_row(trace, depth, span, width, attributes))
        rows.extend(_event_rows(trace, depth, span, width))
    service_width = max(len(row.service) for row in rows)
    label_width = max(len(row.label) for row in rows)
    lines = [_header(trace)]
    for row in rows:
        times = f"  {row.start:>10}  {row.duration:>10}  {row.service:<{service_width}}  "
        lines.append(f"{times}{row.label:<{label_width}}  {row.bar}  {row.note}".rstrip())
        if row.details:
            lines.append(" " * len(times) + row.details)
    return "\n".join(lines) + "\n"


def bar(start_ns: int, end_ns: int, trace: Trace, width: int, fill: str = "#") -> str:
    """``width`` characters with ``fill`` where ``[start_ns, end_ns)`` lies on the trace's
    time axis; at least one, so that the shortest span still shows where it ran."""
    first = _column(start_ns, trace, width)
    window = trace.duration_ns
    # Ceiling division: a span reaching into a character's time fills that character.
    last = -(-(end_ns - trace.start_ns) * width // window) if window else 0
    last = min(max(last, first + 1), width)
    return " " * first + fill * (last - first) + " " * (width - last)


def _column(time_ns: int, trace: Trace, width: int) -> int:
    window = trace.duration_ns
    column = (time_ns - trace.start_ns) * width // window if window else 0
    return min(max(column, 0), width - 1)


def _header(trace: Trace) -> str:
    spans = len(trace.spans)
    header = (
        f"trace {trace.trace_id}  {trace.roots[0].name}  {_ms(trace.duration_ns)} ms  "
        f"{spans} span{'s' if spans != 1 else ''}  services: {', '.join(trace.services)}"
    )
    orphans = len(trace.orphans)
    if orphans:
        header += f"\npartial trace: {orphans} span{'s' if orphans != 1 else ''} whose parent"
        header += " is not in the input, shown as roots"
    return header


def _span_row(trace: Trace, depth: int, span: Span, width: int, attributes: bool) -> _Row:
    failed = span.status is SpanStatus.ERROR
    notes = []
    if failed:
        notes.append(f"ERROR {_one_line(span.status_message)}".rstrip())
    grpc_code = span.attributes.get("rpc.grpc.status_code")
    # A server span keeps status UNSET for codes that are the caller's fault (the
    # semantic conventions' rule), so the code itself is what shows the failure there.
    if isinstance(grpc_code, int) and grpc_code:
        notes.append(f"grpc {_GRPC_CODES.get(grpc_code, grpc_code)}")
    if depth == 0 and trace.is_orphan(span):
        notes.append(f"parent {span.parent_id} missing")
    return _Row(
        start=_ms(span.start_ns - trace.start_ns),
        duration=_ms(span.duration_ns),
        service=span.service,
        label=_INDENT * depth + span.name + (f" ({span.kind})" if span.kind in _TAGGED else ""),
        bar="|" + bar(span.start_ns, span.end_ns, trace, width, "X" if failed else "#") + "|",
        note="; ".join(notes),
        details=_attributes(depth, span.attributes) if attributes else "",
    )


def _event_rows(trace: Trace, depth: int, span: Span, width: int) -> Iterator[_Row]:
    """One row per event name, at its first occurrence: a span may record an event per
    audio chunk (``orchestrator.chunk_gap``), and a row each would bury the waterfall."""
    firsts: dict[str, SpanEvent] = {}
    counts: dict[str, int] = {}
    for event in sorted(span.events, key=lambda event: event.time_ns):
        firsts.setdefault(event.name, event)
        counts[event.name] = counts.get(event.name, 0) + 1
    for name, event in firsts.items():
        column = _column(event.time_ns, trace, width)
        repeated = f" (x{counts[name]}, first shown)" if counts[name] > 1 else ""
        yield _Row(
            start=_ms(event.time_ns - trace.start_ns),
            duration="",
            service="event",
            label=f"{_INDENT * (depth + 1)}@ {name}{repeated}",
            bar="|" + " " * column + "^" + " " * (width - column - 1) + "|",
            note=f"+{_ms(event.time_ns - span.start_ns)} ms in span",
        )


def _attributes(depth: int, attributes: Mapping[str, AttributeValue]) -> str:
    if not attributes:
        return ""
    pairs = (f"{key}={_value(value)}" for key, value in sorted(attributes.items()))
    return _INDENT * (depth + 1) + "  ".join(pairs)


def _value(value: AttributeValue) -> str:
    # As OTLP/JSON would write it (true, not True), except strings, which stay bare.
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, default=str)


def _one_line(message: str) -> str:
    # Exception messages span lines (gRPC's AioRpcError does); one row must stay one line.
    flat = " ".join(message.split())
    return flat if len(flat) <= _MESSAGE_CHARS else flat[: _MESSAGE_CHARS - 3] + "..."


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:.3f}"
