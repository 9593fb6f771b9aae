"""Vision benchmark: DetectPersons and RemoveBackground latency per engine, as JSON.

For each engine pair the vision server runs in a child process (cache off) and is driven
at concurrency 1 and 4 with scikit-image's astronaut photo (512x512 JPEG); the baseline
is the same engine called in this process, without gRPC. Engine pairs:
- opencv + grabcut: the weight-free defaults;
- yolo + birefnet: a YOLO11n built from its yaml (random weights: real size, real speed)
  and an ONNX model with BiRefNet's input and output shapes (1x3x1024x1024 in, 1x1x1024x1024
  out) but a tiny graph, so its figure is the pipeline around BiRefNet, not BiRefNet.

    python -m bench.vision [--requests 30] [--device auto]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from PIL import Image as PilImage
from skimage import data

from bench.load import drive
from bench.report import print_report
from bench.stats import percentiles_ms
from services.common.launcher import ServiceProcess
from services.vision.engines import create_detector, create_matting
from services.vision.engines.base import MattingModel, PersonDetector
from services.vision.settings import VisionSettings
from tests.vision.tiny_models import build_birefnet_like_onnx, build_yolo_pt


def astronaut_jpeg() -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def in_process(detector: PersonDetector, matting: MattingModel, requests: int) -> dict[str, object]:
    """The engines called directly on the decoded photo: the baseline."""
    image = np.asarray(data.astronaut(), dtype=np.uint8)
    figures: dict[str, object] = {}
    for name, call in (
        ("detect", lambda: detector.detect(image, 0.25, 0)),
        ("matte", lambda: matting.matte(image, None)),
    ):
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - started)
        figures[name] = {"requests": requests, "latency_ms": percentiles_ms(latencies)}
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
    figures: dict[str, object] = {"in_process": in_process(detector, matting, requests)}

    photo = astronaut_jpeg()
    async with (
        ServiceProcess(
            "services.vision",
            env={**env, "CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING"},
        ) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = vision_pb2_grpc.VisionStub(channel)

        async def detect() -> None:
            await stub.DetectPersons(vision_pb2.DetectPersonsRequest(image=photo), timeout=60)

        async def matte() -> None:
            await stub.RemoveBackground(vision_pb2.RemoveBackgroundRequest(image=photo), timeout=60)

        calls = {"detect": detect, "matte": matte}
        for name, call in calls.items():
            await drive(call, 1, 2)  # connection and first-call warm-up
            for level in (1, 4):
                figures[f"grpc_{name}_c{level}"] = (await drive(call, level, requests)).summary()
    return figures


async def run(requests: int, device: str) -> dict[str, object]:
    """Every engine pair; returns the JSON document's figures."""
    results: dict[str, object] = {
        "opencv+grabcut": await engine_pair(
            {"CHORUS_DETECTOR": "opencv", "CHORUS_MATTING": "grabcut"}, requests
        )
    }
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
    args = parser.parse_args(argv)
    print_report(
        "vision",
        {
            "image": "skimage astronaut, 512x512 JPEG",
            **asyncio.run(run(args.requests, args.device)),
        },
    )


if __name__ == "__main__":
    main()
