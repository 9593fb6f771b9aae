"""Weight-free vision engines: only what ships inside the ``opencv-python-headless`` wheel.

``OpenCvPersonDetector`` combines OpenCV's HOG people detector (full, upright bodies; see
``hog``) with the Haar frontal-face cascade, because a portrait is usually head and
shoulders, where HOG finds nothing; each face is grown into the box of the person it belongs
to. ``GrabCutMatte`` cuts the person out with ``cv2.grabCut`` seeded from that box.

Face scores. The cascade gives no probability, so the boosted sum of its last stage
(``levelWeights`` of ``CascadeClassifier.detectMultiScale3`` with ``outputRejectLevels=True``)
is squashed by a logistic ``1 / (1 + exp(-(margin - 3) / 1))`` into [0, 1]. Of
scikit-image's LFW face crops (``lfw_subset``) the cascade finds 86 in 100, with margins from
3.0 (5th percentile) through 6 (median) to 9.5 (95th), so nearly every found face scores
above 0.5; the astronaut's is 7.5 (0.99).

These are hand-set, not calibrated probabilities. Both classifiers also fire on some textures
(scikit-image's coins and moon give false faces with margins of 5 to 6, about 0.9): a score
says how face- or body-like a patch is, not that it is a person.

OpenCV 5 moved ``HOGDescriptor`` and ``CascadeClassifier`` out of the main module and no longer
ships the cascade files, so these engines need OpenCV 4.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import cv2.data
import numpy as np

from services.vision.engines.base import (
    Box,
    Detection,
    Image,
    Matte,
    MattingModel,
    PersonDetector,
    check_image,
)
from services.vision.engines.hog import HogBodyDetector
from services.vision.engines.person_boxes import (
    FaceProportions,
    clip,
    face_to_person,
    scale,
    suppress,
)
from services.vision.engines.resizing import downscale
from services.vision.engines.scores import logistic

_FACE_CASCADE = "haarcascade_frontalface_default.xml"

# The cascade's box holds the face from brows to chin, narrower than the head: shoulders span
# about 3.5 such widths (measured on the astronaut), a person is 7 to 8 face heights tall,
# and the hair starts about 0.6 face heights above the box.
HAAR_FACE = FaceProportions(width=3.5, above=0.6, below=7.0)

# Pyramid steps of 10% and faces of at least 32 pixels in the 640-pixel working copy (the
# default is 24) take about half the time and still find the astronaut's face.
_HAAR_SCALE_STEP = 1.1
_HAAR_MIN_FACE = (32, 32)
_HAAR_CENTRE, _HAAR_SPREAD = 3.0, 1.0

# GrabCut needs background samples outside its rectangle to fit its colour model.
_MIN_BACKGROUND_FRACTION = 0.05
_FALLBACK_MARGIN = 0.1


class OpenCvPersonDetector(PersonDetector):
    """People from OpenCV's HOG people detector and its Haar frontal-face cascade."""

    name = "opencv"

    def __init__(self, max_side: int = 640) -> None:
        """Detect on a copy shrunk to ``max_side`` pixels on its longest side, for speed."""
        self._max_side = max_side
        self._bodies = HogBodyDetector(max_side)
        self._faces: cv2.CascadeClassifier | None = None
        # CascadeClassifier keeps per-image working buffers in the object (its feature
        # evaluator is re-pointed at each image), so two threads inside detectMultiScale on
        # one instance corrupt each other. Each call already spreads over OpenCV's own
        # worker threads, so serialising calls loses little.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the HOG detector and read the face cascade shipped in the OpenCV wheel."""
        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no cv2.CascadeClassifier (OpenCV 5 moved it "
                "out of the main module): the opencv detector needs opencv-python-headless 4.x"
            )
        path = Path(cv2.data.haarcascades) / _FACE_CASCADE
        if not path.is_file():
            raise RuntimeError(
                f"face cascade {path} is missing: the opencv detector needs the Haar cascades "
                "that opencv-python-headless 4.x ships in cv2/data"
            )
        faces = cv2.CascadeClassifier(str(path))
        if faces.empty():
            raise RuntimeError(f"face cascade {path} could not be read")
        self._bodies.load()
        with self._lock:
            self._faces = faces

    def warm_up(self) -> None:
        """Detect once on a grey frame so OpenCV's thread pool and buffers exist."""
        self.detect(np.full((480, 640, 3), 128, np.uint8), 0.0, 0)

    def detect(self, image: Image, score_threshold: float, max_detections: int) -> list[Detection]:
        """People in ``image`` scoring at least ``score_threshold``, best first, at most
        ``max_detections`` (0: no limit)."""
        check_image(image)
        height, width = image.shape[:2]
        small, factor = downscale(image, self._max_side)
        small_height, small_width = small.shape[:2]
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        with self._lock:
            if self._faces is None:
                raise RuntimeError("OpenCvPersonDetector.detect called before load()")
            faces, _, face_margins = self._faces.detectMultiScale3(
                grey,
                scaleFactor=_HAAR_SCALE_STEP,
                minNeighbors=5,
                minSize=_HAAR_MIN_FACE,
                outputRejectLevels=True,
            )
        found = self._bodies.bodies(small)
        found += [
            Detection(
                face_to_person(
                    Box(float(x), float(y), float(x + w), float(y + h)),
                    HAAR_FACE,
                    small_width,
                    small_height,
                ),
                logistic(float(margin), _HAAR_CENTRE, _HAAR_SPREAD),
            )
            for (x, y, w, h), margin in zip(faces, face_margins, strict=True)
        ]
        kept = [
            Detection(clip(scale(d.box, 1 / factor), width, height), d.score)
            for d in suppress(found)
            if d.score >= score_threshold
        ]
        return kept[:max_detections] if max_detections > 0 else kept


class GrabCutMatte(MattingModel):
    """A matte from ``cv2.grabCut`` seeded with the person's box."""

    name = "grabcut"

    def __init__(
        self,
        detector: PersonDetector,
        max_side: int = 320,
        iterations: int = 3,
        focus_score: float = 0.5,
    ) -> None:
        """``detector`` finds the person when no focus box is given (it is loaded by its
        owner); GrabCut runs ``iterations`` rounds on a copy shrunk to ``max_side``; a found
        person counts when scoring at least ``focus_score``."""
        self._detector = detector
        self._max_side = max_side
        self._iterations = iterations
        self._focus_score = focus_score

    def load(self) -> None:
        """Nothing to read: GrabCut fits its colour models to each image."""

    def warm_up(self) -> None:
        """Cut once on a synthetic frame (a bright disc on a dark ground)."""
        frame = np.zeros((256, 256, 3), np.uint8)
        cv2.circle(frame, (128, 128), 60, (230, 200, 180), -1)
        self.matte(frame, Box(48, 48, 208, 208))

    def matte(self, image: Image, focus: Box | None) -> Matte:
        """Alpha in [0, 1] of ``image``'s subject: inside ``focus`` when given, else the best
        person the detector finds, else a centred box covering most of the image."""
        check_image(image)
        height, width = image.shape[:2]
        if focus is None:
            found = self._detector.detect(image, self._focus_score, 1)
            focus = found[0].box if found else self._centred(width, height)
        focus = clip(focus, width, height)
        if focus.area <= 0.0:
            raise ValueError(f"focus box {focus} does not overlap the {width}x{height} image")
        small, factor = downscale(image, self._max_side)
        small_height, small_width = small.shape[:2]
        rect = self._rect(focus, factor, small_width, small_height)
        mask = np.zeros((small_height, small_width), np.uint8)
        background = np.zeros((1, 65), np.float64)
        foreground = np.zeros((1, 65), np.float64)
        # GrabCut seeds its colour models with k-means on OpenCV's per-thread RNG: a fixed
        # seed in this thread makes the matte depend on the image only.
        cv2.setRNGSeed(0)
        try:
            labels, _, _ = cv2.grabCut(
                cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                mask,
                rect,
                background,
                foreground,
                self._iterations,
                cv2.GC_INIT_WITH_RECT,
            )
            hard = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
        except cv2.error:
            # An image of a few pixels leaves GrabCut no samples for one of its colour
            # models (or no room for a background around the focus): the focus box itself
            # is the best cut there is.
            hard = self._box_mask(focus, factor, small_width, small_height)
        # A one-pixel blur at the working size softens the staircase edge of the binary cut,
        # and the upscale below widens it in proportion.
        soft = cv2.GaussianBlur(hard, (0, 0), sigmaX=1.0)
        alpha = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
        result: Matte = np.clip(alpha, 0.0, 1.0).astype(np.float32)
        return result

    @staticmethod
    def _box_mask(focus: Box, factor: float, width: int, height: int) -> Matte:
        """1 inside ``focus`` (scaled by ``factor``, at least one pixel), 0 elsewhere."""
        x0 = min(width - 1, int(focus.x_min * factor))
        y0 = min(height - 1, int(focus.y_min * factor))
        x1 = max(x0 + 1, math.ceil(focus.x_max * factor))
        y1 = max(y0 + 1, math.ceil(focus.y_max * factor))
        mask: Matte = np.zeros((height, width), np.float32)
        mask[y0:y1, x0:x1] = 1.0
        return mask

    @staticmethod
    def _centred(width: int, height: int) -> Box:
        return Box(
            width * _FALLBACK_MARGIN,
            height * _FALLBACK_MARGIN,
            width * (1 - _FALLBACK_MARGIN),
            height * (1 - _FALLBACK_MARGIN),
        )

    @staticmethod
    def _rect(focus: Box, factor: float, width: int, height: int) -> tuple[int, int, int, int]:
        """``focus`` as GrabCut's (x, y, w, h) at the working size, shrunk when it would leave
        too little of the image outside it for GrabCut's background model."""
        x0 = min(width - 1, int(focus.x_min * factor))
        y0 = min(height - 1, int(focus.y_min * factor))
        x1 = max(x0 + 1, min(width, math.ceil(focus.x_max * factor)))
        y1 = max(y0 + 1, min(height, math.ceil(focus.y_max * factor)))
        if (x1 - x0) * (y1 - y0) > (1 - _MIN_BACKGROUND_FRACTION) * width * height:
            margin_x = math.ceil(width * _MIN_BACKGROUND_FRACTION / 2)
            margin_y = math.ceil(height * _MIN_BACKGROUND_FRACTION / 2)
            x0, y0 = max(x0, margin_x), max(y0, margin_y)
            x1, y1 = min(x1, width - margin_x), min(y1, height - margin_y)
        return x0, y0, x1 - x0, y1 - y0
