import io
import warnings

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
from tests.vision.crafted import (
    ANIMATION_COLOURS,
    animation,
    apng_with_a_frame_larger_than_its_canvas,
    encoded,
    noise,
    png_claiming,
    png_hiding_rows,
    truncated,
    with_size,
)

ASTRONAUT = encoded(data.astronaut(), "JPEG")


def test_a_small_image_is_its_own_working_copy() -> None:
    image = decode_image(ASTRONAUT, 10_000_000, 1024, "image")
    assert image.original.shape == (512, 512, 3)
    assert image.working is image.original
    assert image.scale == 1.0


def test_a_large_image_is_scaled_down_for_the_models_and_boxes_map_back() -> None:
    big = encoded(PilImage.fromarray(data.astronaut()).resize((2000, 1000)), "JPEG")
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


def test_a_16_bit_grey_png_becomes_8_bit_grey() -> None:
    samples = np.linspace(0, 65535, 32 * 64).reshape(32, 64).astype(np.uint16)
    png = encoded(PilImage.fromarray(samples), "PNG")
    assert PilImage.open(io.BytesIO(png)).mode == "I;16"

    image = decode_image(png, 10_000_000, 1024, "image")

    assert image.original.shape == (32, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image.original[..., channel], samples >> 8)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "is empty"),
        (b"certainly not an image", "is not an image"),
        (ASTRONAUT[: len(ASTRONAUT) // 2], "cannot be decoded"),
        (png_claiming(8000, 8000), "over the limit"),
        (png_claiming(30000, 30000), "over the limit"),
        (png_claiming(0, 10), "not an image"),  # Pillow refuses a zero-width PNG itself
        (encoded(data.astronaut(), "GIF"), "not a JPEG, PNG, WEBP or BMP one"),
        (encoded(data.astronaut(), "TIFF"), "not a JPEG, PNG, WEBP or BMP one"),
    ],
)
def test_unsafe_or_unreadable_images_are_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem) as raised:
        decode_image(payload, 10_000_000, 1024, "image")
    assert raised.value.field == "image"


FORMATS = [
    pytest.param("JPEG", False, {}, id="jpeg"),
    pytest.param("PNG", False, {}, id="png"),
    pytest.param("BMP", False, {}, id="bmp"),
    pytest.param("WEBP", False, {"quality": 80}, id="webp-lossy"),  # a VP8 chunk
    pytest.param("WEBP", False, {"lossless": True}, id="webp-lossless"),  # VP8L
    pytest.param("WEBP", True, {"quality": 80}, id="webp-extended"),  # alpha: VP8X
]


def noisy(
    image_format: str, alpha: bool, options: dict[str, object], width: int, height: int
) -> bytes:
    """Random pixels (with random transparency when ``alpha``), as ``image_format``."""
    pixels = noise(width, height)
    if alpha:
        pixels = np.dstack([pixels, pixels[..., 0]])
    return encoded(pixels, image_format, **options)


@pytest.mark.parametrize(("image_format", "alpha", "options"), FORMATS)
def test_every_format_is_held_to_the_size_its_header_declares(
    image_format: str, alpha: bool, options: dict[str, object]
) -> None:
    payload = noisy(image_format, alpha, options, 64, 48)
    assert decode_image(payload, 64 * 48, 1024, "image").original.shape == (48, 64, 3)
    with pytest.raises(InvalidArgument, match="64x48 is over the limit of 3071 pixels"):
        decode_image(payload, 64 * 48 - 1, 1024, "image")
    # The same data under a header that claims more: refused on the header alone.
    with pytest.raises(InvalidArgument, match="6000x5000 is over the limit") as raised:
        decode_image(with_size(payload, 6000, 5000), 20_000_000, 1024, "image")
    assert raised.value.field == "image"


def test_a_webp_canvas_is_checked_before_libwebp_is_given_the_file() -> None:
    # 144 megapixels: past Pillow's warning threshold (89 MP), short of its own refusal
    # (179 MP). Pillow warns only once it has opened the file, and opening a WebP creates
    # libwebp's decoder, which reserves memory for the whole canvas: refused before that,
    # the file is never opened and nothing warns.
    payload = with_size(animation("WEBP", 64, 48), 12000, 12000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PilImage.DecompressionBombWarning)
        with pytest.raises(InvalidArgument, match="12000x12000 is over the limit"):
            decode_image(payload, 20_000_000, 1024, "image")


@pytest.mark.parametrize("image_format", ["PNG", "WEBP"])
def test_an_animation_decodes_its_first_frame_only(image_format: str) -> None:
    payload = animation(image_format, 64, 48)
    with PilImage.open(io.BytesIO(payload)) as opened:
        assert getattr(opened, "n_frames", 1) == len(ANIMATION_COLOURS)
    image = decode_image(payload, 64 * 48, 1024, "image")
    assert image.original.shape == (48, 64, 3)
    assert (image.original == ANIMATION_COLOURS[0]).all()


def test_a_phone_photo_with_several_pictures_decodes_its_first() -> None:
    """Ultra HDR photos are JPEGs holding the photo and a gain map (MPO to Pillow)."""
    photo = data.astronaut()[:64, :96]
    buffer = io.BytesIO()
    PilImage.fromarray(photo).save(
        buffer, "MPO", save_all=True, append_images=[PilImage.new("RGB", (96, 64))], quality=95
    )
    image = decode_image(buffer.getvalue(), 10_000, 1024, "image")
    assert image.original.shape == (64, 96, 3)
    assert np.abs(image.original.astype(int) - photo).mean() < 8


def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_orientation() -> None:
    photo = data.astronaut()[:64, :96]
    exif = PilImage.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    buffer = io.BytesIO()
    PilImage.fromarray(photo).save(buffer, "JPEG", exif=exif, quality=95)
    image = decode_image(buffer.getvalue(), 10_000, 1024, "image")
    assert image.original.shape == (96, 64, 3)
    upright = np.rot90(photo, k=-1)
    assert np.abs(image.original.astype(int) - upright).mean() < 8


def test_an_animated_png_frame_larger_than_the_image_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not an image") as raised:
        decode_image(apng_with_a_frame_larger_than_its_canvas(), 10_000_000, 1024, "image")
    assert raised.value.field == "image"


def test_a_png_hiding_more_rows_than_its_header_declares_decodes_to_the_declared_size() -> None:
    # 200,000 rows of 64 pixels (39 MB inflated) behind a header of 64x48: the decoder fills the
    # declared rows and stops.
    payload = png_hiding_rows(64, 48, 200_000)
    assert len(payload) < 100_000
    image = decode_image(payload, 64 * 48, 1024, "image")
    assert image.original.shape == (48, 64, 3)


@pytest.mark.parametrize(("image_format", "alpha", "options"), FORMATS)
def test_an_image_whose_data_stops_short_of_its_header_is_refused(
    image_format: str, alpha: bool, options: dict[str, object]
) -> None:
    payload = truncated(noisy(image_format, alpha, options, 640, 480))
    with pytest.raises(InvalidArgument, match="cannot be decoded") as raised:
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
