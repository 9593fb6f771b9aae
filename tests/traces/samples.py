"""Handcrafted OTLP/JSON, as the Collector's file exporter writes it, with known timings.

Trace A (a Speak request, 40 ms, both services): times are 1 s plus whole milliseconds,
so a 40-character bar is one character per millisecond.

    span                        service              start  end   self time
    Speak (root)                chorus-orchestrator    0    40    40 - 30 = 10
      Synthesize (client)       chorus-orchestrator    2    32    30 - 26 = 4
        Synthesize (server)     chorus-tts             4    30    26 - 24 = 2
          tts.synthesize        chorus-tts             5    29    24 - 21 = 3
            cache.get           chorus-tts             5     6    1
            tts.sentence        chorus-tts             6    16    10
            tts.sentence        chorus-tts            12    26    14   <- slowest below the root

Trace B (partial, failed, 10 ms): the tts server span's parent is not in the file, and
both spans have an error status; tts.synthesize (self time 4) is the slowest below the root.

Times are written as strings on the first line and as numbers on the second; span kinds
and status codes as numbers and as enum names, both of which OTLP/JSON readers accept.
"""

from __future__ import annotations

import json
from typing import Any

TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"
SPEAK = "/chorus.orchestrator.v1.Orchestrator/Speak"
SYNTHESIZE = "/chorus.tts.v1.TextToSpeech/Synthesize"

MS = 1_000_000
A_START = 1_000_000_000
B_START = 2_000_000_000


def _string(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _resource(service: str) -> dict[str, Any]:
    return {
        "attributes": [
            _string("service.name", service),
            _string("telemetry.sdk.language", "python"),
        ]
    }


ORCHESTRATOR_LINE: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": _resource("chorus-orchestrator"),
            "scopeSpans": [
                {
                    "scope": {"name": "opentelemetry.instrumentation.grpc", "version": "0.66b2"},
                    "spans": [
                        {
                            "traceId": TRACE_A,
                            "spanId": "1111111111111111",
                            "parentSpanId": "",
                            "name": SPEAK,
                            "kind": 2,
                            "startTimeUnixNano": str(A_START),
                            "endTimeUnixNano": str(A_START + 40 * MS),
                            "attributes": [
                                _string("rpc.system", "grpc"),
                                {"key": "rpc.grpc.status_code", "value": {"intValue": "0"}},
                            ],
                            "events": [
                                {
                                    "timeUnixNano": str(A_START + 12 * MS),
                                    "name": "orchestrator.first_audio",
                                },
                                {
                                    "timeUnixNano": str(A_START + 30 * MS),
                                    "name": "orchestrator.chunk_gap",
                                    "attributes": [
                                        {
                                            "key": "chorus.orchestrator.gap_ms",
                                            "value": {"doubleValue": 10.0},
                                        }
                                    ],
                                },
                                {
                                    "timeUnixNano": str(A_START + 20 * MS),
                                    "name": "orchestrator.chunk_gap",
                                    "attributes": [
                                        {
                                            "key": "chorus.orchestrator.gap_ms",
                                            "value": {"doubleValue": 8.0},
                                        }
                                    ],
                                },
                            ],
                            "status": {},
                            "flags": 256,
                        },
                        {
                            "traceId": TRACE_A,
                            "spanId": "2222222222222222",
                            "parentSpanId": "1111111111111111",
                            "name": SYNTHESIZE,
                            "kind": "SPAN_KIND_CLIENT",
                            "startTimeUnixNano": str(A_START + 2 * MS),
                            "endTimeUnixNano": str(A_START + 32 * MS),
                            "status": {"code": 1},
                        },
                    ],
                }
            ],
        }
    ]
}


def _tts_span(
    span_id: str, parent: str, name: str, start_ms: int, end_ms: int, **extra: Any
) -> dict[str, Any]:
    return {
        "traceId": TRACE_A,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": A_START + start_ms * MS,
        "endTimeUnixNano": A_START + end_ms * MS,
        **extra,
    }


TTS_LINE: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": _resource("chorus-tts"),
            "scopeSpans": [
                {
                    "scope": {"name": "chorus"},
                    "spans": [
                        # Written children first, as a batch exporter does: order must not matter.
                        _tts_span("6666666666666666", "4444444444444444", "tts.sentence", 12, 26),
                        _tts_span("5555555555555555", "4444444444444444", "tts.sentence", 6, 16),
                        _tts_span(
                            "7777777777777777",
                            "4444444444444444",
                            "cache.get",
                            5,
                            6,
                            attributes=[{"key": "chorus.cache.hit", "value": {"boolValue": False}}],
                        ),
                        _tts_span(
                            "4444444444444444",
                            "3333333333333333",
                            "tts.synthesize",
                            5,
                            29,
                            attributes=[
                                _string("chorus.tts.engine", "espeak"),
                                {"key": "chorus.tts.chars", "value": {"intValue": 42}},
                            ],
                            events=[{"timeUnixNano": A_START + 10 * MS, "name": "tts.first_audio"}],
                        ),
                        _tts_span(
                            "3333333333333333",
                            "2222222222222222",
                            SYNTHESIZE,
                            4,
                            30,
                            kind="SPAN_KIND_SERVER",
                        ),
                    ],
                }
            ],
        },
        {
            "resource": _resource("chorus-tts"),
            "scopeSpans": [
                {
                    "scope": {"name": "chorus"},
                    "spans": [
                        {
                            "traceId": TRACE_B,
                            "spanId": "aaaaaaaaaaaaaaaa",
                            "parentSpanId": "9999999999999999",
                            "name": SYNTHESIZE,
                            "kind": 2,
                            "startTimeUnixNano": B_START,
                            "endTimeUnixNano": B_START + 10 * MS,
                            "status": {"code": 2, "message": "text: is empty"},
                        },
                        {
                            "traceId": TRACE_B,
                            "spanId": "bbbbbbbbbbbbbbbb",
                            "parentSpanId": "aaaaaaaaaaaaaaaa",
                            "name": "tts.synthesize",
                            "kind": "SPAN_KIND_INTERNAL",
                            "startTimeUnixNano": B_START + 1 * MS,
                            "endTimeUnixNano": B_START + 5 * MS,
                            "status": {"code": "STATUS_CODE_ERROR"},
                        },
                    ],
                }
            ],
        },
    ]
}


def json_lines() -> str:
    """Both lines, as the Collector's file exporter writes them."""
    return "".join(
        json.dumps(line, separators=(",", ":")) + "\n" for line in (ORCHESTRATOR_LINE, TTS_LINE)
    )
