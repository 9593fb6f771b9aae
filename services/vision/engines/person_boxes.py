"""Box arithmetic the detectors share: clipping, scaling and comparing boxes, growing a face
into the box of its person, and merging detections of one person (non-maximum suppression)."""

from __future__ import annotations

from dataclasses import dataclass

from services.vision.engines.base import Box, Detection

# Boxes overlapping this much (IoU), or one lying this much inside another (intersection over
# the smaller box), are the same person: a face-grown box and a body box for one person
# rarely reach a high IoU, but the smaller sits inside the larger.
PERSON_IOU = 0.45
PERSON_CONTAINED = 0.8


@dataclass(frozen=True)
class FaceProportions:
    """Where a person is, relative to a face detector's box (in units of that box): how
    wide the shoulders are, and how far the person reaches above and below the box's top.
    Each face detector draws its box differently, so each has its own."""

    width: float
    above: float
    below: float


def clip(box: Box, width: float, height: float) -> Box:
    """``box`` cut to the ``width`` x ``height`` image."""
    return Box(
        max(0.0, min(width, box.x_min)),
        max(0.0, min(height, box.y_min)),
        max(0.0, min(width, box.x_max)),
        max(0.0, min(height, box.y_max)),
    )


def scale(box: Box, factor: float) -> Box:
    """``box`` with every coordinate multiplied by ``factor``."""
    return Box(box.x_min * factor, box.y_min * factor, box.x_max * factor, box.y_max * factor)


def intersection(a: Box, b: Box) -> float:
    """The area ``a`` and ``b`` share."""
    return Box(
        max(a.x_min, b.x_min), max(a.y_min, b.y_min), min(a.x_max, b.x_max), min(a.y_max, b.y_max)
    ).area


def iou(a: Box, b: Box) -> float:
    """Intersection over union (0 for boxes that do not overlap)."""
    inter = intersection(a, b)
    return inter / (a.area + b.area - inter) if inter > 0.0 else 0.0


def overlapping(a: Box, b: Box, min_iou: float, contained: float) -> bool:
    """Whether ``a`` and ``b`` reach ``min_iou``, or the smaller lies ``contained`` inside
    the larger (as a share of its area)."""
    inter = intersection(a, b)
    if inter <= 0.0:
        return False
    return iou(a, b) >= min_iou or inter / min(a.area, b.area) >= contained


def suppress(detections: list[Detection]) -> list[Detection]:
    """Greedy non-maximum suppression of person boxes: best first, each kept unless it is
    the same person (see ``PERSON_IOU``) as one already kept."""
    kept: list[Detection] = []
    for candidate in sorted(detections, key=lambda d: d.score, reverse=True):
        if not any(overlapping(candidate.box, k.box, PERSON_IOU, PERSON_CONTAINED) for k in kept):
            kept.append(candidate)
    return kept


def face_to_person(face: Box, proportions: FaceProportions, width: float, height: float) -> Box:
    """The box of the person whose face is ``face``, clipped to a ``width`` x ``height`` image."""
    face_w = face.x_max - face.x_min
    face_h = face.y_max - face.y_min
    centre = (face.x_min + face.x_max) / 2
    half = proportions.width * face_w / 2
    return clip(
        Box(
            centre - half,
            face.y_min - proportions.above * face_h,
            centre + half,
            face.y_min + proportions.below * face_h,
        ),
        width,
        height,
    )
