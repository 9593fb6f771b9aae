"""Vision over a real gRPC channel with the default engines (mediapipe, selfie), on real photos."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from chorus.vision.v1 import vision_pb2
from PIL import Image as PilImage

from tests.vision.crafted import (
    animation,
    apng_with_a_frame_larger_than_its_canvas,
    encoded,
    noise,
    png_claiming,
    truncated,
    with_size,
)
from tests.vision.harness import (
    FACE_CORE,
    PERSON,
    SUIT_CORE,
    WALL,
    VisionServer,
    astronaut,
    decode_png,
    jpeg,
    region_mean,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ASTRONAUT = jpeg(astronaut())


def overlap(box: vision_pb2.Box, region: tuple[int, int, int, int]) -> float:
    """Share of ``box`` inside ``region``."""
    x0, y0, x1, y1 = region
    width = max(0.0, min(box.x_max, x1) - max(box.x_min, x0))
    height = max(0.0, min(box.y_max, y1) - max(box.y_min, y0))
    area = (box.x_max - box.x_min) * (box.y_max - box.y_min)
    return width * height / area if area else 0.0


async def test_detects_the_astronaut(vision: VisionServer) -> None:
    response = await vision.stub.DetectPersons(
        vision_pb2.DetectPersonsRequest(image=ASTRONAUT), timeout=30
    )
    assert response.engine == "mediapipe"
    assert (response.image_size.width, response.image_size.height) == (512, 512)
    assert response.detections
    best = response.detections[0]
    assert best.label == "person"
    assert 0.0 < best.score <= 1.0
    assert overlap(best.box, PERSON) > 0.7
    scores = [d.score for d in response.detections]
    assert scores == sorted(scores, reverse=True)


async def test_threshold_and_limit_are_respected(vision: VisionServer) -> None:
    limited = await vision.stub.DetectPersons(
        vision_pb2.DetectPersonsRequest(image=ASTRONAUT, max_detections=1, score_threshold=0.01)
    )
    assert len(limited.detections) <= 1
    strict = await vision.stub.DetectPersons(
        vision_pb2.DetectPersonsRequest(image=ASTRONAUT, score_threshold=1.0)
    )
    assert all(d.score >= 1.0 for d in strict.detections)


async def test_removes_the_background(vision: VisionServer) -> None:
    response = await vision.stub.RemoveBackground(
        vision_pb2.RemoveBackgroundRequest(image=ASTRONAUT), timeout=30
    )
    alpha = decode_png(response.alpha_png)
    assert alpha.shape == (512, 512)
    assert region_mean(alpha, FACE_CORE) > 0.7
    assert region_mean(alpha, SUIT_CORE) > 0.7
    assert region_mean(alpha, WALL) < 0.3
    cutout = decode_png(response.cutout_png)
    assert cutout.shape == (512, 512, 4)
    np.testing.assert_array_equal(cutout[..., 3], alpha)


async def test_portrait_crops_the_person_with_the_background_removed(
    vision: VisionServer,
) -> None:
    response = await vision.stub.Portrait(vision_pb2.PortraitRequest(image=ASTRONAUT), timeout=30)
    assert response.HasField("person")
    assert overlap(response.person.box, PERSON) > 0.7
    crop = response.crop
    assert 0 <= crop.x_min < crop.x_max <= 512
    assert 0 <= crop.y_min < crop.y_max <= 512
    cutout = decode_png(response.cutout_png)
    assert cutout.shape == (int(crop.y_max - crop.y_min), int(crop.x_max - crop.x_min), 4)
    face = (
        FACE_CORE[0] - int(crop.x_min),
        FACE_CORE[1] - int(crop.y_min),
        FACE_CORE[2] - int(crop.x_min),
        FACE_CORE[3] - int(crop.y_min),
    )
    assert region_mean(cutout[..., 3], face) > 0.7


async def test_a_photo_without_people_gives_a_portrait_without_a_person(
    vision: VisionServer,
) -> None:
    wall = np.full((300, 400, 3), 180, np.uint8)
    response = await vision.stub.Portrait(vision_pb2.PortraitRequest(image=jpeg(wall)))
    assert not response.HasField("person")
    assert (response.crop.x_max, response.crop.y_max) == (400, 300)


async def test_a_huge_image_is_scaled_not_refused(vision: VisionServer) -> None:
    big = np.asarray(PilImage.fromarray(astronaut()).resize((3000, 3000)))
    response = await vision.stub.DetectPersons(
        vision_pb2.DetectPersonsRequest(image=jpeg(big)), timeout=60
    )
    assert (response.image_size.width, response.image_size.height) == (3000, 3000)
    scale = 3000 / 512
    big_person = tuple(int(v * scale) for v in PERSON)
    assert response.detections
    assert overlap(response.detections[0].box, big_person) > 0.7  # type: ignore[arg-type]


async def test_concurrent_requests_do_not_mix_results(vision: VisionServer) -> None:
    images = [
        ASTRONAUT,
        jpeg(astronaut()[:, ::-1].copy()),
        jpeg(np.full((256, 256, 3), 30, np.uint8)),
        jpeg(astronaut()[100:, 50:].copy()),
    ]
    requests = [
        vision_pb2.DetectPersonsRequest(image=image, score_threshold=0.01 + i / 1000)
        for i, image in enumerate(images)
    ]
    alone = [await vision.stub.DetectPersons(request) for request in requests]
    together = await asyncio.gather(*(vision.stub.DetectPersons(r) for r in requests * 3))
    for i, response in enumerate(together):
        expected = alone[i % len(requests)]
        assert list(response.detections) == list(expected.detections)
        assert response.image_size == expected.image_size


async def test_a_repeated_request_is_a_cache_hit(vision: VisionServer) -> None:
    request = vision_pb2.RemoveBackgroundRequest(
        image=ASTRONAUT, focus=vision_pb2.Box(x_min=100, y_min=0, x_max=400, y_max=512)
    )
    first = await vision.stub.RemoveBackground(request)
    second = await vision.stub.RemoveBackground(request)
    assert not first.cache_hit
    assert second.cache_hit
    assert second.alpha_png == first.alpha_png


async def test_stage_spans(vision: VisionServer) -> None:
    vision.spans.clear()
    await vision.stub.Portrait(vision_pb2.PortraitRequest(image=jpeg(astronaut()[::2, ::2].copy())))
    for name in ("vision.decode", "cache.get", "vision.detect", "vision.matte", "vision.encode"):
        assert len(vision.finished_spans(name)) == 1, name


def truncated_jpeg() -> bytes:
    return ASTRONAUT[: len(ASTRONAUT) // 3]


@pytest.mark.parametrize(
    ("call", "request_fields", "field_named"),
    [
        ("DetectPersons", {"image": b""}, "image"),
        ("DetectPersons", {"image": b"GIF89a not really"}, "image"),
        ("DetectPersons", {"image": truncated_jpeg()}, "image"),
        ("DetectPersons", {"image": ASTRONAUT, "score_threshold": 1.5}, "score_threshold"),
        ("DetectPersons", {"image": ASTRONAUT, "score_threshold": float("nan")}, "score_threshold"),
        ("DetectPersons", {"image": ASTRONAUT, "max_detections": -1}, "max_detections"),
        ("Portrait", {"image": ASTRONAUT, "margin": 5.0}, "margin"),
        ("Portrait", {"image": truncated_jpeg()}, "image"),
        (
            "RemoveBackground",
            {"image": ASTRONAUT, "focus": vision_pb2.Box(x_min=600, y_min=0, x_max=700, y_max=10)},
            "focus",
        ),
        ("RemoveBackground", {"image": b"\x00" * 100}, "image"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    vision: VisionServer, call: str, request_fields: dict[str, object], field_named: str
) -> None:
    request_type = getattr(vision_pb2, f"{call}Request")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(vision.stub, call)(request_type(**request_fields), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field_named}:")
    assert vision.service.admission.in_flight == 0


async def test_an_image_over_the_pixel_limit_is_refused(vision: VisionServer) -> None:
    over = np.zeros((5000, 4100, 3), np.uint8)  # 20.5 MP against the fixture's 20 MP
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await vision.stub.DetectPersons(vision_pb2.DetectPersonsRequest(image=jpeg(over, 50)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over the limit" in (raised.value.details() or "")


SMALL = astronaut()[:48, :64].copy()


@pytest.mark.parametrize(
    ("call", "image", "detail"),
    [
        # Headers over the fixture's 20 MP, on a few KB of data: refused on the header.
        ("DetectPersons", png_claiming(8000, 8000), "8000x8000 is over the limit"),
        ("Portrait", with_size(jpeg(SMALL), 5000, 5000), "5000x5000 is over the limit"),
        (
            "RemoveBackground",
            with_size(encoded(SMALL, "BMP"), 5000, 5000),
            "5000x5000 is over the limit",
        ),
        (
            "DetectPersons",
            with_size(animation("WEBP", 64, 48), 5000, 5000),
            "5000x5000 is over the limit",
        ),
        # Headers within the limit that the data does not bear out.
        ("DetectPersons", truncated(encoded(noise(640, 480), "PNG")), "cannot be decoded"),
        ("Portrait", with_size(encoded(SMALL, "BMP"), 2000, 2000), "cannot be decoded"),
        ("RemoveBackground", apng_with_a_frame_larger_than_its_canvas(), "is not an image"),
    ],
    ids=[
        "png-header-over",
        "jpeg-header-over",
        "bmp-header-over",
        "webp-canvas-over",
        "png-data-short",
        "bmp-data-short",
        "apng-frame-over-canvas",
    ],
)
async def test_images_over_the_limit_or_with_lying_headers_are_invalid_naming_image(
    vision: VisionServer, call: str, image: bytes, detail: str
) -> None:
    request_type = getattr(vision_pb2, f"{call}Request")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(vision.stub, call)(request_type(image=image), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"image: {detail}")
    assert vision.service.admission.in_flight == 0
