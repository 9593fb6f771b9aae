"""Encoded images in, RGB arrays out (and PNGs back), refusing what is not a safe image.

The pixel count is read from the header and checked before anything is decoded, so a
small file that expands to gigapixels (a decompression bomb) costs nothing. That holds for
every accepted format: Pillow may open only those; opening a JPEG, PNG or BMP reads its
headers only; a WebP's canvas is checked here first, because libwebp reserves memory for
it as Pillow opens the file. The declared size is the bound: the decoders fill an image of
that size and never grow it. Data beyond it is ignored; data cut short is refused, or,
where a compressed stream ends cleanly too early, the missing rows stay blank (as Pillow
and libjpeg do). Animated PNG and WebP decode their first frame only.

Decoding, scaling and encoding take up to seconds of CPU for a 40-megapixel image: callers
run them in a thread, never on an event loop. Large images within the limit are scaled
down for the models, and results mapped back.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PilImage
from PIL import ImageOps, UnidentifiedImageError

from services.common.errors import InvalidArgument
from services.vision.engines.base import Box, Image, Matte

FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
_EXIF_ORIENTATION = 0x0112
_FORMAT_NAMES = f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}"
# Modes that convert to RGB without guessing.
MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr", "1")
# 16-bit greyscale, as Pillow opens a 16-bit PNG (older Pillows as "I"): full range by the
# format, so the top byte of each sample is its 8-bit value. (16-bit colour PNGs open as
# RGB or RGBA already.)
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I")


@dataclass(frozen=True)
class DecodedImage:
    """The pixels as sent, and a copy scaled to fit the models' working size."""

    original: Image
    working: Image
    scale: float
    """working size / original size (1.0 when the image was small enough)."""

    def to_original(self, box: Box) -> Box:
        """A box on the working copy, in pixels of the original."""
        factor = 1.0 / self.scale
        return Box(box.x_min * factor, box.y_min * factor, box.x_max * factor, box.y_max * factor)

    def to_working(self, box: Box) -> Box:
        """A box on the original, in pixels of the working copy."""
        return Box(
            box.x_min * self.scale,
            box.y_min * self.scale,
            box.x_max * self.scale,
            box.y_max * self.scale,
        )


def decode_image(data: bytes, max_pixels: int, working_side: int, field: str) -> DecodedImage:
    """Decode ``data``; InvalidArgument names ``field`` for anything unsafe or unreadable.

    About a second of CPU for a 40-megapixel image: run it in a thread."""
    if not data:
        raise InvalidArgument(field, "is empty")
    canvas = _webp_canvas(data)
    if canvas is not None:
        _check_size(field, *canvas, max_pixels)
    try:
        with PilImage.open(io.BytesIO(data), formats=FORMATS) as opened:
            # A JPEG holding several pictures (a phone's Ultra HDR photo and its gain map)
            # opens as MPO: its first picture is the photo.
            if opened.format not in (*FORMATS, "MPO"):
                raise InvalidArgument(
                    field, f"{opened.format} images are not supported; use {', '.join(FORMATS)}"
                )
            _check_size(field, *opened.size, max_pixels)
            if opened.mode not in MODES and opened.mode not in SIXTEEN_BIT_GREY:
                raise InvalidArgument(field, f"pixel mode {opened.mode} is not supported")
            opened.load()  # the first frame only
            # Phones store a portrait photo sideways with an EXIF orientation: turned
            # upright, people stand, as the models expect and as the caller saw the photo.
            turned = opened.getexif().get(_EXIF_ORIENTATION, 1) != 1
            upright = ImageOps.exif_transpose(opened) if turned else opened  # else no copy
            if upright.mode in SIXTEEN_BIT_GREY:
                upright = _eight_bit_grey(upright)
            # convert() copies even an RGB image: skip it, an image can be hundreds of MB.
            rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
            return _with_working_copy(np.asarray(rgb, dtype=np.uint8), working_side, rgb)
    except UnidentifiedImageError:
        raise InvalidArgument(field, f"is not an image, or not a {_FORMAT_NAMES} one") from None
    except PilImage.DecompressionBombError:
        # Pillow's own guard, which fires in open() for the most extreme headers.
        raise InvalidArgument(field, f"is over the limit of {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports truncated and corrupt files this way.
        raise InvalidArgument(field, f"cannot be decoded: {error}") from None


def _eight_bit_grey(image: PilImage.Image) -> PilImage.Image:
    """A 16-bit greyscale image as 8-bit greyscale (its samples' top bytes)."""
    samples = np.asarray(image).astype(np.int64) >> 8
    return PilImage.fromarray(samples.clip(0, 255).astype(np.uint8), "L")


def crop_image(
    image: DecodedImage, x0: int, y0: int, x1: int, y1: int, working_side: int
) -> DecodedImage:
    """The region [x0, x1) x [y0, y1) of the original, with its own working copy."""
    return _with_working_copy(image.original[y0:y1, x0:x1], working_side)


def _check_size(field: str, width: int, height: int, max_pixels: int) -> None:
    if width == 0 or height == 0:
        raise InvalidArgument(field, f"has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidArgument(field, f"{width}x{height} is over the limit of {max_pixels} pixels")


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size, read from its first chunk; None for anything else (and for a
    malformed WebP, which Pillow then refuses). libwebp's animation decoder, which Pillow
    opens every WebP with, reserves memory for the whole canvas when it is created, before
    the caller could look at the size."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended (alpha, animation): 24-bit canvas sides, less one
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit sides, less one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sides
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    return None


def _with_working_copy(
    original: Image, working_side: int, picture: PilImage.Image | None = None
) -> DecodedImage:
    """``picture``, when given, is ``original`` as decoded: scaled without another copy."""
    height, width = original.shape[:2]
    scale = min(1.0, working_side / max(width, height))
    if scale == 1.0:
        return DecodedImage(original, original, 1.0)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    source = picture if picture is not None else PilImage.fromarray(original)
    resized = source.resize(size, PilImage.Resampling.BILINEAR)
    return DecodedImage(original, np.asarray(resized, dtype=np.uint8), scale)


def resize_matte(matte: Matte, width: int, height: int) -> Matte:
    """A matte scaled to ``width`` x ``height``."""
    if matte.shape == (height, width):
        return matte
    resized = PilImage.fromarray(matte, mode="F").resize(
        (width, height), PilImage.Resampling.BILINEAR
    )
    scaled: Matte = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return scaled


def alpha_png(matte: Matte) -> bytes:
    """The matte as an 8-bit grayscale PNG (255 is foreground)."""
    return _png(_alpha8(matte))


def cutout_png(image: Image, matte: Matte) -> bytes:
    """The image as an RGBA PNG with the matte as its alpha channel; fully transparent
    pixels are black."""
    alpha = _alpha8(matte)
    # Nothing shows the colour of a fully transparent pixel; zeroed, the background
    # compresses to almost nothing, and the PNG is about a third smaller and quicker to
    # write (512x512 astronaut: 543 to 343 KB).
    bgra = np.dstack([np.where(alpha[..., np.newaxis] > 0, image[..., ::-1], 0), alpha])
    return _png(bgra.astype(np.uint8))


def _alpha8(matte: Matte) -> np.ndarray:
    return np.round(np.clip(matte, 0.0, 1.0) * 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    """Grey or BGRA ``pixels`` as PNG. OpenCV's encoder: about a fifth quicker than
    Pillow's at the same zlib level, and the cut-out's encoding is most of a
    RemoveBackground call."""
    # Level 1: a fraction of the default's time for files a little larger.
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(encoded)
