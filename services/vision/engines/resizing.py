"""Working copies: an image shrunk so the slow part of an engine runs on fewer pixels."""

from __future__ import annotations

import cv2
import numpy as np

from services.vision.engines.base import Image


def downscale(image: Image, max_side: int) -> tuple[Image, float]:
    """``image`` shrunk so its longest side is at most ``max_side``, and the factor used
    (1.0, and the image itself, when it is small enough already)."""
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor == 1.0:
        return image, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8), factor
