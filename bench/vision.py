"""Vision benchmark: DetectPersons, RemoveBackground and Portrait latency per engine pair,
and how many of the people in built photos each detector finds, as JSON.

For each engine pair the vision server runs in a child process (cache off) and is driven
at concurrency 1 and 4 with each photo: scikit-image's astronaut (512x512 JPEG) and a
larger one (1280x960 JPEG, two people cut off by the frame's bottom); the baseline is the
same engines called in this process, without gRPC. Engine pairs:
- mediapipe + selfie: the defaults (MediaPipe's models, from the pinned wheel);
- opencv + grabcut: the previous defaults, only what ships in OpenCV;
- yolo + birefnet: a YOLO11n built from its yaml (random weights: real size, real speed)
  and an ONNX model with BiRefNet's input and output shapes (1x3x1024x1024 in, 1x1x1024x1024
  out) but a tiny graph, so its figure is the pipeline around BiRefNet, not BiRefNet.

Recall: for the weight-free detectors, on photos built from the astronaut with known people
(two apart, two touching, four in a row), the share of people with a box of their own
(``devtools.builders.photos.finds``) and the boxes found, at score thresholds 0.5 and 0.25.

    python -m bench.vision [--requests 30] [--device auto] [--engines mediapipe+selfie ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from PIL import Image as PilImage

from bench.load import drive
from bench.report import print_report
from bench.stats import percentiles_ms
from devtools.builders.photos import (
    FOUR_IN_A_ROW,
    TWO_APART,
    TWO_TOUCHING,
    Placed,
    astronaut,
    build,
    finds,
    four_in_a_row,
    two_apart,
    two_touching,
)
from devtools.builders.tiny_vision_models import build_birefnet_like_onnx, build_yolo_pt
from devtools.launcher import ServiceProcess
from services.vision.engines import create_detector, create_matting
from services.vision.engines.base import Image, MattingModel, PersonDetector
from services.vision.settings import VisionSettings

LARGE_PEOPLE = (Placed(0, 320, 640, False), Placed(640, 320, 640, True))
PHOTOS: dict[str, Callable[[], Image]] = {
    "astronaut 512x512": astronaut,
    "two people 1280x960": lambda: build(1280, 960, LARGE_PEOPLE),
}
PEOPLE: dict[str, tuple[Callable[[], Image], tuple[Placed, ...]]] = {
    "two apart 1100x560": (two_apart, TWO_APART),
    "two touching 1024x512": (two_touching, TWO_TOUCHING),
    "four in a row 1280x400": (four_in_a_row, FOUR_IN_A_ROW),
}
RECALL_THRESHOLDS = (0.5, 0.25)


def jpeg(image: Image) -> bytes:
    """``image`` as a JPEG at quality 90."""
    buffer = io.BytesIO()
    PilImage.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def timed(call: Callable[[], object], requests: int) -> dict[str, object]:
    """Latency percentiles of ``requests`` calls made one after another."""
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return {"requests": requests, "latency_ms": percentiles_ms(latencies)}


def in_process(
    detector: PersonDetector, matting: MattingModel, image: Image, requests: int
) -> dict[str, object]:
    """The engines called directly on the decoded photo: the baseline."""
    return {
        "detect": timed(lambda: detector.detect(image, 0.25, 0), requests),
        "matte": timed(lambda: matting.matte(image, None), requests),
    }


async def detect(stub: vision_pb2_grpc.VisionAsyncStub, image: bytes) -> None:
    """One DetectPersons call."""
    await stub.DetectPersons(vision_pb2.DetectPersonsRequest(image=image), timeout=60)


async def remove_background(stub: vision_pb2_grpc.VisionAsyncStub, image: bytes) -> None:
    """One RemoveBackground call."""
    await stub.RemoveBackground(vision_pb2.RemoveBackgroundRequest(image=image), timeout=60)


async def portrait(stub: vision_pb2_grpc.VisionAsyncStub, image: bytes) -> None:
    """One Portrait call."""
    await stub.Portrait(vision_pb2.PortraitRequest(image=image), timeout=60)


CALLS = {"detect": detect, "remove_background": remove_background, "portrait": portrait}


def recall(detector: PersonDetector) -> dict[str, dict[str, object]]:
    """Per built photo and threshold: the share of its people found with a box of their
    own, and how many boxes there were."""
    figures: dict[str, dict[str, object]] = {}
    for name, (photo, people) in PEOPLE.items():
        image = photo()
        by_threshold: dict[str, object] = {}
        for threshold in RECALL_THRESHOLDS:
            found = detector.detect(image, threshold, 0)
            hits = sum(any(finds(d, placed, people) for d in found) for placed in people)
            by_threshold[f"threshold_{threshold}"] = {
                "people": len(people),
                "found": hits,
                "recall": round(hits / len(people), 3),
                "boxes": len(found),
            }
        figures[name] = by_threshold
    return figures


async def engine_pair(env: dict[str, str], requests: int) -> dict[str, object]:
    """Baseline and gRPC figures for one detector + matting configuration."""
    settings = VisionSettings(
        detector=env["CHORUS_DETECTOR"],
        matting=env["CHORUS_MATTING"],
        yolo_model=env.get("CHORUS_YOLO_MODEL", ""),
        birefnet_model=env.get("CHORUS_BIREFNET_MODEL", ""),
        device=env.get("CHORUS_DEVICE", "auto"),
    )
    detector = create_detector(settings)
    matting = create_matting(settings, detector)
    for model in (detector, matting):
        model.load()
        model.warm_up()
    figures: dict[str, dict[str, object]] = {
        name: {"in_process": in_process(detector, matting, photo(), requests)}
        for name, photo in PHOTOS.items()
    }
    async with (
        ServiceProcess(
            "services.vision",
            env={**env, "CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING"},
        ) as server,
        # The larger photo's cut-out PNGs pass gRPC's default 4 MB limit on receiving.
        grpc.aio.insecure_channel(
            server.address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        ) as channel,
    ):
        stub = vision_pb2_grpc.VisionStub(channel)
        for name, photo in PHOTOS.items():
            encoded = jpeg(photo())
            for call_name, call in CALLS.items():
                once = functools.partial(call, stub, encoded)
                await drive(once, 1, 2)  # connection and first-call warm-up
                for level in (1, 4):
                    figures[name][f"grpc_{call_name}_c{level}"] = (
                        await drive(once, level, requests)
                    ).summary()
    report: dict[str, object] = dict(figures)
    if settings.detector in ("mediapipe", "opencv"):
        report["recall"] = recall(detector)
    return report


ENGINES = ("mediapipe+selfie", "opencv+grabcut", "yolo+birefnet")


async def run(requests: int, device: str, engines: Sequence[str]) -> dict[str, object]:
    """The ``engines`` pairs; returns the JSON document's figures."""
    results: dict[str, object] = {}
    for pair in ("mediapipe+selfie", "opencv+grabcut"):
        if pair in engines:
            detector, matting = pair.split("+")
            results[pair] = await engine_pair(
                {"CHORUS_DETECTOR": detector, "CHORUS_MATTING": matting}, requests
            )
    if "yolo+birefnet" not in engines:
        return results
    with tempfile.TemporaryDirectory() as folder:
        # ultralytics prints while it builds; stdout is for the JSON alone.
        with contextlib.redirect_stdout(sys.stderr):
            yolo = build_yolo_pt(Path(folder))
            birefnet = build_birefnet_like_onnx(Path(folder) / "birefnet-shaped.onnx")
        results["yolo11n+birefnet-shaped"] = await engine_pair(
            {
                "CHORUS_DETECTOR": "yolo",
                "CHORUS_MATTING": "birefnet",
                "CHORUS_YOLO_MODEL": str(yolo),
                "CHORUS_BIREFNET_MODEL": str(birefnet),
                "CHORUS_DEVICE": device,
                "YOLO_OFFLINE": "1",
                "YOLO_CONFIG_DIR": folder,
            },
            requests,
        )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per scenario")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument(
        "--engines", nargs="+", choices=ENGINES, default=ENGINES, help="engine pairs to run"
    )
    args = parser.parse_args(argv)
    print_report(
        "vision",
        {
            "photos": "JPEG at quality 90, server cache off",
            **asyncio.run(run(args.requests, args.device, args.engines)),
        },
    )


if __name__ == "__main__":
    main()
