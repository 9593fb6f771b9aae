"""YOLO's input for one image: letterboxed to the network's square, as ultralytics does it.

Letterboxing scales a whole image (cv2.resize, which releases the GIL), so it runs once
per request in that request's own thread, never inside the batched model call: a batch
of 32 large photos would otherwise spend tens of milliseconds scaling them one after the
other while the GPU waits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.vision.engines.base import Image, check_image


@dataclass(frozen=True)
class YoloInput:
    """One image as the network takes it, and what maps its boxes back."""

    pixels: npt.NDArray[np.uint8]
    """RGB, channels first: shape (3, side, side), the image centred on grey (114)."""
    shape: tuple[int, int]
    """The image's (height, width) before letterboxing."""


def letterboxed(image: Image, side: int) -> YoloInput:
    """``image`` (RGB) scaled to fit a ``side`` square, keeping its aspect, and padded.

    The same square whatever the image's shape, so any images batch together and an image
    gets the same boxes alone or in a batch (ultralytics' ``rect=False``).
    """
    check_image(image)
    padded: Image = _letterbox(side)(image=image)
    return YoloInput(np.ascontiguousarray(padded.transpose(2, 0, 1)), image.shape[:2])


@functools.lru_cache(maxsize=4)
def _letterbox(side: int) -> Any:
    """ultralytics' own LetterBox (stateless, so one per size serves every thread); imported
    here because ultralytics must be imported after ``offline_ultralytics``."""
    from ultralytics.data.augment import LetterBox

    return LetterBox((side, side), auto=False, stride=32)
