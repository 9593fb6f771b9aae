import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PilImage
from skimage import data

from services.common.errors import InvalidArgument
from services.vision.engines.base import Box
from services.vision.images import (
    alpha_png,
    crop_image,
    cutout_png,
    decode_image,
    resize_matte,
)


def encoded(image: np.ndarray | PilImage.Image, image_format: str = "JPEG") -> bytes:
    picture = image if isinstance(image, PilImage.Image) else PilImage.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format)
    return buffer.getvalue()


ASTRONAUT = encoded(data.astronaut())


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header announcing ``width`` x ``height`` pixels, with no pixel data: what a
    decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_small_image_is_its_own_working_copy() -> None:
    image = decode_image(ASTRONAUT, 10_000_000, 1024, "image")
    assert image.original.shape == (512, 512, 3)
    assert image.working is image.original
    assert image.scale == 1.0


def test_a_large_image_is_scaled_down_for_the_models_and_boxes_map_back() -> None:
    big = encoded(PilImage.fromarray(data.astronaut()).resize((2000, 1000)))
    image = decode_image(big, 10_000_000, 500, "image")
    assert image.original.shape == (1000, 2000, 3)
    assert image.working.shape == (250, 500, 3)
    assert image.to_original(Box(10, 20, 30, 40)) == Box(40, 80, 120, 160)
    assert image.to_working(Box(40, 80, 120, 160)) == Box(10, 20, 30, 40)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_common_modes_become_rgb(mode: str) -> None:
    picture = PilImage.fromarray(data.astronaut()).convert(mode)
    image_format = "JPEG" if mode in ("L", "CMYK") else "PNG"
    image = decode_image(encoded(picture, image_format), 10_000_000, 1024, "image")
    assert image.original.shape == (512, 512, 3)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "is empty"),
        (b"certainly not an image", "is not an image"),
        (ASTRONAUT[: len(ASTRONAUT) // 2], "cannot be decoded"),
        (png_claiming(8000, 8000), "over the limit"),
        (png_claiming(30000, 30000), "over the limit"),
        (png_claiming(0, 10), "not an image"),  # Pillow refuses a zero-width PNG itself
        (encoded(PilImage.fromarray(np.zeros((8, 8), np.uint16)), "PNG"), "mode I;16"),
        (encoded(PilImage.fromarray(data.astronaut()), "GIF"), "GIF images are not supported"),
    ],
)
def test_unsafe_or_unreadable_images_are_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem) as raised:
        decode_image(payload, 10_000_000, 1024, "image")
    assert raised.value.field == "image"


def test_crop_keeps_the_region() -> None:
    image = decode_image(ASTRONAUT, 10_000_000, 1024, "image")
    region = crop_image(image, 100, 50, 300, 150, 1024)
    assert region.original.shape == (100, 200, 3)
    np.testing.assert_array_equal(region.original, image.original[50:150, 100:300])


def test_pngs_carry_the_matte_as_alpha() -> None:
    matte = np.zeros((20, 30), np.float32)
    matte[5:15, 10:20] = 1.0
    alpha = np.asarray(PilImage.open(io.BytesIO(alpha_png(matte))))
    assert alpha.shape == (20, 30)
    assert alpha[10, 15] == 255
    assert alpha[0, 0] == 0
    matte[5:15, 20] = 0.5
    rgba = PilImage.open(io.BytesIO(cutout_png(np.full((20, 30, 3), 7, np.uint8), matte)))
    assert rgba.mode == "RGBA"
    assert np.asarray(rgba)[10, 15].tolist() == [7, 7, 7, 255]
    assert np.asarray(rgba)[10, 20].tolist() == [7, 7, 7, 128]
    # Fully transparent: no colour.
    assert np.asarray(rgba)[0, 0].tolist() == [0, 0, 0, 0]


def test_resize_matte_keeps_values_in_range() -> None:
    matte = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    resized = resize_matte(matte, 120, 80)
    assert resized.shape == (80, 120)
    assert 0.0 <= resized.min() <= resized.max() <= 1.0
