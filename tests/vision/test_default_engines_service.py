"""The default engines (mediapipe detector, selfie matte) over a real gRPC channel: odd
images, a photo of two people, the focus box, missing model files, and the older engines
still chosen by name."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image as PilImage

from devtools.builders.photos import (
    BACKGROUND,
    FACE,
    PERSON,
    TORSO,
    TWO_APART,
    astronaut,
    mask,
    two_apart,
)
from services.vision.engines.selfie_segmenter import MODEL
from services.vision.server import VisionService
from services.vision.settings import MEDIAPIPE_MODELS, VisionSettings
from tests.support.service_harness import server_starter
from tests.vision.harness import VisionServer, decode_png, jpeg

pytestmark = pytest.mark.asyncio(loop_scope="module")


def png(picture: PilImage.Image) -> bytes:
    """``picture`` as PNG bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def plain(width: int, height: int) -> bytes:
    """A flat RGB PNG."""
    return png(PilImage.new("RGB", (width, height), (120, 140, 160)))


def huge() -> bytes:
    """The astronaut at 4800x4000 (19.2 MP, under the fixture's 20 MP limit)."""
    return jpeg(cv2.resize(astronaut(), (4800, 4000), interpolation=cv2.INTER_LINEAR), 80)


def grey() -> bytes:
    """The astronaut as an 8-bit greyscale PNG."""
    return png(PilImage.fromarray(astronaut()).convert("L"))


def rgba() -> bytes:
    """The astronaut as an RGBA PNG, half transparent on the left."""
    picture = PilImage.fromarray(astronaut()).convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :256] = 128
    picture.putalpha(PilImage.fromarray(alpha))
    return png(picture)


def sixteen_bit() -> bytes:
    """A 16-bit greyscale PNG (read at 8 bits)."""
    return png(PilImage.fromarray(np.full((32, 32), 40000, np.uint16)))


ODD_IMAGES: dict[str, tuple[Callable[[], bytes], tuple[int, int]]] = {
    "1x1": (lambda: plain(1, 1), (1, 1)),
    "2x2": (lambda: plain(2, 2), (2, 2)),
    "8x8": (lambda: plain(8, 8), (8, 8)),
    "1x600 strip": (lambda: plain(600, 1), (600, 1)),
    "huge": (huge, (4800, 4000)),
    "grey": (grey, (512, 512)),
    "rgba": (rgba, (512, 512)),
    "16-bit grey": (sixteen_bit, (32, 32)),
}


@pytest.mark.parametrize("name", list(ODD_IMAGES))
async def test_odd_images_are_cut_out(vision: VisionServer, name: str) -> None:
    make, (width, height) = ODD_IMAGES[name]
    image = make()

    # A huge photo's cut-out PNGs pass the client's default 4 MB limit on what it receives
    # (the server's own limit is CHORUS_MAX_MESSAGE_BYTES, 16 MB).
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{vision.running.port}",
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    ) as channel:
        stub = vision_pb2_grpc.VisionStub(channel)
        removed = await stub.RemoveBackground(
            vision_pb2.RemoveBackgroundRequest(image=image), timeout=60
        )
        portrait = await stub.Portrait(vision_pb2.PortraitRequest(image=image), timeout=60)

    for response in (removed, portrait):
        assert (response.image_size.width, response.image_size.height) == (width, height)
        assert decode_png(response.cutout_png).shape[2] == 4
    assert decode_png(removed.alpha_png).shape == (height, width)
    crop = portrait.crop
    assert 0 <= crop.x_min < crop.x_max <= width
    assert 0 <= crop.y_min < crop.y_max <= height
    crop_size = (crop.y_max - crop.y_min, crop.x_max - crop.x_min)
    assert decode_png(portrait.alpha_png).shape == crop_size
    assert decode_png(portrait.cutout_png).shape[:2] == crop_size


async def test_a_grey_portrait_is_cut_out(vision: VisionServer) -> None:
    response = await vision.stub.RemoveBackground(
        vision_pb2.RemoveBackgroundRequest(image=grey()), timeout=30
    )

    alpha = decode_png(response.alpha_png) / 255
    assert response.engine == "selfie"
    assert float(alpha[mask((FACE, TORSO), 512, 512)].mean()) > 0.9
    assert float(alpha[mask(BACKGROUND, 512, 512)].mean()) < 0.1


async def test_both_people_are_detected_and_the_portrait_keeps_one(vision: VisionServer) -> None:
    photo = jpeg(two_apart())
    height, width = 560, 1100

    detected = await vision.stub.DetectPersons(
        vision_pb2.DetectPersonsRequest(image=photo, score_threshold=0.5), timeout=30
    )
    portrait = await vision.stub.Portrait(vision_pb2.PortraitRequest(image=photo), timeout=30)

    # One box each side of the gap between them (x 480 to 620).
    assert len(detected.detections) == 2
    first, second = sorted(detected.detections, key=lambda d: d.box.x_min)
    assert first.box.x_max < 550 < second.box.x_min
    # The portrait is of one of them, with the other removed.
    subject = 0 if portrait.person.box.x_max < 550 else 1
    other = TWO_APART[1 - subject]
    crop = portrait.crop
    alpha = np.zeros((height, width))
    alpha[int(crop.y_min) : int(crop.y_max), int(crop.x_min) : int(crop.x_max)] = (
        decode_png(portrait.alpha_png) / 255
    )
    assert float(alpha[mask((TWO_APART[subject].polygon(FACE),), height, width)].mean()) > 0.9
    assert float(alpha[mask((other.polygon(PERSON),), height, width)].max()) == 0.0


async def test_the_focus_box_picks_the_person(vision: VisionServer) -> None:
    height, width = 560, 1100
    left, right = TWO_APART
    box = right.box()

    response = await vision.stub.RemoveBackground(
        vision_pb2.RemoveBackgroundRequest(
            image=jpeg(two_apart()),
            focus=vision_pb2.Box(
                x_min=box.x_min, y_min=box.y_min, x_max=box.x_max, y_max=box.y_max
            ),
        ),
        timeout=30,
    )

    alpha = decode_png(response.alpha_png) / 255
    assert (
        float(alpha[mask((right.polygon(FACE), right.polygon(TORSO)), height, width)].mean()) > 0.9
    )
    assert float(alpha[mask((left.polygon(PERSON),), height, width)].max()) == 0.0


async def test_missing_mediapipe_models_fail_readiness_naming_the_file(tmp_path: Path) -> None:
    settings = VisionSettings(host="127.0.0.1", port=0, mediapipe_models=str(tmp_path))
    async with server_starter(VisionServer) as start:
        server = await start(lambda telemetry: VisionService(settings, telemetry), settings, False)
        assert not await server.running.load_service()
        health = health_pb2_grpc.HealthStub(server.channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await server.stub.RemoveBackground(
                vision_pb2.RemoveBackgroundRequest(image=jpeg(astronaut()))
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        details = raised.value.details() or ""
        assert str(tmp_path) in details
        assert "CHORUS_MEDIAPIPE_MODELS" in details


async def test_a_missing_selfie_model_alone_is_named(tmp_path: Path) -> None:
    """With the face model present, the missing segmentation model is the one named."""
    face_model = "face_detection_short_range.tflite"
    (tmp_path / face_model).symlink_to(MEDIAPIPE_MODELS / face_model)
    settings = VisionSettings(host="127.0.0.1", port=0, mediapipe_models=str(tmp_path))
    async with server_starter(VisionServer) as start:
        server = await start(lambda telemetry: VisionService(settings, telemetry), settings, False)
        assert not await server.running.load_service()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await server.stub.DetectPersons(
                vision_pb2.DetectPersonsRequest(image=jpeg(astronaut()))
            )
        assert str(tmp_path / MODEL) in (raised.value.details() or "")


@pytest.mark.parametrize(("detector", "matting"), [("opencv", "grabcut"), ("mediapipe", "grabcut")])
async def test_other_engines_are_chosen_by_name(detector: str, matting: str) -> None:
    settings = VisionSettings(host="127.0.0.1", port=0, detector=detector, matting=matting)
    async with server_starter(VisionServer) as start:
        server = await start(lambda telemetry: VisionService(settings, telemetry), settings, True)
        photo = jpeg(astronaut())
        detected = await server.stub.DetectPersons(vision_pb2.DetectPersonsRequest(image=photo))
        matted = await server.stub.RemoveBackground(
            vision_pb2.RemoveBackgroundRequest(image=photo), timeout=30
        )
    assert detected.engine == detector
    assert matted.engine == matting
    assert detected.detections
