"""The text waterfall: tree order, offsets, durations, bars, events, errors, partial traces."""

from __future__ import annotations

from services.traces.spans import Span, SpanStatus
from services.traces.trace_tree import group_traces
from services.traces.waterfall import bar, render_waterfall, render_waterfalls
from tests.traces.samples import SPEAK, SYNTHESIZE, TRACE_A, TRACE_B
from tests.traces.test_trace_tree import sample_traces


def rows(text: str) -> list[tuple[str, str, str]]:
    """(start, duration, bar) of each span and event line (those with a bar)."""
    found = []
    for line in text.splitlines()[2:]:
        if "|" in line:
            columns = line.split()
            start = columns[0]
            duration = "" if columns[1] == "event" else columns[1]
            found.append((start, duration, line[line.index("|") + 1 : line.rindex("|")]))
    return found


def test_each_span_has_its_offset_duration_and_bar_in_tree_order() -> None:
    text = render_waterfall(sample_traces()[0])
    lines = text.splitlines()
    assert lines[0] == (
        f"trace {TRACE_A}  {SPEAK}  40.000 ms  7 spans  services: chorus-orchestrator, chorus-tts"
    )
    assert lines[1].split() == ["start", "ms", "dur", "ms", "service", "span", "timeline"]
    # 40 ms on 40 characters: one character per millisecond.
    assert rows(text) == [
        ("0.000", "40.000", "#" * 40),
        ("12.000", "", " " * 12 + "^" + " " * 27),  # orchestrator.first_audio
        ("20.000", "", " " * 20 + "^" + " " * 19),  # orchestrator.chunk_gap, the first
        ("2.000", "30.000", " " * 2 + "#" * 30 + " " * 8),
        ("4.000", "26.000", " " * 4 + "#" * 26 + " " * 10),
        ("5.000", "24.000", " " * 5 + "#" * 24 + " " * 11),
        ("10.000", "", " " * 10 + "^" + " " * 29),  # tts.first_audio
        ("5.000", "1.000", " " * 5 + "#" + " " * 34),
        ("6.000", "10.000", " " * 6 + "#" * 10 + " " * 24),
        ("12.000", "14.000", " " * 12 + "#" * 14 + " " * 14),
    ]


def test_names_are_indented_by_depth_and_events_named_with_their_offset_in_the_span() -> None:
    lines = render_waterfall(sample_traces()[0]).splitlines()
    # Client and server spans of one call share a name: their kind tells them apart.
    assert "  chorus-orchestrator  " + SPEAK + " (server)  " in lines[2]
    assert "  chorus-orchestrator    " + SYNTHESIZE + " (client)  " in lines[5]
    assert "  chorus-tts               " + SYNTHESIZE + " (server)  " in lines[6]
    assert "  chorus-tts                 tts.synthesize  " in lines[7]
    assert "  chorus-tts                   tts.sentence  " in lines[10]
    assert "@ orchestrator.first_audio " in lines[3]
    assert lines[3].endswith("|  +12.000 ms in span")
    assert "@ orchestrator.chunk_gap (x2, first shown) " in lines[4]
    assert "@ tts.first_audio " in lines[8]
    assert lines[8].endswith("|  +5.000 ms in span")


def test_a_failed_partial_trace_is_marked() -> None:
    assert render_waterfall(sample_traces()[1]) == (
        f"trace {TRACE_B}  {SYNTHESIZE}  10.000 ms  2 spans  services: chorus-tts\n"
        "partial trace: 1 span whose parent is not in the input, shown as roots\n"
        "    start ms      dur ms  service     span"
        "                                             timeline\n"
        f"       0.000      10.000  chorus-tts  {SYNTHESIZE} (server)  |{'X' * 40}|"
        "  ERROR text: is empty; parent 9999999999999999 missing\n"
        "       1.000       4.000  chorus-tts    tts.synthesize"
        "                                 "
        f"|    {'X' * 16}{' ' * 20}|  ERROR\n"
    )


def test_attributes_are_listed_under_their_span_on_request() -> None:
    text = render_waterfall(sample_traces()[0], attributes=True, width=10)
    lines = text.splitlines()
    synthesize = next(i for i, line in enumerate(lines) if "tts.synthesize" in line)
    assert lines[synthesize + 1].split() == ["chorus.tts.chars=42", "chorus.tts.engine=espeak"]
    cache = next(i for i, line in enumerate(lines) if "cache.get" in line)
    assert lines[cache + 1].split() == ["chorus.cache.hit=false"]
    assert "chorus.tts.chars" not in render_waterfall(sample_traces()[0])


def test_bars_are_at_least_one_character_and_scale_with_width() -> None:
    trace = group_traces([Span("t", "a", "", "a", "s", "internal", 0, 1000)])[0]
    assert bar(0, 1000, trace, 10) == "#" * 10
    assert bar(0, 1, trace, 10) == "#" + " " * 9  # shorter than a character
    assert bar(999, 1000, trace, 10) == " " * 9 + "#"
    assert bar(250, 251, trace, 4, "X") == " X  "
    assert bar(100, 350, trace, 10) == " ###      "  # 1.0 to 3.5 characters: 1 up to 4


def test_a_trace_of_no_duration_draws_one_character_bars() -> None:
    trace = group_traces([Span("t", "a", "", "a", "s", "internal", 5, 5)])[0]
    assert bar(5, 5, trace, 4) == "#   "
    assert "0.000" in render_waterfall(trace)


def test_a_limit_says_how_many_traces_were_left_out() -> None:
    traces = sample_traces()
    limited = render_waterfalls(traces, limit=1)
    assert limited.count("\ntrace ") + limited.startswith("trace ") == 1
    assert limited.endswith("(1 of 2 traces shown; --limit 0 shows all)\n")
    everything = render_waterfalls(traces)
    assert everything.count("trace ") == 2
    assert "traces shown" not in everything


def test_long_error_messages_stay_on_one_line_and_grpc_codes_are_named() -> None:
    message = "AioRpcError: <AioRpcError of RPC that terminated with:\n\tstatus = " + "x" * 200
    failed = Span(
        TRACE_A,
        "1" * 16,
        "",
        SYNTHESIZE,
        "chorus-tts",
        "server",
        0,
        10,
        SpanStatus.ERROR,
        message,
        {"rpc.grpc.status_code": 14},
    )
    # A server span for the caller's mistake: status unset, the code still shown.
    rejected = Span(
        TRACE_A,
        "2" * 16,
        "1" * 16,
        SYNTHESIZE,
        "tts",
        "server",
        2,
        4,
        attributes={"rpc.grpc.status_code": 3},
    )
    text = render_waterfall(group_traces([failed, rejected])[0])
    lines = text.splitlines()
    assert len(lines) == 4
    assert "ERROR AioRpcError: <AioRpcError of RPC that terminated with: status = xxx" in lines[2]
    assert lines[2].endswith("x...; grpc UNAVAILABLE")
    assert len(lines[2].split("|  ")[1]) == len("ERROR ") + 120 + len("; grpc UNAVAILABLE")
    assert lines[3].endswith("|  grpc INVALID_ARGUMENT")
