"""Writing OTLP/JSON lines: the Collector file exporter's format, read back unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.traces.otlp_file import OtlpJsonFileExporter, request_to_json, write_requests
from services.traces.otlp_json import parse_requests, read_spans
from services.traces.spans import SpanStatus
from tests.traces import samples


def provider(service: str, *exporters: SpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    for exporter in exporters:
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def test_lines_are_otlp_json_with_hex_ids_string_times_and_numeric_enums(tmp_path: Path) -> None:
    exporter = OtlpJsonFileExporter(tmp_path / "traces.json")
    memory = InMemorySpanExporter()
    tracer = provider("chorus-test", exporter, memory).get_tracer("chorus")
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
        outer.add_event("first", {"n": 1})
    exporter.shutdown()
    (line,) = (tmp_path / "traces.json").read_text().splitlines()
    span = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    (recorded,) = memory.get_finished_spans()
    assert span["traceId"] == format(recorded.context.trace_id, "032x")
    assert span["spanId"] == format(recorded.context.span_id, "016x")
    assert "parentSpanId" not in span  # a root: empty fields are left out
    assert span["kind"] == 2
    assert span["startTimeUnixNano"] == str(recorded.start_time)
    assert span["events"][0]["attributes"] == [{"key": "n", "value": {"intValue": "1"}}]


def test_what_the_sdk_recorded_reads_back_span_for_span(tmp_path: Path) -> None:
    path = tmp_path / "traces.json"
    exporter = OtlpJsonFileExporter(path)
    memory = InMemorySpanExporter()
    # One file for two services, as a collector's would be.
    client = provider("chorus-client", exporter, memory).get_tracer("chorus")
    server = provider("chorus-server", exporter, memory).get_tracer("chorus")
    with client.start_as_current_span("call", kind=SpanKind.CLIENT):
        with server.start_as_current_span("work", attributes={"chorus.tts.chars": 12}) as work:
            work.set_status(Status(StatusCode.ERROR, "failed"))
        with server.start_as_current_span("more", attributes={"ok": True, "ratio": 0.5}):
            pass
    exporter.shutdown()
    exporter.shutdown()  # each provider shuts a shared exporter down: harmless twice

    read = {span.span_id: span for span in read_spans(path.read_text())}
    recorded = memory.get_finished_spans()
    assert len(read) == len(recorded) == 3
    for original in recorded:
        span = read[format(original.context.span_id, "016x")]
        assert span.trace_id == format(original.context.trace_id, "032x")
        assert span.parent_id == (
            format(original.parent.span_id, "016x") if original.parent else ""
        )
        assert (span.name, span.start_ns, span.end_ns) == (
            original.name,
            original.start_time,
            original.end_time,
        )
        assert span.attributes == dict(original.attributes or {})
    services = {span.name: span.service for span in read.values()}
    assert services == {"call": "chorus-client", "work": "chorus-server", "more": "chorus-server"}
    work_span = next(span for span in read.values() if span.name == "work")
    assert (work_span.status, work_span.status_message) == (SpanStatus.ERROR, "failed")
    assert next(s for s in read.values() if s.name == "call").kind == "client"


def test_the_samples_survive_a_round_trip() -> None:
    requests = list(parse_requests(samples.json_lines()))
    stream = io.StringIO()
    write_requests(requests, stream)
    assert stream.getvalue().count("\n") == 2
    assert read_spans(stream.getvalue()) == read_spans(samples.json_lines())
    assert f'"traceId":"{samples.TRACE_B}"' in request_to_json(requests[1])


def test_an_exporter_shut_down_refuses_more_spans(tmp_path: Path) -> None:
    exporter = OtlpJsonFileExporter(tmp_path / "traces.json")
    assert exporter.force_flush()
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE
