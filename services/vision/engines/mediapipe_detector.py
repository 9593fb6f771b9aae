"""People from three weight-light models: MediaPipe's BlazeFace faces and selfie
segmentation (both packaged in the pinned mediapipe wheel), and OpenCV's HOG for full bodies.

The photos this serves hold one to four people, often cut off by the frame, so no single
cue finds everyone: a face is the surest sign of a person but says little about the body's
extent; the segmentation outlines every person but also marks some objects (scikit-image's
coffee cup, cat and coins come out as confidently as people) and cannot tell two touching
people apart; HOG finds upright full bodies, whose faces may be too small. So:

1. faces are grown into person boxes, and a face inside another face's person box (a false
   face on a sweater, say) is dropped by non-maximum suppression;
2. the segmentation's regions are split among the faces they hold (``person_regions``);
   a face whose region is large enough gets the region's box (no wider than a person
   reaches from that face), else its grown box;
3. regions without a face, and HOG's bodies, are people of their own;
4. everything goes through the same non-maximum suppression as the opencv detector's.

Scores. Each cue's score is read as the chance it is right on its own, and a face and its
region are combined as independent evidence: ``1 - (1 - a)(1 - b)``. The face's is
BlazeFace's probability (faces below 0.5, MediaPipe's own cut, are dropped); the
segmentation's is its mean probability over the region times ``SEGMENTATION_WEIGHT`` (0.3),
because of the objects it mistakes for people: a region with no face scores at most 0.3;
HOG's is its squashed margin (see ``hog``). The clear astronaut scores 0.975 (face 0.964).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.vision.engines.base import Box, Detection, Image, PersonDetector, check_image
from services.vision.engines.blazeface import BlazeFace
from services.vision.engines.hog import HogBodyDetector
from services.vision.engines.person_boxes import (
    FaceProportions,
    clip,
    face_to_person,
    scale,
    suppress,
)
from services.vision.engines.person_regions import Region, person_regions
from services.vision.engines.resizing import downscale
from services.vision.engines.selfie_segmenter import SelfieSegmenter

SEGMENTATION_WEIGHT = 0.3
MIN_FACE_SCORE = 0.5
# BlazeFace's box runs from the brows to below the chin, much like the Haar cascade's
# (measured on the astronaut: hair from 0.6 box heights above it, shoulders 3.5 box widths).
BLAZEFACE_FACE = FaceProportions(width=3.5, above=0.6, below=7.0)
# How far to each side of the face's centre a person reaches, in face widths (arms out):
# the segmentation also marks what people hold (the astronaut's helmet), which a person's
# box leaves out beyond this. Up and down the region is the person's (raised hands, legs).
_REACH = 2.25
# The segmentation model sees 256 pixels; its map is analysed at that size.
_SEGMENTATION_SIDE = 256
# A face's region must cover this share of its grown person box, or the segmentation saw
# too little of that person (just the head, say) for its box to be the person's.
_REGION_COVERS_PERSON = 0.25
# A region with no face must cover this share of the image to count.
_MIN_REGION_AREA = 0.01
# HOG's window is 64x128: at 480 pixels it finds people a quarter of the height or taller,
# about twice as fast as at 640.
_HOG_SIDE = 480


class MediaPipePersonDetector(PersonDetector):
    """People from faces, segmentation and HOG; safe to call from several threads."""

    name = "mediapipe"

    def __init__(self, models: Path) -> None:
        """Read the MediaPipe models from the ``models`` folder at ``load()``."""
        self._faces = BlazeFace(models, MIN_FACE_SCORE)
        self._segmenter = SelfieSegmenter(models)
        self._bodies = HogBodyDetector(_HOG_SIDE)

    def load(self) -> None:
        """Read the face and segmentation models and build HOG; FileNotFoundError names a
        missing model file."""
        self._faces.load()
        self._segmenter.load()
        self._bodies.load()

    def warm_up(self) -> None:
        """Detect once on a grey frame so every model and OpenCV's buffers have run."""
        self.detect(np.full((480, 640, 3), 128, np.uint8), 0.0, 0)

    def detect(self, image: Image, score_threshold: float, max_detections: int) -> list[Detection]:
        """People in ``image`` scoring at least ``score_threshold``, best first, at most
        ``max_detections`` (0: no limit)."""
        check_image(image)
        height, width = image.shape[:2]
        faces = self._distinct_faces(image)
        small, factor = downscale(image, _SEGMENTATION_SIDE)
        regions = person_regions(
            self._segmenter.probability(small),
            [scale(face.box, factor) for face in faces],
            _MIN_REGION_AREA,
        )
        found = [self._person(region, faces, factor, width, height) for region in regions]
        with_region = {region.face for region in regions if region.face is not None}
        found += [
            Detection(face_to_person(face.box, BLAZEFACE_FACE, width, height), face.score)
            for index, face in enumerate(faces)
            if index not in with_region
        ]
        found += self._bodies.bodies(image)
        kept = [d for d in suppress(found) if d.score >= score_threshold]
        return kept[:max_detections] if max_detections > 0 else kept

    def _distinct_faces(self, image: Image) -> list[Detection]:
        """BlazeFace's faces, less those lying inside a better face's person box."""
        height, width = image.shape[:2]
        grown = {
            Detection(face_to_person(face.box, BLAZEFACE_FACE, width, height), face.score): face
            for face in self._faces.faces(image)
        }
        return [grown[person] for person in suppress(list(grown))]

    @staticmethod
    def _person(
        region: Region, faces: list[Detection], factor: float, width: int, height: int
    ) -> Detection:
        """The person a region (in pixels of the map, ``factor`` times the image's) shows."""
        box = clip(scale(region.box, 1 / factor), width, height)
        evidence = SEGMENTATION_WEIGHT * region.probability
        if region.face is None:
            return Detection(box, evidence)
        face = faces[region.face]
        grown = face_to_person(face.box, BLAZEFACE_FACE, width, height)
        if box.area < _REGION_COVERS_PERSON * grown.area:
            return Detection(grown, face.score)
        centre = (face.box.x_min + face.box.x_max) / 2
        reach = _REACH * (face.box.x_max - face.box.x_min)
        box = Box(
            max(centre - reach, min(box.x_min, face.box.x_min)),
            min(box.y_min, face.box.y_min),
            min(centre + reach, max(box.x_max, face.box.x_max)),
            max(box.y_max, face.box.y_max),
        )
        return Detection(box, 1.0 - (1.0 - face.score) * (1.0 - evidence))
