"""Command line: read OTLP/JSON trace files, draw waterfalls or summarise stages.

    python -m services.traces waterfall FILE... [--trace ID] [--limit N] [--slowest]
    python -m services.traces summary FILE... [--top N] [--json]

FILE may be ``-`` for standard input; several files are read as one set of spans. Both
take ``--request GLOB`` (only requests whose root span name matches) and leave health
checks out unless given ``--health``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from services.traces.otlp_json import TraceFileError, read_spans
from services.traces.selection import TraceNotFound, pick_traces, select_requests
from services.traces.spans import Span
from services.traces.summary import render_summary, summarize
from services.traces.trace_tree import group_traces
from services.traces.waterfall import BAR_WIDTH, render_waterfalls


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv``; returns the exit status (1: unreadable or empty input)."""
    args = _parser().parse_args(argv)
    try:
        traces = group_traces(_read(args.files))
        if not traces:
            raise TraceFileError(f"no spans in {', '.join(args.files)}")
        # An id asked for is shown whatever the filters would say of it.
        requests = (
            traces
            if args.command == "waterfall" and args.trace
            else select_requests(traces, root=args.request, infrastructure=args.health)
        )
        if not requests:
            raise TraceNotFound(
                f"none of {len(traces)} traces has a root span matching {args.request!r}"
                + ("" if args.health else " (health checks left out; --health keeps them)")
            )
        if args.command == "waterfall":
            sys.stdout.write(
                render_waterfalls(
                    pick_traces(requests, trace_id=args.trace, slowest=args.slowest),
                    limit=args.limit,
                    width=args.width,
                    attributes=args.attributes,
                )
            )
        else:
            summary = summarize(requests).top(args.top)
            if args.json:
                json.dump(summary.to_json(), sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                sys.stdout.write(render_summary(summary))
    except (OSError, TraceFileError, TraceNotFound) as error:
        print(f"traces: {error}", file=sys.stderr)
        return 1
    return 0


def _read(files: Sequence[str]) -> list[Span]:
    spans = []
    for name in files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TraceFileError(f"{name}: not UTF-8 text (compressed? decompress first)") from None
        spans.extend(read_spans(text, "<stdin>" if name == "-" else name))
    return spans


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.traces",
        description="Read OTLP/JSON trace exports (the OpenTelemetry Collector's file"
        " exporter) and show where request time goes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    waterfall = commands.add_parser(
        "waterfall", help="each request's spans as a tree with time bars"
    )
    _add_inputs(waterfall)
    waterfall.add_argument(
        "--trace", default="", metavar="ID", help="only the trace whose id starts so"
    )
    waterfall.add_argument(
        "--limit", type=_count, default=10, help="traces to draw (default 10; 0: all)"
    )
    waterfall.add_argument("--slowest", action="store_true", help="longest requests first")
    waterfall.add_argument(
        "--width", type=_positive, default=BAR_WIDTH, help=f"bar width (default {BAR_WIDTH})"
    )
    waterfall.add_argument(
        "--attributes", action="store_true", help="print each span's attributes under it"
    )

    summary = commands.add_parser("summary", help="stages ranked over every request")
    _add_inputs(summary)
    summary.add_argument("--top", type=_count, default=0, help="stages to list (default all)")
    summary.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="OTLP/JSON file(s); - for standard input"
    )
    parser.add_argument(
        "--request",
        default="*",
        metavar="GLOB",
        help="only requests whose root span name matches, e.g. '*/ComposeMessage'",
    )
    parser.add_argument(
        "--health", action="store_true", help="keep health-check and reflection requests"
    )


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


if __name__ == "__main__":
    sys.exit(main())
