"""GPU kit: VITS time to first audio with cross-request batching and CUDA graphs on and off.

A VITS with random weights at its real size (``base``, VITS's own layer sizes) streams the
long text of bench.tts_ttfa through the service's own pipeline (SpeechStreamer over the
EngineScheduler, no gRPC) at concurrency 1, 4 and 16, for each configuration in one run:

* ``off``: as before batching, one sentence at a time on one engine thread, eager;
* ``batched``: sentences of concurrent streams in one pass (``--max-batch``), eager;
* ``graphs``: one sentence at a time, its pass replayed as CUDA graphs;
* ``on``: batched and replayed as CUDA graphs (the CUDA defaults asked for).

Each gives TTFA and total latency percentiles, throughput, the sizes of the batches run,
the warm-up's time (graph capture included) and, on CUDA, the peak GPU memory. The
issue's figures to beat (H200, eager, one at a time, through the server): TTFA p50
142-192 ms at c1, 491 at c4, 1,505 at c16. About two minutes on an H200 (``off`` alone
speaks 2 x 21 streams of five sentences at about 166 ms each).

    python -m bench.gpu.kit_vits_batched [--out FILE.json]          # on the GPU
    python -m bench.gpu.kit_vits_batched --cpu [--out FILE.json]    # tiny model, CPU:
                                                                    # the plumbing, quickly

On the CPU, ``graphs`` and ``on`` compile nothing (``auto`` is eager there): they match
``off`` and ``batched``. Prints the JSON, and writes it to ``--out`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.trace import NoOpTracer

from bench.load import drive
from bench.tts_ttfa import TEXTS, native_spec
from devtools.builders.tiny_vits import build_vits
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines.coqui import CoquiEngine
from services.tts.engines.vits_runner import VitsRequest
from services.tts.synthesis import SpeechStreamer

CONFIGS = {
    # name: (batched, compiled)
    "off": (False, False),
    "batched": (True, False),
    "graphs": (False, True),
    "on": (True, True),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny model on the CPU, few requests")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument(
        "--requests-per-client", type=int, default=0, help="0: 2 on the GPU, 1 on the CPU"
    )
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--compile", default="auto", help="the compiled configs' mode")
    parser.add_argument("--token-buckets", default="64,128,256")
    parser.add_argument("--frame-buckets", default="256,512,1024")
    parser.add_argument("--half", choices=["on", "off"], default="on")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="per request")
    return parser.parse_args(argv)


async def measure(
    engine: CoquiEngine, workers: int, concurrency: int, requests: int, timeout_s: float
) -> dict[str, object]:
    """``requests`` streams of the long text over ``concurrency`` clients, in-process."""
    scheduler = EngineScheduler(workers)
    streamer = SpeechStreamer(engine, scheduler, NoOpTracer())
    spec = native_spec(engine, TEXTS["long"])

    async def call() -> float | None:
        started, first = time.perf_counter(), None
        async with asyncio.timeout(timeout_s):
            async for _chunk in streamer.stream(spec):
                if first is None:
                    first = time.perf_counter() - started
        return first

    try:
        return (await drive(call, concurrency, requests)).summary()
    finally:
        scheduler.shutdown()
        await asyncio.to_thread(scheduler.join, 10.0)


def load_engine(
    make: Callable[[bool], CoquiEngine], half: bool, device: str, result: dict[str, object]
) -> CoquiEngine:
    """``make(half)`` loaded and warmed up (graphs captured), its time and precision noted
    in ``result``; if random weights overflow in float16, made again in float32."""
    for attempt in ("as asked", "half precision off"):
        engine = make(half)
        started = time.perf_counter()
        engine.load()
        try:
            engine.warm_up()
        except RuntimeError as error:
            engine.close()
            if not half or attempt != "as asked":
                raise
            # Random weights may overflow in float16: the rest runs in float32.
            result["half_precision_refused"] = str(error)
            half = False
            continue
        result.update(
            warm_up_s=round(time.perf_counter() - started, 2),
            half_precision=half and device.startswith("cuda"),
        )
        return engine
    raise AssertionError("unreachable: the second attempt returns or raises")


def run_config(
    name: str, folder: Path, device: str, args: argparse.Namespace, requests_per_client: int
) -> dict[str, object]:
    """Load the engine as the config asks, warm it up, measure every concurrency."""
    batched, compiled = CONFIGS[name]
    max_batch = args.max_batch if batched else 1
    batch_sizes: collections.Counter[int] = collections.Counter()

    def count(requests: Sequence[VitsRequest]) -> None:
        batch_sizes[len(requests)] += 1

    result: dict[str, object] = {"max_batch": max_batch}

    def make(half: bool) -> CoquiEngine:
        return CoquiEngine(
            str(folder),
            device=device,
            half_precision=half,
            max_batch=max_batch,
            batch_window_ms=args.window_ms,
            compile_mode=args.compile if compiled else "off",
            token_buckets=args.token_buckets,
            frame_buckets=args.frame_buckets,
            on_batch=count,
        )

    engine = load_engine(make, args.half == "on", device, result)
    result["compile_mode"] = engine.compile_mode
    # Enough engine threads per copy for a batch to gather while the last one runs.
    workers = 2 * max_batch if batched else 1
    try:
        for concurrency in args.concurrency:
            batch_sizes.clear()
            figures = asyncio.run(
                measure(
                    engine, workers, concurrency, concurrency * requests_per_client, args.timeout_s
                )
            )
            figures["batch_sizes"] = dict(sorted(batch_sizes.items()))
            result[f"c{concurrency}"] = figures
            print(
                f"[vits {name}] c{concurrency}: {json.dumps(figures)}", file=sys.stderr, flush=True
            )
    finally:
        engine.close()
    result.update(cuda_memory())
    return result


def cuda_memory() -> dict[str, object]:
    """The peak GPU memory since the last reset (reset for the next config), on CUDA."""
    import torch

    if not torch.cuda.is_available():
        return {}
    figures: dict[str, object] = {
        "max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "max_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
    }
    torch.cuda.reset_peak_memory_stats()
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    """Run every config, print the JSON (and write it to ``--out``)."""
    args = parse_args(argv)
    import torch

    device = "cpu" if args.cpu else "cuda"
    size = "tiny" if args.cpu else "base"
    requests_per_client = args.requests_per_client or (1 if args.cpu else 2)
    report: dict[str, Any] = {
        "benchmark": "kit_vits_batched",
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "vits_size": size,
        "text": "long",
        "requests_per_client": requests_per_client,
        "window_ms": args.window_ms,
        "token_buckets": args.token_buckets,
        "frame_buckets": args.frame_buckets,
        "configs": {},
    }
    if args.cpu:
        report["note"] = (
            "tiny model on the CPU: the plumbing, not the speed; compile auto is off on the "
            "CPU, so graphs runs as off and on as batched"
        )
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_vits(Path(scratch) / f"vits-{size}", size=size)
        for name in args.configs:
            started = time.perf_counter()
            try:
                figures = run_config(name, folder, device, args, requests_per_client)
            except Exception as error:  # one config failing leaves the others
                figures = {"error": f"{type(error).__name__}: {error}"}
            figures["wall_s"] = round(time.perf_counter() - started, 1)
            report["configs"][name] = figures
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
