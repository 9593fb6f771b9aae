"""The command line, run in-process on the handcrafted samples."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from services.traces.__main__ import main
from tests.traces import samples
from tests.traces.samples import ORCHESTRATOR_LINE, SPEAK, TRACE_A, TRACE_B, TTS_LINE


@pytest.fixture
def sample_file(tmp_path: Path) -> Path:
    path = tmp_path / "traces.json"
    path.write_text(samples.json_lines())
    return path


def test_waterfall_draws_every_trace(sample_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["waterfall", str(sample_file)]) == 0
    out = capsys.readouterr().out
    assert out.index(f"trace {TRACE_A}") < out.index(f"trace {TRACE_B}")


def test_waterfall_of_one_trace_by_prefix_and_slowest_first(
    sample_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["waterfall", str(sample_file), "--trace", TRACE_B[:8]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trace {TRACE_B}")
    assert TRACE_A not in out
    assert main(["waterfall", str(sample_file), "--slowest", "--limit", "1", "--width", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trace {TRACE_A}  {SPEAK}")
    assert "|########|" in out
    assert out.endswith("(1 of 2 traces shown; --limit 0 shows all)\n")


def test_files_are_read_as_one_set_and_dash_is_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The orchestrator's half of trace A in a file, the tts half on stdin.
    first = tmp_path / "orchestrator.json"
    first.write_text(json.dumps(ORCHESTRATOR_LINE))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(TTS_LINE, indent=2)))
    assert main(["summary", str(first), "-", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["traces"], data["spans"]) == (2, 9)


def test_summary_table_and_top(sample_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(sample_file), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 requests, 9 spans;")
    assert "cache.get" not in out
    assert "tts.synthesize" not in out  # fourth by total time


@pytest.mark.parametrize(
    ("content", "arguments", "message"),
    [
        (None, ["summary"], "No such file"),
        ("", ["summary"], "no spans in "),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "x"}]}]}]}',
            ["summary"],
            ":1: not an OTLP trace export: traceId 'x' is not hex",
        ),
        (
            samples.json_lines(),
            ["waterfall", "--trace", "ffff"],
            "no trace with an id starting 'ffff'",
        ),
        (b"\x1f\x8b\x08\x00\xff", ["summary"], "traces.json: not UTF-8 text (compressed?"),
    ],
)
def test_bad_input_exits_1_with_a_message_and_no_traceback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | bytes | None,
    arguments: list[str],
    message: str,
) -> None:
    path = tmp_path / "traces.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    command, *options = arguments
    assert main([command, str(path), *options]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("traces: ")
    assert message in captured.err


def test_bad_options_are_usage_errors(sample_file: Path) -> None:
    for arguments in (["summary"], ["waterfall", str(sample_file), "--limit", "-1"]):
        with pytest.raises(SystemExit) as exited:
            main(arguments)
        assert exited.value.code == 2


HEALTH_CHECK = {
    "resourceSpans": [
        {
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "c" * 32,
                            "spanId": "1" * 16,
                            "name": "/grpc.health.v1.Health/Check",
                            "kind": 2,
                            "startTimeUnixNano": "1",
                            "endTimeUnixNano": "2",
                        }
                    ]
                }
            ]
        }
    ]
}


def test_health_checks_are_left_out_unless_asked_for_or_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "traces.json"
    path.write_text(samples.json_lines() + json.dumps(HEALTH_CHECK))
    assert main(["summary", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["traces"] == 2
    assert main(["summary", str(path), "--json", "--health"]) == 0
    assert json.loads(capsys.readouterr().out)["traces"] == 3
    assert main(["waterfall", str(path), "--trace", "ccc"]) == 0
    assert "/grpc.health.v1.Health/Check" in capsys.readouterr().out


def test_requests_are_filtered_by_root_span_name(
    sample_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["waterfall", str(sample_file), "--request", "*/Speak"]) == 0
    out = capsys.readouterr().out
    assert TRACE_A in out
    assert TRACE_B not in out
    assert main(["summary", str(sample_file), "--request", "*/Nothing"]) == 1
    assert capsys.readouterr().err == (
        "traces: none of 2 traces has a root span matching '*/Nothing'"
        " (health checks left out; --health keeps them)\n"
    )
