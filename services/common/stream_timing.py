"""How an audio stream paces itself: time to its first audio and the gaps after it.

The headline figures of a streaming speech service, measured the same way wherever audio
leaves a Chorus server (tts's Synthesize, the orchestrator's Speak): into two histograms,
and as events on the request's span, so a trace shows when each piece went out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.util.types import AttributeValue


class StreamMetrics:
    """A service's two stream histograms: ``chorus.<service>.time_to_first_audio`` and
    ``chorus.<service>.chunk_gap`` (seconds)."""

    def __init__(self, meter: Meter, service: str, what: str) -> None:
        """``what`` names the stream in the descriptions (``Speak``, ``a Synthesize``)."""
        self.service = service
        self.ttfa: Histogram = meter.create_histogram(
            f"chorus.{service}.time_to_first_audio",
            unit="s",
            description=f"{what}: request to the first audio sent",
        )
        self.chunk_gap: Histogram = meter.create_histogram(
            f"chorus.{service}.chunk_gap",
            unit="s",
            description=f"{what}: time between consecutive audio messages",
        )

    def timing(
        self, started: float, attributes: Mapping[str, AttributeValue] | None = None
    ) -> StreamTiming:
        """The timing of one stream whose request arrived at ``started``
        (``time.perf_counter()``); ``attributes`` label its measurements."""
        return StreamTiming(self, started, dict(attributes or {}))


class StreamTiming:
    """One stream's pacing: call ``sent`` as each piece of audio goes out."""

    def __init__(
        self, metrics: StreamMetrics, started: float, attributes: dict[str, AttributeValue]
    ) -> None:
        self._metrics = metrics
        self._started = started
        self._attributes = attributes
        self._span = trace.get_current_span()
        self._last_at: float | None = None
        self.first_audio_s = 0.0
        """Request to the first audio, in seconds (0 until it has gone out)."""

    def sent(self) -> None:
        """A piece of audio is going out now."""
        now = time.perf_counter()
        service = self._metrics.service
        if self._last_at is None:
            self.first_audio_s = now - self._started
            self._metrics.ttfa.record(self.first_audio_s, self._attributes)
            self._span.add_event(f"{service}.first_audio")
        else:
            gap = now - self._last_at
            self._metrics.chunk_gap.record(gap, self._attributes)
            self._span.add_event(
                f"{service}.chunk_gap", {f"chorus.{service}.gap_ms": round(1000 * gap, 3)}
            )
        self._last_at = now
