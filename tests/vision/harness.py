"""Test harness for the vision service: the server, and images to send it."""

from __future__ import annotations

import io

import numpy as np
from chorus.vision.v1 import vision_pb2_grpc
from PIL import Image as PilImage
from skimage import data

from services.vision.server import VisionService
from tests.support.service_harness import ServerUnderTest

# Where things are in skimage's astronaut (512x512), read off the picture.
PERSON = (20, 10, 360, 512)  # x_min, y_min, x_max, y_max: hair to suit, left arm to right
FACE_CORE = (190, 60, 260, 140)
SUIT_CORE = (100, 300, 250, 450)
WALL = (300, 10, 370, 110)  # the grey wall between her head and the shuttle


class VisionServer(ServerUnderTest[VisionService]):
    """A vision server under test."""

    @property
    def stub(self) -> vision_pb2_grpc.VisionAsyncStub:
        return vision_pb2_grpc.VisionStub(self.channel)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def astronaut() -> np.ndarray:
    image: np.ndarray = data.astronaut()
    return image


def region_mean(alpha: np.ndarray, region: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = region
    return float(alpha[y0:y1, x0:x1].mean()) / 255


def decode_png(payload: bytes) -> np.ndarray:
    return np.asarray(PilImage.open(io.BytesIO(payload)))
