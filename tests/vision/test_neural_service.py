"""The vision service with its neural engines (YOLO, BiRefNet) over real gRPC, on models
the tests build: YOLO11n from its yaml and an ONNX net with BiRefNet's shapes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from chorus.vision.v1 import vision_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.builders.tiny_vision_models import build_birefnet_like_onnx, build_yolo_pt
from services.common.telemetry import Telemetry
from services.vision.server import VisionService
from services.vision.settings import BATCH_DEFAULTS, VisionSettings
from tests.support.service_harness import server_starter
from tests.support.waiting import WAIT_S
from tests.vision.harness import VisionServer, astronaut, decode_png, jpeg

pytestmark = pytest.mark.asyncio(loop_scope="module")


BATCH = 4
"""Images per batch on the batching server: the test sends exactly this many at once."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A YOLO (.pt) and a BiRefNet-shaped ONNX net, built once for the module's servers."""
    folder = tmp_path_factory.mktemp("models")
    return build_yolo_pt(folder), build_birefnet_like_onnx(folder / "birefnet.onnx")


def neural_settings(models: tuple[Path, Path], **overrides: Any) -> VisionSettings:
    """YOLO and BiRefNet on the CPU, with detection batching forced on."""
    yolo, birefnet = models
    settings = VisionSettings(
        host="127.0.0.1",
        port=0,
        detector="yolo",
        matting="birefnet",
        yolo_model=str(yolo),
        birefnet_model=str(birefnet),
        device="cpu",
        batching="on",
        batch_wait_ms=20,
    )
    return dataclasses.replace(settings, **overrides)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def neural(models: tuple[Path, Path]) -> AsyncIterator[VisionServer]:
    """YOLO (from a .pt) and BiRefNet (ONNX) on the CPU, with detection batching forced on."""
    settings = neural_settings(models)
    async with server_starter(VisionServer) as start:
        yield await start(lambda telemetry: VisionService(settings, telemetry), settings, True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def batching(models: tuple[Path, Path]) -> AsyncIterator[VisionServer]:
    """The same models, batching ``BATCH`` images and waiting for company far longer than
    any test would: requests that arrive together are batched however slowly they come."""
    settings = neural_settings(models, batch_max=BATCH, batch_wait_ms=WAIT_S * 1000)
    async with server_starter(VisionServer) as start:
        yield await start(lambda telemetry: VisionService(settings, telemetry), settings, True)


async def test_yolo_detects_over_grpc(neural: VisionServer) -> None:
    response = await neural.stub.DetectPersons(
        vision_pb2.DetectPersonsRequest(image=jpeg(astronaut()), max_detections=3), timeout=30
    )
    assert response.engine == "yolo"
    assert 0 < len(response.detections) <= 3
    for detection in response.detections:
        assert detection.label == "person"
        assert 0 <= detection.box.x_min < detection.box.x_max <= 512
        assert 0 <= detection.box.y_min < detection.box.y_max <= 512


async def test_requests_arriving_together_are_batched(
    neural: VisionServer, batching: VisionServer
) -> None:
    assert batching.service.batcher is not None
    images = [jpeg(astronaut()[i * 10 :, :].copy()) for i in range(BATCH)]
    requests = [vision_pb2.DetectPersonsRequest(image=image) for image in images]
    together = await asyncio.gather(*(batching.stub.DetectPersons(r) for r in requests))
    # They fill one batch, which goes as soon as it is full: one model call for all four.
    assert batching.service.batcher.batch_sizes == [BATCH]
    # One at a time on the other server (same model files), under another cache key: the
    # batch's own cap, asked explicitly.
    alone = [
        await neural.stub.DetectPersons(
            vision_pb2.DetectPersonsRequest(image=image, max_detections=1000)
        )
        for image in images
    ]
    assert not any(r.cache_hit for r in alone)
    # Random weights give many boxes of equal score, whose order is arbitrary.
    assert [canonical(r) for r in alone] == [canonical(r) for r in together]


async def test_a_batch_answers_each_request_with_its_own_image_threshold_and_limit(
    neural: VisionServer, batching: VisionServer
) -> None:
    assert batching.service.batcher is not None
    before = len(batching.service.batcher.batch_sizes)
    images = [jpeg(astronaut()[:, i * 7 :].copy()) for i in range(BATCH)]
    # The tiny YOLO scores every box 0.5: 0.6 finds nothing, the others find many, cut
    # to each request's own limit (1000 is the engine's cap on "all").
    asked = [(0.0, 2), (0.6, 0), (0.3, 5), (0.4, 1000)]
    requests = [
        vision_pb2.DetectPersonsRequest(image=image, score_threshold=t, max_detections=n)
        for image, (t, n) in zip(images, asked, strict=True)
    ]
    together = await asyncio.gather(*(batching.stub.DetectPersons(r) for r in requests))
    assert batching.service.batcher.batch_sizes[before:] == [BATCH]
    assert [len(r.detections) for r in together] == [2, 0, 5, 1000]
    # Each answer is what its request gets alone (on the other server, one at a time).
    alone = [await neural.stub.DetectPersons(r) for r in requests]
    assert not any(r.cache_hit for r in [*alone, *together])
    assert [canonical(r) for r in alone] == [canonical(r) for r in together]
    # Traces and metrics say how large the batch was.
    sizes = [
        span.attributes.get("chorus.vision.batch_size")
        for span in batching.finished_spans("vision.detect")
        if span.attributes is not None
    ]
    assert sizes[-BATCH:] == [BATCH] * BATCH
    (histogram,) = batching.metric_points("chorus.vision.batch_size")
    assert histogram.count == len(batching.service.batcher.batch_sizes)
    assert histogram.max == BATCH


async def test_batching_follows_the_settings_and_the_device_defaults(
    models: tuple[Path, Path],
) -> None:
    cpu = BATCH_DEFAULTS["cpu"]
    explicit = neural_settings(models, batch_max=6, batch_wait_ms=3.0, batch_in_flight=2)
    defaults = neural_settings(models, batch_max=None, batch_wait_ms=None)
    off = neural_settings(models, batching="off")
    async with server_starter(VisionServer) as start:
        for settings, policy in (
            (explicit, (6, 0.003, 2)),
            (defaults, (cpu.max_batch, cpu.window_ms / 1000, 1)),
        ):
            server = await start(building(settings), settings, False)
            made = server.service.batcher
            assert made is not None
            assert (made.max_batch, made.window_s, made.max_in_flight) == policy
        server = await start(building(off), off, False)
        assert server.service.batcher is None


def building(settings: VisionSettings) -> Callable[[Telemetry], VisionService]:
    """What builds a vision server with ``settings`` (the server harness calls it)."""
    return lambda telemetry: VisionService(settings, telemetry)


def canonical(response: vision_pb2.DetectPersonsResponse) -> list[tuple[float, ...]]:
    return sorted(
        (round(d.score, 4), round(d.box.x_min), round(d.box.y_min), round(d.box.x_max),
         round(d.box.y_max))
        for d in response.detections
    )  # fmt: skip


async def test_birefnet_mattes_over_grpc(neural: VisionServer) -> None:
    response = await neural.stub.RemoveBackground(
        vision_pb2.RemoveBackgroundRequest(image=jpeg(astronaut())), timeout=30
    )
    assert response.engine == "birefnet"
    alpha = decode_png(response.alpha_png)
    assert alpha.shape == (512, 512)
    assert alpha.min() < alpha.max()


async def test_portrait_with_neural_engines(neural: VisionServer) -> None:
    response = await neural.stub.Portrait(vision_pb2.PortraitRequest(image=jpeg(astronaut())))
    assert response.HasField("person")
    cutout = decode_png(response.cutout_png)
    crop = response.crop
    assert cutout.shape == (int(crop.y_max - crop.y_min), int(crop.x_max - crop.x_min), 4)


async def test_a_missing_model_file_fails_readiness_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "yolo11n.pt"
    settings = VisionSettings(
        host="127.0.0.1", port=0, detector="yolo", yolo_model=str(missing), device="cpu"
    )
    async with server_starter(VisionServer) as start:
        server = await start(lambda telemetry: VisionService(settings, telemetry), settings, False)
        assert not await server.running.load_service()
        health = health_pb2_grpc.HealthStub(server.channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await server.stub.DetectPersons(
                vision_pb2.DetectPersonsRequest(image=jpeg(astronaut()))
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert str(missing) in (raised.value.details() or "")
        assert "CHORUS_YOLO_MODEL" in (raised.value.details() or "")
