"""Reading OTLP/JSON trace exports into :class:`~services.traces.spans.Span` records.

Accepts what the OpenTelemetry Collector's ``file`` exporter writes (JSON Lines, one
``ExportTraceServiceRequest`` per line), a single pretty-printed document, several
documents one after another, or a JSON array of them.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters here:
trace and span ids are hex strings, where ``json_format`` expects base64 for ``bytes``.
The ids are therefore rewritten to base64 before ``json_format.ParseDict`` reads the rest,
so everything else (times as strings or numbers, enums as names or numbers, nested
attribute values, lowerCamelCase or snake_case keys) is parsed by protobuf's own rules.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from services.traces.spans import AttributeValue, Span, SpanEvent, SpanStatus

# Each id field by its OTLP/JSON name and its protobuf field name; receivers are asked to
# accept both spellings of every key.
_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_ID_BYTES = {"traceId": 16, "spanId": 8, "parentSpanId": 8}

_KINDS = {
    value: name.removeprefix("SPAN_KIND_").lower()
    for name, value in trace_pb2.Span.SpanKind.items()
}
_STATUSES = {
    trace_pb2.Status.STATUS_CODE_UNSET: SpanStatus.UNSET,
    trace_pb2.Status.STATUS_CODE_OK: SpanStatus.OK,
    trace_pb2.Status.STATUS_CODE_ERROR: SpanStatus.ERROR,
}
_NOT_SPACE = re.compile(r"\S")

UNKNOWN_SERVICE = "unknown_service"
"""The service of spans whose resource has no ``service.name`` (OpenTelemetry's default)."""


class TraceFileError(ValueError):
    """Input that is not OTLP/JSON trace data; the message says where and why."""


def rewrite_ids(document: dict[str, Any], convert: Callable[[str, str], str]) -> None:
    """Replace, in place, every trace and span id in one request's JSON by
    ``convert(field, value)``, where ``field`` is the lowerCamelCase name
    (``traceId``, ``spanId``, ``parentSpanId``); spans and their links are covered."""
    for holder in _id_holders(document):
        for camel, snake in _ID_FIELDS:
            for key in (camel, snake):
                if key in holder:
                    holder[key] = convert(camel, holder[key])


def parse_requests(text: str, source: str = "<input>") -> Iterator[ExportTraceServiceRequest]:
    """The export requests in ``text``; raises :class:`TraceFileError` naming ``source``
    and the line where a document starts that cannot be read."""
    for line, document in _documents(text, source):
        for request in document if isinstance(document, list) else [document]:
            if not isinstance(request, dict):
                raise TraceFileError(f"{source}:{line}: expected a JSON object per export")
            try:
                rewrite_ids(request, _hex_to_base64)
                parsed = json_format.ParseDict(
                    request, ExportTraceServiceRequest(), ignore_unknown_fields=True
                )
            except (ValueError, json_format.ParseError) as error:
                raise TraceFileError(
                    f"{source}:{line}: not an OTLP trace export: {error}"
                ) from None
            yield parsed


def read_spans(text: str, source: str = "<input>") -> list[Span]:
    """Every span in ``text`` (OTLP/JSON), in file order; see :func:`parse_requests`."""
    return [span for request in parse_requests(text, source) for span in spans_of(request)]


def spans_of(request: ExportTraceServiceRequest) -> Iterator[Span]:
    """The spans of one export request, each with its resource's ``service.name``."""
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = resource.get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(),
                    name=span.name,
                    service=service if isinstance(service, str) and service else UNKNOWN_SERVICE,
                    kind=_KINDS.get(span.kind, "unspecified"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    status=_STATUSES.get(span.status.code, SpanStatus.UNSET),
                    status_message=span.status.message,
                    attributes=_attributes(span.attributes),
                    events=tuple(
                        SpanEvent(event.name, event.time_unix_nano, _attributes(event.attributes))
                        for event in span.events
                    ),
                )


def _documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """Each top-level JSON value in ``text`` with the line it starts on: JSON Lines, one
    pretty-printed document and documents simply written one after another all read."""
    decoder = json.JSONDecoder()
    position, line = 0, 1
    while True:
        found = _NOT_SPACE.search(text, position)
        if found is None:
            return
        start = found.start()
        line += text.count("\n", position, start)
        try:
            document, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError as error:
            raise TraceFileError(f"{source}:{error.lineno}: not JSON: {error.msg}") from None
        yield line, document
        line += text.count("\n", start, position)


def _id_holders(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The objects that carry ids: every span and every span's links."""
    for resource_spans in _objects(document, "resourceSpans", "resource_spans"):
        for scope_spans in _objects(resource_spans, "scopeSpans", "scope_spans"):
            for span in _objects(scope_spans, "spans", "spans"):
                yield span
                yield from _objects(span, "links", "links")


def _objects(parent: dict[str, Any], camel: str, snake: str) -> Iterable[dict[str, Any]]:
    # Anything malformed is skipped here: ParseDict then rejects it with a precise message.
    children = parent.get(camel, parent.get(snake))
    if not isinstance(children, list):
        return []
    return [child for child in children if isinstance(child, dict)]


def _hex_to_base64(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise TraceFileError(f"{field} {value!r} is not a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise TraceFileError(
            f"{field} {value!r} is not hex (OTLP/JSON writes ids in hex, not base64)"
        ) from None
    # An empty parentSpanId marks a root span; any other id has a fixed size.
    if (len(raw) != _ID_BYTES[field]) and (raw or field != "parentSpanId"):
        raise TraceFileError(f"{field} {value!r} is not {_ID_BYTES[field]} bytes of hex")
    return base64.b64encode(raw).decode("ascii")


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, AttributeValue]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> AttributeValue:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None
