"""MediaPipe's selfie segmentation: the probability that each pixel is part of a person.

The model takes RGB in [0, 1] at 256x256 and ends in a sigmoid, so its output is a
probability. MediaPipe stretches any image to that square; that works for portrait and
near-square photos (a phone's 9:16 frames are what it was made for), but a wide photo
squeezes its people until the model no longer sees them: four people side by side in a
1280x400 photo come out as nothing at all. So an image wider than 4:3 is cut into windows
4:3 wide (at most five: a still wider strip gets wider windows) that overlap by at least
half, each segmented alone, and the results blended with weights that fall off towards
each window's sides, where a person may be cut.

The wheel also has a landscape model (256x144) of the same network. Measured on wide
photos built from the astronaut (1.8:1 to 3.2:1), it does worse than these windows of the
square model (IoU with the people 0.76-0.81 against 0.88-0.99, and 0.0 on the 3.2:1 one
when stretched), so it is not used.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from services.vision.engines.base import Image, Matte
from services.vision.engines.mediapipe_files import MediaPipeNet
from services.vision.engines.windows import windows

MODEL = "selfie_segmentation.tflite"
INPUT = 256
_WIDEST = 4 / 3
# Up to a 4:1 strip five 4:3 windows cover the image; a wider one gets wider windows.
_MOST_WINDOWS = 5
# Blending weights never quite reach 0, so a pixel only one window covers keeps its value.
_MIN_WEIGHT = 1e-3


class SelfieSegmenter:
    """Person probability per pixel; safe to call from several threads."""

    def __init__(self, directory: Path) -> None:
        """Remember where the model is; nothing is read before ``load()``."""
        self._directory = directory
        self._net: MediaPipeNet | None = None

    def load(self) -> None:
        """Read the model; FileNotFoundError names it when it is missing."""
        self._net = MediaPipeNet(self._directory, MODEL)

    def probability(self, image: Image) -> Matte:
        """P(person) for every pixel of the RGB ``image``, at its size, float32 in [0, 1]."""
        height, width = image.shape[:2]
        spans = windows(width, round(_WIDEST * height), _MOST_WINDOWS)
        if len(spans) == 1:
            return self._run(image)
        total = np.zeros((height, width), np.float32)
        weight = np.zeros(width, np.float32)
        for left, size in spans:
            weights = _taper(size)
            part = np.ascontiguousarray(image[:, left : left + size])
            total[:, left : left + size] += self._run(part) * weights
            weight[left : left + size] += weights
        blended: Matte = total / weight
        return blended

    def _run(self, image: Image) -> Matte:
        """One pass of the model over ``image``, stretched to its input and back."""
        if self._net is None:
            raise RuntimeError("SelfieSegmenter.probability called before load()")
        height, width = image.shape[:2]
        # INTER_AREA, not blobFromImage's own linear resize, so a large photo is averaged
        # down rather than sampled (which aliases fine patterns into noise).
        square = cv2.resize(image, (INPUT, INPUT), interpolation=cv2.INTER_AREA)
        [output] = self._net.run(np.asarray(cv2.dnn.blobFromImage(square, 1 / 255.0), np.float32))
        coarse = output.reshape(INPUT, INPUT)
        resized = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
        # OpenCV drops the axes of a one-pixel-high or -wide result.
        probability: Matte = np.clip(resized, 0.0, 1.0).astype(np.float32).reshape(height, width)
        return probability


def _taper(width: int) -> npt.NDArray[np.float32]:
    """Blending weights across a window: 1 in the middle, falling linearly to the sides."""
    distance = np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5)
    weights: npt.NDArray[np.float32] = np.maximum(distance / distance.max(), _MIN_WEIGHT).astype(
        np.float32
    )
    return weights
