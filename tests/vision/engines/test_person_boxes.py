"""The box arithmetic the detectors share, and the windows the MediaPipe models look at."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.vision.engines.base import Box, Detection
from services.vision.engines.person_boxes import FaceProportions, face_to_person, iou, suppress
from services.vision.engines.windows import windows


def test_iou() -> None:
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou(Box(0, 0, 10, 10), Box(10, 0, 20, 10)) == 0.0


def test_suppression_keeps_the_best_of_one_person_and_everyone_else() -> None:
    head = Detection(Box(40, 0, 60, 20), 0.6)
    body = Detection(Box(0, 0, 100, 200), 0.9)  # holds the head box: the same person
    shifted = Detection(Box(5, 5, 105, 205), 0.8)  # IoU 0.9 with the body
    neighbour = Detection(Box(110, 0, 210, 200), 0.7)

    assert suppress([head, shifted, neighbour, body]) == [body, neighbour]


def test_a_face_grows_by_the_detectors_proportions() -> None:
    proportions = FaceProportions(width=3.0, above=0.5, below=6.0)

    assert face_to_person(Box(100, 50, 140, 90), proportions, 1000, 1000) == Box(60, 30, 180, 290)
    assert face_to_person(Box(100, 50, 140, 90), proportions, 150, 200) == Box(60, 30, 150, 200)


@pytest.mark.parametrize(
    ("length", "window", "most"),
    [(512, 342, 5), (1280, 400, 5), (1280, 533, 5), (300, 1, 5), (3000, 9, 3), (100, 100, 5)],
)
def test_windows_cover_with_half_overlap_and_are_bounded(
    length: int, window: int, most: int
) -> None:
    spans = windows(length, window, most)

    assert 1 <= len(spans) <= most
    cover = np.zeros(length, np.int32)
    for start, size in spans:
        assert size >= min(window, length)
        assert 0 <= start < start + size <= length
        cover[start : start + size] += 1
    assert cover.min() >= 1
    for (first, size), (second, _) in itertools.pairwise(spans):
        assert second - first <= size / 2 + 1
