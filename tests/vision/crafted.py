"""Images built byte by byte: headers that claim another size than their data holds,
animations, and files cut short."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image as PilImage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encoded(picture: np.ndarray | PilImage.Image, image_format: str, **options: Any) -> bytes:
    """``picture`` saved as ``image_format`` with Pillow's ``options``."""
    image = picture if isinstance(picture, PilImage.Image) else PilImage.fromarray(picture)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise(width: int, height: int) -> np.ndarray:
    """Random RGB pixels: they compress badly, so their data is as large as it looks."""
    pixels: np.ndarray = np.random.default_rng(7).integers(0, 256, (height, width, 3), np.uint8)
    return pixels


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (kind, body) chunks of a PNG."""
    chunks = []
    position = len(PNG_SIGNATURE)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def png_of(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header announcing ``width`` x ``height`` pixels, with no pixel data: what a
    decompression bomb looks like before it is decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return png_of([(b"IHDR", header), (b"IEND", b"")])


def png_hiding_rows(width: int, height: int, hidden_rows: int) -> bytes:
    """An RGB PNG whose header says ``width`` x ``height`` while its compressed data holds
    ``hidden_rows`` rows of that width (a few hundred KB that inflate to far more)."""
    row = b"\x00" + bytes(3 * width)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * 1000) for _ in range(hidden_rows // 1000))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return png_of([(b"IHDR", header), (b"IDAT", data), (b"IEND", b"")])


def truncated(data: bytes) -> bytes:
    """The first half of ``data``: a file whose pixel data stops short of its header's size."""
    return data[: len(data) // 2]


def with_size(data: bytes, width: int, height: int) -> bytes:
    """``data``, a JPEG, PNG, BMP or WebP, with the size in its header replaced and its
    pixel data left as it was."""
    patched = bytearray(data)
    if data.startswith(PNG_SIGNATURE):
        chunks = png_chunks(data)
        kind, body = chunks[0]
        assert kind == b"IHDR"
        chunks[0] = (kind, struct.pack(">II", width, height) + body[8:])
        return png_of(chunks)
    if data.startswith(b"\xff\xd8"):
        # Baseline or progressive frame header: length, precision, height, width.
        start = next(data.find(marker) for marker in (b"\xff\xc0", b"\xff\xc2") if marker in data)
        patched[start + 5 : start + 9] = struct.pack(">HH", height, width)
    elif data.startswith(b"BM"):
        patched[18:26] = struct.pack("<ii", width, height)
    elif data[12:16] == b"VP8X":
        patched[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif data[12:16] == b"VP8L":
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        bits |= (width - 1) | ((height - 1) << 14)
        patched[21:25] = bits.to_bytes(4, "little")
    elif data[12:16] == b"VP8 ":
        patched[26:30] = struct.pack("<HH", width, height)
    else:
        raise ValueError("not a JPEG, PNG, BMP or WebP")
    return bytes(patched)


ANIMATION_COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def animation(image_format: str, width: int, height: int) -> bytes:
    """An animated PNG or WebP of three solid frames, ANIMATION_COLOURS in turn."""
    frames = [PilImage.new("RGB", (width, height), colour) for colour in ANIMATION_COLOURS]
    options: dict[str, Any] = {"save_all": True, "append_images": frames[1:]}
    if image_format == "WEBP":
        options["lossless"] = True
    return encoded(frames[0], image_format, **options)


def apng_with_a_frame_larger_than_its_canvas() -> bytes:
    """An animated PNG whose first frame claims to be larger than the image itself."""
    chunks = png_chunks(animation("PNG", 64, 48))
    index = next(i for i, (kind, _) in enumerate(chunks) if kind == b"fcTL")
    body = chunks[index][1]
    chunks[index] = (b"fcTL", body[:4] + struct.pack(">II", 5000, 5000) + body[12:])
    return png_of(chunks)
