"""Writing spans as OTLP/JSON lines, the format the OpenTelemetry Collector's ``file``
exporter writes: one ``ExportTraceServiceRequest`` per line, ids in hex, times as strings
of nanoseconds, enums as numbers, empty fields left out.

:class:`OtlpJsonFileExporter` plugs into a tracer provider where no collector runs (a
test, a laptop), so ``python -m services.traces`` reads the result like a collector's file.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from services.traces.otlp_json import rewrite_ids


def request_to_json(request: ExportTraceServiceRequest) -> str:
    """One export request as one line of OTLP/JSON (no newline at the end)."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    # Protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids in hex.
    rewrite_ids(document, lambda _field, value: base64.b64decode(value).hex())
    return json.dumps(document, separators=(",", ":"))


def write_requests(requests: Iterable[ExportTraceServiceRequest], stream: TextIO) -> None:
    """Write each request as one OTLP/JSON line to ``stream``."""
    for request in requests:
        stream.write(request_to_json(request) + "\n")


class OtlpJsonFileExporter(SpanExporter):
    """A span exporter that appends each batch to a file as one OTLP/JSON line.

    Spans are encoded by the OTLP exporter's own encoder, so the file holds what a
    collector would have received. Safe to share between tracer providers (each
    service's resource stays on its spans) and to call from several threads.
    """

    def __init__(self, path: Path) -> None:
        self._file: TextIO | None = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append ``spans`` as one line; fails once the exporter is shut down."""
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            write_requests([encode_spans(spans)], self._file)
            # Flushed per batch: a reader (or a crash) sees every span exported so far.
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file; later calls do nothing (shared exporters are shut down twice)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every export is already flushed."""
        return True
