"""Upright full bodies from OpenCV's HOG people detector (Dalal and Triggs), which ships
inside the ``opencv-python-headless`` wheel.

Scores: the SVM margin (``weights`` of ``HOGDescriptor.detectMultiScale``, which keeps
margins above 0) squashed by a logistic with centre 0.5 and spread 0.5: margin 0 gives
0.27, 1 gives 0.73, 2 gives 0.95. Hand-set, not a calibrated probability; the detector also
fires on some upright textures.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from services.vision.engines.base import Box, Detection, Image
from services.vision.engines.person_boxes import clip, scale
from services.vision.engines.resizing import downscale
from services.vision.engines.scores import logistic

_CENTRE, _SPREAD = 0.5, 0.5
# Pyramid steps of 10% (OpenCV's examples use 5%) take about half the time and still find
# upright people.
_SCALE_STEP = 1.1


class HogBodyDetector:
    """Full, upright bodies; safe to call from several threads."""

    def __init__(self, max_side: int) -> None:
        """Detect on a copy shrunk to ``max_side`` pixels on its longest side, for speed."""
        self._max_side = max_side
        self._hog: cv2.HOGDescriptor | None = None
        # HOGDescriptor keeps its SVM and OpenCL buffers as members and OpenCV promises no
        # thread safety for it. Each call already spreads over OpenCV's own worker threads,
        # so serialising calls loses little.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the detector with OpenCV's default people SVM."""
        if not hasattr(cv2, "HOGDescriptor"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no cv2.HOGDescriptor (OpenCV 5 moved it out "
                "of the main module): the HOG detector needs opencv-python-headless 4.x"
            )
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))
        with self._lock:
            self._hog = hog

    def bodies(self, image: Image) -> list[Detection]:
        """Bodies in the RGB ``image``, in its pixels; none when it is smaller than HOG's
        window (64x128 on the working copy)."""
        small, factor = downscale(image, self._max_side)
        with self._lock:
            if self._hog is None:
                raise RuntimeError("HogBodyDetector.bodies called before load()")
            window_width, window_height = self._hog.winSize
            if small.shape[0] < window_height or small.shape[1] < window_width:
                return []
            boxes, margins = self._hog.detectMultiScale(
                small, winStride=(8, 8), padding=(8, 8), scale=_SCALE_STEP
            )
        height, width = image.shape[:2]
        return [
            Detection(
                clip(scale(Box(x, y, x + w, y + h), 1 / factor), width, height),
                logistic(margin, _CENTRE, _SPREAD),
            )
            for (x, y, w, h), margin in zip(
                np.reshape(boxes, (-1, 4)).astype(float).tolist(),
                np.ravel(margins).tolist(),
                strict=True,
            )
        ]
