"""Plain span records: what the tool needs of an OTLP span, free of protobuf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

AttributeValue = (
    str | bool | int | float | bytes | None | list["AttributeValue"] | dict[str, "AttributeValue"]
)
"""An OTLP ``AnyValue`` as Python: scalars, arrays as lists, key-value lists as dicts."""


class SpanStatus(StrEnum):
    """A span's status code, as OTLP defines it."""

    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class SpanEvent:
    """A timestamped event inside a span (``tts.first_audio``, ``orchestrator.first_audio``)."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One finished span; ids are lowercase hex, times nanoseconds since the Unix epoch."""

    trace_id: str
    span_id: str
    parent_id: str
    """The parent's span id; empty for a span that started its trace."""
    name: str
    service: str
    kind: str
    """``server``, ``client``, ``internal``, ``producer``, ``consumer`` or ``unspecified``."""
    start_ns: int
    end_ns: int
    status: SpanStatus = SpanStatus.UNSET
    status_message: str = ""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    @property
    def duration_ns(self) -> int:
        """Wall time from start to end (never negative, even for skewed clocks)."""
        return max(0, self.end_ns - self.start_ns)

    @property
    def stage(self) -> tuple[str, str]:
        """What the summary groups by: the same span name in two services is two stages."""
        return self.service, self.name
