"""Vision batching: what a batch of n images costs the detector, and what the vision server
answers under load with its batcher at the old settings and the new ones, as JSON.

1. The cost curve: the YOLO engine's model call (``detect_prepared``: the network and its
   suppression, what one batch holds the device for) on n letterboxed copies of the
   astronaut, n = 1, 2, 4, ... 32, in this process, at most five people an image:
   median and per-image milliseconds.
2. The server: the vision server in a child process (YOLO, cache off), DetectPersons on
   the astronaut JPEG at concurrency 1, 8 and 32, for each configuration (one server
   each, side by side, taking turns at each level):
   - ``old``: the batcher as it was: batches of up to 8 within 2 ms, any number of them
     running at once (``CHORUS_BATCH_IN_FLIGHT`` 64, more than the clients);
   - ``new``: the device's defaults (``services.vision.settings.BATCH_DEFAULTS``);
   - ``off``: no batching, each request its own model call.
   Latency p50/p95/p99, images per second, and the sizes of the batches run, read from
   the server's ``chorus.vision.batch_size`` histogram (one bucket per size) on its
   Prometheus endpoint before and after each level. Requests ask for at most five
   people (``MAX_DETECTIONS``).

The YOLO has random weights (weights cannot be downloaded here): real size, real cost.

    python -m bench.vision_batch_curve [--device auto] [--scale n] [--image-size 640]
        [--batches 1 2 4 8 16 32] [--levels 1 8 32] [--requests 8 32 64]
        [--configs old new off]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.load import drive
from bench.report import print_report
from bench.vision import jpeg
from devtools.builders.photos import astronaut
from devtools.builders.tiny_vision_models import YOLO_NAMES, build_yolo_pt
from devtools.launcher import ServiceProcess, free_port
from services.common.devices import torch_cuda_available
from services.vision.engines.yolo import PERSON, YoloPersonDetector, offline_ultralytics
from services.vision.settings import BATCH_DEFAULTS

BATCH_METRIC = "chorus_vision_batch_size"
"""The batch size histogram as the Prometheus endpoint names it."""

MAX_DETECTIONS = 5
"""What the benchmark's requests ask for. A real detector finds a handful of people in a
portrait; this random one scores every box 0.5 and would send 1000 boxes an image, whose
Python objects and protobuf messages, not the model, would then be what is measured."""

CONFIGS: dict[str, dict[str, str]] = {
    "old": {
        "CHORUS_BATCHING": "on",
        "CHORUS_BATCH_MAX": "8",
        "CHORUS_BATCH_WAIT_MS": "2",
        "CHORUS_BATCH_IN_FLIGHT": "64",
    },
    "new": {"CHORUS_BATCHING": "on"},
    "off": {"CHORUS_BATCHING": "off"},
}
"""The server's batching settings in each configuration measured."""


def build_yolo(directory: Path, scale: str) -> Path:
    """A YOLO11 of ``scale`` (n, s, m, l, x) with random weights and the builders' classes
    (every box a 0.5 person), saved as ``.pt``; the builders' own YOLO11n for ``n``."""
    if scale == "n":
        return build_yolo_pt(directory)
    offline_ultralytics()
    import torch
    from ultralytics.models.yolo import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    yaml = f"yolo11{scale}.yaml"  # the file name picks the scale
    model = YOLO(yaml, task="detect")
    network: Any = DetectionModel(  # type: ignore[no-untyped-call]
        yaml, nc=len(YOLO_NAMES), verbose=False
    )
    network.names = dict(YOLO_NAMES)
    person = next(index for index, label in YOLO_NAMES.items() if label == PERSON)
    with torch.no_grad():
        for branch in network.model[-1].cv3:
            branch[-1].bias[person] = 0.0
    model.model = network
    path = directory / f"random-yolo11{scale}.pt"
    model.save(str(path))
    return path


def cost_curve(
    model: Path, device: str, image_size: int, batches: Sequence[int], repeats: int
) -> dict[str, object]:
    """Median and per-image milliseconds of one model call at each batch size."""
    detector = YoloPersonDetector(model, device=device, image_size=image_size)
    detector.load()
    detector.warm_up()
    prepared = detector.prepare(astronaut())
    figures: dict[str, object] = {"device": detector.runtime_device, "repeats": repeats}
    for size in batches:
        batch = [prepared] * size
        detector.detect_prepared(batch, 0.25, MAX_DETECTIONS)  # the first call at a size allocates
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            detector.detect_prepared(batch, 0.25, MAX_DETECTIONS)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        figures[f"batch_{size}"] = {
            "ms": round(1000 * median, 2),
            "ms_per_image": round(1000 * median / size, 2),
            "min_ms": round(1000 * min(times), 2),
        }
        print(f"[curve] batch {size}: {1000 * median:.1f} ms", file=sys.stderr, flush=True)
    detector.close()
    return figures


def batch_histogram(port: int) -> tuple[dict[int, int], float]:
    """The server's batch sizes so far, per size, and how many batches: from the
    cumulative buckets of its histogram (one per size; the last, +Inf, is the largest)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    cumulative: dict[float, float] = {}
    count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{BATCH_METRIC}_bucket":
                cumulative[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{BATCH_METRIC}_count":
                count = sample.value
    sizes: dict[int, int] = {}
    below = 0.0
    bounds = sorted(cumulative)
    for index, bound in enumerate(bounds):
        size = int(bound) if bound != float("inf") else int(bounds[index - 1]) + 1
        sizes[size] = int(cumulative[bound] - below)
        below = cumulative[bound]
    return sizes, count


def level_histogram(before: dict[int, int], after: dict[int, int]) -> dict[str, int]:
    """Batches of each size run between two scrapes (sizes that ran only)."""
    return {
        str(size): after[size] - before.get(size, 0)
        for size in sorted(after)
        if after[size] - before.get(size, 0)
    }


Watch = Callable[[], AbstractContextManager[dict[str, object]]]
"""Something else to measure while a level runs (the GPU kit's utilisation): a context
manager whose dictionary is filled in by the time it exits."""


@dataclass
class _Server:
    """A running server under measurement: its stub and its metrics port."""

    stub: vision_pb2_grpc.VisionAsyncStub
    metrics_port: int


async def server_figures(
    envs: Mapping[str, Mapping[str, str]],
    levels: Sequence[int],
    requests: Sequence[int],
    photo: bytes,
    watch: Watch | None = None,
) -> dict[str, dict[str, object]]:
    """Each server configuration's latency, throughput and batches at each level.

    The servers run side by side and take turns level by level, so that whatever else
    the machine does drifts over all of them alike, not over the last one run.
    """
    request = vision_pb2.DetectPersonsRequest(image=photo, max_detections=MAX_DETECTIONS)
    figures: dict[str, dict[str, object]] = {name: {} for name in envs}
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, _Server] = {}
        for name, env in envs.items():
            port = free_port()
            process = await stack.enter_async_context(
                ServiceProcess("services.vision", env={**env, "CHORUS_METRICS_PORT": str(port)})
            )
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(process.address))
            servers[name] = _Server(vision_pb2_grpc.VisionStub(channel), port)
        for server in servers.values():
            await level_figures(server, request, 1, 2, None)  # connection, first call
        for level, count in zip(levels, requests, strict=True):
            for name, server in servers.items():
                figures[name][f"c{level}"] = summary = await level_figures(
                    server, request, level, count, watch
                )
                print(f"[server {name}] c{level}: {summary}", file=sys.stderr, flush=True)
    return figures


async def level_figures(
    server: _Server,
    request: vision_pb2.DetectPersonsRequest,
    level: int,
    count: int,
    watch: Watch | None,
) -> dict[str, object]:
    """``count`` requests over ``level`` clients: latency, images/s, the batches run."""

    async def detect() -> None:
        await server.stub.DetectPersons(request, timeout=120)

    before, batches_before = await asyncio.to_thread(batch_histogram, server.metrics_port)
    with watch() if watch is not None else contextlib.nullcontext({}) as watched:
        load = await drive(detect, level, count)
    after, batches_after = await asyncio.to_thread(batch_histogram, server.metrics_port)
    summary = load.summary()
    summary.update(watched)
    summary["images_per_s"] = summary.pop("throughput_rps")
    batches = batches_after - batches_before
    if batches:
        summary["batches"] = int(batches)
        summary["mean_batch"] = round(len(load.latencies) / batches, 2)
        summary["batch_histogram"] = level_histogram(before, after)
    return summary


def server_env(model: Path, device: str, image_size: int, folder: str) -> dict[str, str]:
    """The vision server with the YOLO, nothing cached, every client's requests admitted."""
    return {
        "CHORUS_DETECTOR": "yolo",
        "CHORUS_YOLO_MODEL": str(model),
        "CHORUS_YOLO_IMAGE_SIZE": str(image_size),
        "CHORUS_DEVICE": device,
        "CHORUS_CACHE_MAX_BYTES": "0",
        "CHORUS_CALLER_SHARE": "1",
        "CHORUS_LOG_LEVEL": "WARNING",
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": folder,
    }


async def run(
    args: argparse.Namespace, folder: str, watch: Watch | None = None
) -> dict[str, object]:
    """Build the model, measure the curve, then each server configuration (``watch``
    measures something more during each level)."""
    started = time.perf_counter()
    # ultralytics prints while it builds; stdout is for the JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        model = build_yolo(Path(folder), args.scale)
    on_gpu = args.device != "cpu" and torch_cuda_available()
    defaults = BATCH_DEFAULTS["cuda" if on_gpu else "cpu"]
    results: dict[str, object] = {
        "model": f"yolo11{args.scale}, random weights, {args.image_size}x{args.image_size}",
        "photo": "skimage astronaut, 512x512 JPEG at quality 90",
        "request": f"DetectPersons, max_detections {MAX_DETECTIONS}, server cache off",
        "new_defaults": {"max_batch": defaults.max_batch, "window_ms": defaults.window_ms},
        "cost_curve": await asyncio.to_thread(
            functools.partial(
                cost_curve, model, args.device, args.image_size, args.batches, args.repeats
            )
        ),
    }
    env = server_env(model, args.device, args.image_size, folder)
    servers = await server_figures(
        {name: {**env, **CONFIGS[name]} for name in args.configs},
        args.levels,
        args.requests,
        jpeg(astronaut()),
        watch,
    )
    for name, figures in servers.items():
        results[f"server_{name}"] = {"settings": CONFIGS[name], **figures}
    results["wall_s"] = round(time.perf_counter() - started, 1)
    return results


def parser() -> argparse.ArgumentParser:
    """The benchmark's command line (the GPU kit adds to it)."""
    parse = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parse.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parse.add_argument("--scale", default="n", help="YOLO11 scale: n, s, m, l or x")
    parse.add_argument("--image-size", type=int, default=640, help="the network's input side")
    parse.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parse.add_argument("--repeats", type=int, default=3, help="timed calls per batch size")
    parse.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parse.add_argument(
        "--requests", type=int, nargs="+", default=[8, 32, 64], help="requests per level"
    )
    parse.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    return parse


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    args = parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vision-batch-") as folder:
        print_report("vision_batch_curve", asyncio.run(run(args, folder)))


if __name__ == "__main__":
    main()
