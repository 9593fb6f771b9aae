"""OpenTelemetry set-up: one tracer provider and one meter provider per process.

Providers are passed explicitly to whatever needs them instead of being installed as
process globals, so that a test can run several servers, each with its own in-memory
exporter, in one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "chorus"


@dataclass(frozen=True)
class Telemetry:
    """The providers a service records its spans and metrics with."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    @property
    def tracer(self) -> trace.Tracer:
        """The tracer for Chorus's own stage spans."""
        return self.tracer_provider.get_tracer(INSTRUMENTATION_NAME)

    @property
    def meter(self) -> metrics.Meter:
        """The meter for Chorus's own metrics."""
        return self.meter_provider.get_meter(INSTRUMENTATION_NAME)

    def shutdown(self) -> None:
        """Flush and stop the exporters; call once, after the server has stopped."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def configure_telemetry(
    service_name: str,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    environ: Mapping[str, str] | None = None,
) -> Telemetry:
    """Create the providers for ``service_name``.

    Spans and metrics go over OTLP/gRPC when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its
    traces/metrics variant) is set, configured by the standard ``OTEL_*`` variables; the
    given exporters and readers (tests, the local suite) are added besides. An exporter
    that cannot be built raises here, at start-up, rather than leaving tracing silently off.
    """
    environ = os.environ if environ is None else environ
    resource = Resource.create({"service.name": service_name, "service.namespace": "chorus"})

    tracer_provider = TracerProvider(resource=resource)
    for exporter in span_exporters:
        # Simple (synchronous) processing so that spans are visible the moment they end.
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    readers = list(metric_readers)
    if _otlp_wanted(environ, "TRACES"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        logger.info("exporting spans over OTLP")
    if _otlp_wanted(environ, "METRICS"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        logger.info("exporting metrics over OTLP")

    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


def _otlp_wanted(environ: Mapping[str, str], signal: str) -> bool:
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )
