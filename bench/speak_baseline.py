"""Speak TTFA at concurrency 1: this checkout against a baseline commit, in one run.

Both suites run side by side (espeak, caches off), each started from its own checkout
(the baseline from a temporary git worktree, sharing this venv and generated code, so the
protos must not have changed), and are measured in alternating rounds so that whatever
else the machine does weighs on both alike. Printed as JSON.

    python -m bench.speak_baseline --baseline 56527b0 [--rounds 10 --per-round 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import grpc
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc

from bench.report import print_report
from bench.stats import percentiles_ms
from devtools.launcher import REPO_ROOT, free_port
from devtools.suite import SERVICES, running_suite, suite_processes

TEXT = "Congratulations on the new job! We are all so proud of you."
SUITE_ENV = {
    "CHORUS_CACHE_MAX_BYTES": "0",
    "CHORUS_LOG_LEVEL": "WARNING",
    "CHORUS_ENGINE": "espeak",
}


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A checkout of ``commit`` in a temporary folder, removed afterwards."""
    changed = subprocess.run(
        ["git", "diff", "--quiet", commit, "HEAD", "--", "protos"], cwd=REPO_ROOT, check=False
    )
    if changed.returncode != 0:
        raise SystemExit(f"protos changed since {commit}: the baseline needs its own gen/")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), commit],
            cwd=REPO_ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)],
                cwd=REPO_ROOT, check=False, capture_output=True,
            )  # fmt: skip


@contextlib.asynccontextmanager
async def speaking_suite(
    root: Path, logs: Path
) -> AsyncIterator[orchestrator_pb2_grpc.OrchestratorAsyncStub]:
    """The suite from checkout ``root`` on free ports; yields a stub of its orchestrator."""
    await asyncio.to_thread(logs.mkdir, parents=True)
    processes = suite_processes(
        {name: free_port() for name in SERVICES}, "", logs, SUITE_ENV, root=root
    )
    async with (
        running_suite(processes) as running,
        grpc.aio.insecure_channel(running["orchestrator"].address) as channel,
    ):
        yield orchestrator_pb2_grpc.OrchestratorStub(channel)


async def ttfa(orchestrator: orchestrator_pb2_grpc.OrchestratorAsyncStub) -> float:
    """One Speak's time to its first audio, in seconds."""
    started, first = time.perf_counter(), None
    async for response in orchestrator.Speak(pb.SpeakRequest(text=TEXT), timeout=60):
        if first is None and response.HasField("audio"):
            first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("Speak sent no audio")
    return first


async def run(baseline: str, rounds: int, per_round: int) -> dict[str, object]:
    """Alternating rounds of ``per_round`` Speaks on each suite; their TTFA percentiles."""
    times: dict[str, list[float]] = {"baseline": [], "current": []}
    with worktree(baseline) as baseline_root, tempfile.TemporaryDirectory() as logs:
        async with (
            speaking_suite(baseline_root, Path(logs) / "baseline") as before,
            speaking_suite(REPO_ROOT, Path(logs) / "current") as after,
        ):
            suites = {"baseline": before, "current": after}
            for stub in suites.values():
                for _ in range(3):  # warm every path
                    await ttfa(stub)
            for _ in range(rounds):
                for name, stub in suites.items():
                    times[name].extend([await ttfa(stub) for _ in range(per_round)])
    figures = {name: percentiles_ms(values) for name, values in times.items()}
    p50 = {name: 1000 * statistics.median(values) for name, values in times.items()}
    return {
        "baseline_commit": baseline,
        "text_chars": len(TEXT),
        "requests_each": rounds * per_round,
        "speak_ttfa_c1_ms": figures,
        "current_over_baseline_p50": round(p50["current"] / p50["baseline"], 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the comparison and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    args = parser.parse_args(argv)
    print_report("speak_baseline", asyncio.run(run(args.baseline, args.rounds, args.per_round)))


if __name__ == "__main__":
    main()
