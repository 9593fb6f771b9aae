"""Stages ranked over many requests: how long each takes, how much of its request it
covers, and how often it is the request's slowest stage."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.quantiles import percentile
from services.traces.spans import Span
from services.traces.trace_tree import Trace, covered_ns

SHARE_MEANS = (
    "share: the wall time a stage's spans cover in a request (overlaps counted once) over"
    " the request's duration, averaged over the requests that have the stage"
)
SLOWEST_MEANS = (
    "slowest: in how many requests the stage had the largest exclusive time (its own time"
    " minus the time its child spans cover) of all spans below the request's root"
)


@dataclass(frozen=True)
class StageStats:
    """One stage (a span name in one service) over every request it appears in."""

    service: str
    name: str
    count: int
    """Spans of this stage."""
    traces: int
    """Requests with at least one span of this stage."""
    total_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    mean_share: float
    """See :data:`SHARE_MEANS`; between 0 and 1."""
    slowest: int
    """See :data:`SLOWEST_MEANS`."""


@dataclass(frozen=True)
class Summary:
    """Every stage over a set of requests, the most total time first."""

    traces: int
    spans: int
    request_p50_ms: float
    request_p95_ms: float
    request_max_ms: float
    stages: tuple[StageStats, ...]

    def top(self, count: int) -> Summary:
        """The same summary with only the first ``count`` stages (all for 0)."""
        return dataclasses.replace(self, stages=self.stages[:count] if count else self.stages)

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data, durations in milliseconds."""
        return dataclasses.asdict(self)


def summarize(traces: Sequence[Trace]) -> Summary:
    """Per stage: span durations' percentiles, mean share of the request, and how often
    it was the slowest stage (the definitions are in :data:`SHARE_MEANS` and
    :data:`SLOWEST_MEANS`)."""
    durations: dict[tuple[str, str], list[int]] = defaultdict(list)
    shares: dict[tuple[str, str], list[float]] = defaultdict(list)
    slowest: Counter[tuple[str, str]] = Counter()
    for trace in traces:
        by_stage: dict[tuple[str, str], list[Span]] = defaultdict(list)
        for span in trace.spans:
            by_stage[span.stage].append(span)
            durations[span.stage].append(span.duration_ns)
        for stage, spans in by_stage.items():
            covered = covered_ns((span.start_ns, span.end_ns) for span in spans)
            shares[stage].append(covered / trace.duration_ns if trace.duration_ns else 0.0)
        below_root = [span for depth, span in trace.walk() if depth > 0]
        if below_root:
            # max keeps the first of equals: ties go to the earlier span in tree order.
            slowest[max(below_root, key=trace.self_time_ns).stage] += 1
    stages = [
        StageStats(
            service=service,
            name=name,
            count=len(spans_ns),
            traces=len(shares[service, name]),
            total_ms=_ms(sum(spans_ns)),
            p50_ms=_ms(percentile(spans_ns, 0.50)),
            p95_ms=_ms(percentile(spans_ns, 0.95)),
            max_ms=_ms(max(spans_ns)),
            mean_share=sum(shares[service, name]) / len(shares[service, name]),
            slowest=slowest[service, name],
        )
        for (service, name), spans_ns in durations.items()
    ]
    stages.sort(key=lambda stage: (-stage.total_ms, stage.service, stage.name))
    requests = [trace.duration_ns for trace in traces]
    return Summary(
        traces=len(traces),
        spans=sum(len(trace.spans) for trace in traces),
        request_p50_ms=_ms(percentile(requests, 0.50)) if requests else 0.0,
        request_p95_ms=_ms(percentile(requests, 0.95)) if requests else 0.0,
        request_max_ms=_ms(max(requests, default=0)),
        stages=tuple(stages),
    )


def render_summary(summary: Summary) -> str:
    """The summary as an aligned text table with a headline and the definitions."""
    lines = [
        f"{summary.traces} requests, {summary.spans} spans; request duration"
        f" p50 {summary.request_p50_ms:.3f} ms, p95 {summary.request_p95_ms:.3f} ms,"
        f" max {summary.request_max_ms:.3f} ms"
    ]
    most = max((stage.slowest for stage in summary.stages), default=0)
    if most:
        leaders = [f"{s.service} {s.name}" for s in summary.stages if s.slowest == most]
        lines.append(
            f"most often the slowest stage: {', '.join(leaders)}"
            f" ({most} of {summary.traces} requests{' each' if len(leaders) > 1 else ''})"
        )
    header = ("service", "span", "count", "traces", "total ms", "p50 ms", "p95 ms", "max ms")
    table = [(*header, "share", "slowest")]
    table.extend(
        (
            stage.service,
            stage.name,
            str(stage.count),
            str(stage.traces),
            f"{stage.total_ms:.3f}",
            f"{stage.p50_ms:.3f}",
            f"{stage.p95_ms:.3f}",
            f"{stage.max_ms:.3f}",
            f"{100 * stage.mean_share:.1f}%",
            str(stage.slowest),
        )
        for stage in summary.stages
    )
    widths = [max(len(row[column]) for row in table) for column in range(len(header) + 2)]
    lines.append("")
    for row in table:
        # Names left-aligned, numbers right-aligned so their decimal points line up.
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells.extend(cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True))
        lines.append("  ".join(cells).rstrip())
    lines.extend(["", SHARE_MEANS, SLOWEST_MEANS])
    return "\n".join(lines) + "\n"


def _ms(nanoseconds: float) -> float:
    return nanoseconds / 1e6
