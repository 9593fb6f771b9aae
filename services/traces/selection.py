"""Choosing which requests (traces) to show."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from services.traces.trace_tree import Trace

INFRASTRUCTURE_RPCS = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Root span name prefixes of requests that are probes, not user traffic: Kubernetes' gRPC
probes alone make a health check trace every few seconds per pod."""


class TraceNotFound(LookupError):
    """No trace, or more than one, matches the id asked for."""


def select_requests(
    traces: Sequence[Trace], *, root: str = "*", infrastructure: bool = False
) -> list[Trace]:
    """The traces whose first root span's name matches the glob ``root`` (``*Speak``);
    health checks and reflection left out unless ``infrastructure``."""
    return [
        trace
        for trace in traces
        if fnmatchcase(trace.roots[0].name, root)
        and (infrastructure or not trace.roots[0].name.startswith(INFRASTRUCTURE_RPCS))
    ]


def pick_traces(
    traces: Sequence[Trace], *, trace_id: str = "", slowest: bool = False
) -> list[Trace]:
    """The traces to draw: the one whose id starts with ``trace_id`` when given (raises
    :class:`TraceNotFound` unless exactly one does), else all, longest first if ``slowest``."""
    if trace_id:
        wanted = trace_id.lower()
        matches = [trace for trace in traces if trace.trace_id.startswith(wanted)]
        if len(matches) != 1:
            found = "no trace" if not matches else f"{len(matches)} traces"
            raise TraceNotFound(f"{found} with an id starting {trace_id!r}")
        return matches
    if slowest:
        return sorted(traces, key=lambda trace: trace.duration_ns, reverse=True)
    return list(traces)
