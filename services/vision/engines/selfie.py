"""Background removal with MediaPipe's selfie segmentation, refined at full resolution.

The model sees the image at 256x256 (a wide photo in windows: ``selfie_segmenter``), so
its person probability is right about who is a person but coarse at the outline. A fast
guided filter with the photo as guide (``guided_filter``) makes the outline follow the
photo's own edges (hair, shoulders, hands), then a ramp sends what the filter leaves
faintly on the background (below 0.2) to 0 and what it leaves faintly off the person
(above 0.8) to 1, so no haze or holes remain.

With a focus box the model runs on a crop around it (more of its pixels on the subject),
and only the subject is kept: nothing beyond a small margin around the box, and of what is
inside, only the connected parts of the matte that lie mostly in the box (other people
standing apart from the subject are dropped whole).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from services.vision.engines.base import Box, Image, Matte, MattingModel, check_image
from services.vision.engines.focus import focus_region
from services.vision.engines.guided_filter import fast_guided_filter
from services.vision.engines.selfie_segmenter import SelfieSegmenter

# Shares of the focus box's size added on each side: of the crop the model sees (context,
# so it sees shoulders and surroundings as in a whole photo), and of what may be kept (room
# for hair and hands a detector's box leaves out; BiRefNet keeps as much).
CONTEXT_MARGIN = 0.25
KEEP_MARGIN = 0.1
# Guided filter: a window of 1/64 of the long side (8 pixels at 512) spans the model's
# blurred outline (about two of its 256 pixels); the coefficients are fitted on a copy of
# about 128 pixels; eps 1e-3 (a colour deviation of 0.03) keeps edges of that contrast.
_RADIUS_SHARE = 1 / 64
_COARSE_SIDE = 128
_EPS = 1e-3
_BACKGROUND_BELOW, _FOREGROUND_ABOVE = 0.2, 0.8
# A connected part of the matte is the subject's when at least this share of it lies inside
# the focus box (besides the part with the most pixels inside, which always is).
_SUBJECT_SHARE = 0.5


class SelfieMatte(MattingModel):
    """A matte from MediaPipe's selfie segmentation; safe to call from several threads."""

    name = "selfie"

    def __init__(self, models: Path) -> None:
        """Read the models from the ``models`` folder at ``load()``."""
        self._segmenter = SelfieSegmenter(models)

    def load(self) -> None:
        """Read the selfie model; FileNotFoundError names it when it is missing."""
        self._segmenter.load()

    def warm_up(self) -> None:
        """Matte a square and a wide frame once (a single pass and one in windows), so the
        first request pays no start-up cost."""
        for width in (256, 512):
            frame = np.full((256, width, 3), 40, np.uint8)
            cv2.circle(frame, (width // 2, 128), 60, (230, 200, 180), -1)
            self.matte(frame, None)

    def matte(self, image: Image, focus: Box | None) -> Matte:
        """Alpha in [0, 1] of the people in ``image``; with ``focus``, of the one there only."""
        check_image(image)
        if focus is None:
            return self._refined(image)
        height, width = image.shape[:2]
        top, bottom, left, right = focus_region(focus, CONTEXT_MARGIN, height, width)
        if bottom <= top or right <= left:
            raise ValueError(f"focus box {focus} does not overlap the {width}x{height} image")
        alpha = self._refined(np.ascontiguousarray(image[top:bottom, left:right]))
        matte = np.zeros((height, width), np.float32)
        keep_top, keep_bottom, keep_left, keep_right = focus_region(
            focus, KEEP_MARGIN, height, width
        )
        matte[keep_top:keep_bottom, keep_left:keep_right] = alpha[
            keep_top - top : keep_bottom - top, keep_left - left : keep_right - left
        ]
        return _subject_only(matte, focus)

    def _refined(self, image: Image) -> Matte:
        """The segmenter's probability, guided-filtered with ``image`` and ramped."""
        probability = self._segmenter.probability(image)
        long_side = max(image.shape[:2])
        filtered = fast_guided_filter(
            image,
            probability,
            radius=max(1, round(long_side * _RADIUS_SHARE)),
            eps=_EPS,
            subsample=max(1, long_side // _COARSE_SIDE),
        )
        ramped = (filtered - _BACKGROUND_BELOW) / (_FOREGROUND_ABOVE - _BACKGROUND_BELOW)
        alpha: Matte = np.clip(ramped, 0.0, 1.0).astype(np.float32)
        return alpha


def _subject_only(alpha: Matte, subject: Box) -> Matte:
    """``alpha`` with its connected parts (soft edges included) that are not the subject's
    set to 0: the subject's are those mostly inside ``subject``, and the one with the most
    pixels inside it."""
    count, labels = cv2.connectedComponents((alpha > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return alpha
    height, width = alpha.shape
    inside = np.zeros((height, width), bool)
    inside[
        max(0, int(subject.y_min)) : max(0, int(np.ceil(subject.y_max))),
        max(0, int(subject.x_min)) : max(0, int(np.ceil(subject.x_max))),
    ] = True
    sizes = np.bincount(labels.ravel(), minlength=count)
    within = np.bincount(labels[inside], minlength=count)
    # Label 0 is the background (alpha 0), never a part.
    sizes[0], within[0] = 1, 0
    keep: npt.NDArray[np.bool_] = within >= _SUBJECT_SHARE * sizes
    keep[int(np.argmax(within))] = bool(within.max() > 0)
    kept: Matte = np.where(keep[labels], alpha, 0.0).astype(np.float32)
    return kept
