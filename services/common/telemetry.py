"""OpenTelemetry set-up: one tracer provider and one meter provider per process.

Providers are passed explicitly to whatever needs them instead of being installed as
process globals, so that a test can run several servers, each with its own in-memory
exporter, in one process. For the same reason each meter provider feeds its own
Prometheus registry rather than prometheus_client's global one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "chorus"

SECONDS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Bucket bounds of every histogram in seconds: a cached first chunk takes a fraction of a
millisecond, a long RPC up to a minute. (The SDK's default bounds, 0 to 10000, suit
milliseconds and would put every one of these in the first bucket.)"""


@dataclass(frozen=True)
class Telemetry:
    """The providers a service records its spans and metrics with."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    prometheus_registry: CollectorRegistry
    """What a Prometheus endpoint serves: this meter provider's metrics, read when scraped."""

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
    given exporters and readers (tests, the local suite) are added besides. Metrics are
    always readable through ``Telemetry.prometheus_registry`` too: a pull reader costs
    nothing until it is scraped. An exporter that cannot be built raises here, at start-up,
    rather than leaving tracing silently off.
    """
    environ = os.environ if environ is None else environ
    resource = Resource.create({"service.name": service_name, "service.namespace": "chorus"})

    tracer_provider = TracerProvider(resource=resource)
    for exporter in span_exporters:
        # Simple (synchronous) processing so that spans are visible the moment they end.
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    prometheus_registry = CollectorRegistry()
    # Scope labels would only repeat "chorus" on every series; Prometheus's own job and
    # instance labels, and target_info, say which process a series comes from.
    readers = [
        *metric_readers,
        PrometheusMetricReader(scope_info_enabled=False, registry=prometheus_registry),
    ]
    if _otlp_wanted(environ, "TRACES"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        logger.info("exporting spans over OTLP")
    if _otlp_wanted(environ, "METRICS"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        logger.info("exporting metrics over OTLP")

    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=readers,
        views=[
            View(
                instrument_type=Histogram,
                instrument_unit="s",
                aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
            )
        ],
    )
    return Telemetry(tracer_provider, meter_provider, prometheus_registry)


def _otlp_wanted(environ: Mapping[str, str], signal: str) -> bool:
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )
