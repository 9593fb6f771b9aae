"""Reading OTLP/JSON: the Collector file exporter's lines and the variants the spec allows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.traces.otlp_json import UNKNOWN_SERVICE, TraceFileError, read_spans
from services.traces.spans import Span, SpanStatus
from tests.traces import samples
from tests.traces.samples import A_START, MS, ORCHESTRATOR_LINE, TRACE_A, TRACE_B, TTS_LINE


def _one_span(**fields: Any) -> dict[str, Any]:
    span = {
        "traceId": TRACE_A,
        "spanId": "0123456789abcdef",
        "name": "one",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        **fields,
    }
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]
                },
                "scopeSpans": [{"spans": [span]}],
            }
        ]
    }


def by_id(spans: list[Span]) -> dict[str, Span]:
    return {span.span_id: span for span in spans}


def test_reads_every_span_of_every_line_with_its_service() -> None:
    spans = read_spans(samples.json_lines())
    assert len(spans) == 9
    assert {span.trace_id for span in spans} == {TRACE_A, TRACE_B}
    services = {span.span_id: span.service for span in spans}
    assert services["1111111111111111"] == services["2222222222222222"] == "chorus-orchestrator"
    assert services["4444444444444444"] == services["aaaaaaaaaaaaaaaa"] == "chorus-tts"


def test_times_written_as_strings_and_as_numbers_read_the_same() -> None:
    spans = by_id(read_spans(samples.json_lines()))
    root = spans["1111111111111111"]  # string nanoseconds
    assert (root.start_ns, root.end_ns, root.duration_ns) == (A_START, A_START + 40 * MS, 40 * MS)
    synthesize = spans["4444444444444444"]  # integer nanoseconds
    assert (synthesize.start_ns, synthesize.end_ns) == (A_START + 5 * MS, A_START + 29 * MS)
    assert [(e.name, e.time_ns) for e in synthesize.events] == [
        ("tts.first_audio", A_START + 10 * MS)
    ]


def test_kinds_and_status_codes_read_as_numbers_or_names() -> None:
    spans = by_id(read_spans(samples.json_lines()))
    assert spans["1111111111111111"].kind == "server"  # 2
    assert spans["2222222222222222"].kind == "client"  # "SPAN_KIND_CLIENT"
    assert spans["3333333333333333"].kind == "server"  # "SPAN_KIND_SERVER"
    assert spans["4444444444444444"].kind == "internal"  # 1
    assert spans["1111111111111111"].status is SpanStatus.UNSET  # {}
    assert spans["2222222222222222"].status is SpanStatus.OK  # 1
    failed = spans["aaaaaaaaaaaaaaaa"]  # 2, with a message
    assert (failed.status, failed.status_message) == (SpanStatus.ERROR, "text: is empty")
    assert spans["bbbbbbbbbbbbbbbb"].status is SpanStatus.ERROR  # "STATUS_CODE_ERROR"


def test_ids_are_hex_and_a_root_has_no_parent() -> None:
    spans = by_id(read_spans(samples.json_lines()))
    assert spans["1111111111111111"].parent_id == ""
    assert spans["2222222222222222"].parent_id == "1111111111111111"
    assert spans["aaaaaaaaaaaaaaaa"].parent_id == "9999999999999999"


def test_attribute_values_keep_their_types() -> None:
    spans = by_id(read_spans(samples.json_lines()))
    assert spans["1111111111111111"].attributes == {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": 0,  # intValue as a string, as int64 is in JSON
    }
    assert spans["4444444444444444"].attributes == {
        "chorus.tts.engine": "espeak",
        "chorus.tts.chars": 42,
    }
    assert spans["7777777777777777"].attributes == {"chorus.cache.hit": False}
    gaps = [e for e in spans["1111111111111111"].events if e.name == "orchestrator.chunk_gap"]
    assert [e.attributes for e in gaps] == [
        {"chorus.orchestrator.gap_ms": 10.0},
        {"chorus.orchestrator.gap_ms": 8.0},
    ]


def test_nested_attribute_values_become_lists_and_dicts() -> None:
    document = _one_span(
        attributes=[
            {"key": "list", "value": {"arrayValue": {"values": [{"intValue": "1"}, {}]}}},
            {
                "key": "map",
                "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}},
            },
            {"key": "raw", "value": {"bytesValue": "AAE="}},
        ]
    )
    (span,) = read_spans(json.dumps(document))
    assert span.attributes == {"list": [1, None], "map": {"k": "v"}, "raw": b"\x00\x01"}


def test_a_pretty_document_an_array_and_lines_read_the_same() -> None:
    expected = read_spans(samples.json_lines())
    pretty = json.dumps(ORCHESTRATOR_LINE, indent=2) + "\n\n" + json.dumps(TTS_LINE, indent=4)
    array = json.dumps([ORCHESTRATOR_LINE, TTS_LINE])
    assert read_spans(pretty) == expected
    assert read_spans(array) == expected


def test_snake_case_keys_are_accepted_too() -> None:
    document = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE_A,
                                "span_id": "0123456789abcdef",
                                "parent_span_id": "1111111111111111",
                                "name": "x",
                                "start_time_unix_nano": "5",
                                "end_time_unix_nano": 7,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (span,) = read_spans(json.dumps(document))
    assert (span.trace_id, span.span_id, span.parent_id) == (
        TRACE_A,
        "0123456789abcdef",
        "1111111111111111",
    )
    assert (span.start_ns, span.end_ns) == (5, 7)


def test_uppercase_hex_ids_are_read_as_lowercase() -> None:
    (span,) = read_spans(json.dumps(_one_span(traceId=TRACE_A.upper())))
    assert span.trace_id == TRACE_A


def test_unknown_enum_values_and_fields_are_ignored_for_newer_producers() -> None:
    document = _one_span(kind="SPAN_KIND_FROM_THE_FUTURE", futureField={"x": 1})
    (span,) = read_spans(json.dumps(document))
    assert span.kind == "unspecified"


def test_a_span_without_service_name_gets_unknown_service() -> None:
    document = _one_span()
    document["resourceSpans"][0]["resource"] = {"attributes": []}
    (span,) = read_spans(json.dumps(document))
    assert span.service == UNKNOWN_SERVICE


def test_empty_input_has_no_spans() -> None:
    assert read_spans("") == []
    assert read_spans("\n  \n") == []
    assert read_spans('{"resourceSpans": []}\n{}') == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Protobuf's canonical JSON (base64 ids) is not OTLP/JSON: say so.
        (json.dumps(_one_span(traceId="CvdlGRbNQ92ESOshHIAxnA==")), "not hex"),
        (json.dumps(_one_span(spanId="1234")), "spanId '1234' is not 8 bytes of hex"),
        (json.dumps(_one_span(traceId="")), "traceId '' is not 16 bytes of hex"),
        (json.dumps(_one_span(spanId=17)), "spanId 17 is not a hex string"),
        (json.dumps(_one_span(startTimeUnixNano="soon")), "not an OTLP trace export"),
        (json.dumps(_one_span(name=["a"])), "not an OTLP trace export"),
        ("[1, 2]", "expected a JSON object per export"),
    ],
)
def test_bad_input_is_a_trace_file_error_that_names_the_place(text: str, message: str) -> None:
    with pytest.raises(TraceFileError, match=f"^traces.json:1: .*{message}"):
        read_spans(text, "traces.json")


def test_a_json_error_names_its_line() -> None:
    text = samples.json_lines() + '{"resourceSpans": [\n'
    with pytest.raises(TraceFileError, match=r"^t\.json:4: not JSON"):
        read_spans(text, "t.json")


def test_an_export_error_names_the_line_its_document_starts_on() -> None:
    bad = json.dumps(_one_span(spanId="zz"), indent=2)
    with pytest.raises(TraceFileError, match=r"^t\.json:3: "):
        read_spans(samples.json_lines() + bad, "t.json")
