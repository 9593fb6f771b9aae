"""The mediapipe detector (BlazeFace faces, selfie segmentation and HOG) on real photos, and
its parts: BlazeFace's anchors and tiles, and the split of segmentation regions."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from devtools.builders.photos import (
    FOUR_IN_A_ROW,
    PERSON_BOX,
    TORSO,
    TWO_APART,
    TWO_TOUCHING,
    Placed,
    astronaut,
    bounds,
    finds,
    four_in_a_row,
    holds,
    two_apart,
    two_touching,
)
from services.vision.engines.base import Box, Detection, Image
from services.vision.engines.blazeface import INPUT, MODEL, BlazeFace, anchors, tiles
from services.vision.engines.mediapipe_detector import (
    SEGMENTATION_WEIGHT,
    MediaPipePersonDetector,
)
from services.vision.engines.person_boxes import intersection
from services.vision.engines.person_regions import person_regions
from services.vision.settings import MEDIAPIPE_MODELS


@pytest.fixture(scope="module")
def detector() -> MediaPipePersonDetector:
    """The detector with the packaged models, loaded and warmed up."""
    engine = MediaPipePersonDetector(MEDIAPIPE_MODELS)
    engine.load()
    engine.warm_up()
    return engine


def covered(box: Box, by: Box) -> float:
    """Share of ``box`` inside ``by``."""
    return intersection(box, by) / box.area


def test_finds_the_astronaut(detector: MediaPipePersonDetector) -> None:
    found = detector.detect(astronaut(), 0.5, 0)

    assert len(found) == 1
    [person] = found
    assert person.label == "person"
    assert person.score > 0.9  # a clear face and a clear outline
    assert covered(PERSON_BOX, person.box) > 0.95
    assert covered(person.box, PERSON_BOX) > 0.7  # the rest: the helmet she holds


@pytest.mark.parametrize(
    ("photo", "people"),
    [(two_apart, TWO_APART), (two_touching, TWO_TOUCHING), (four_in_a_row, FOUR_IN_A_ROW)],
    ids=["two apart", "two touching", "four in a row"],
)
def test_finds_everyone_with_one_box_each(
    detector: MediaPipePersonDetector, photo: Callable[[], Image], people: tuple[Placed, ...]
) -> None:
    found = detector.detect(photo(), 0.5, 0)

    assert len(found) == len(people), found
    for placed in people:
        assert len([d for d in found if finds(d, placed, people)]) == 1, (placed, found)
    assert all(d.score > 0.85 for d in found)


@pytest.mark.parametrize(
    "crop",
    [
        (slice(0, 300), slice(0, 512)),
        (slice(0, 512), slice(150, 512)),
        (slice(40, 260), slice(60, 420)),
    ],
    ids=["cut at the chest", "cut through the shoulder", "head and shoulders"],
)
def test_finds_a_person_cut_off_by_the_frame(
    detector: MediaPipePersonDetector, crop: tuple[slice, slice]
) -> None:
    image = np.ascontiguousarray(astronaut()[crop])
    top, left = crop[0].start, crop[1].start

    found = detector.detect(image, 0.5, 0)

    assert len(found) == 1
    face_x, face_y = 225 - left, 90 - top
    assert holds(found[0].box, (face_x, face_y))


def test_a_person_whose_face_is_hidden_is_found_by_her_outline(
    detector: MediaPipePersonDetector,
) -> None:
    image = astronaut()
    image[30:190, 150:310] = cv2.GaussianBlur(image[30:190, 150:310], (0, 0), 25)

    found = detector.detect(image, 0.25, 0)

    assert len(found) == 1
    assert covered(bounds(TORSO), found[0].box) > 0.95


def test_the_face_and_the_outline_together_outscore_either(
    detector: MediaPipePersonDetector,
) -> None:
    faces = BlazeFace(MEDIAPIPE_MODELS, 0.5)
    faces.load()
    face = faces.faces(astronaut())[0]

    [person] = detector.detect(astronaut(), 0.5, 0)

    assert face.score < person.score <= 1.0


@pytest.mark.parametrize("kind", ["blank", "noise", "rocket"])
def test_nothing_found_without_people(detector: MediaPipePersonDetector, kind: str) -> None:
    images: dict[str, Callable[[], Image]] = {
        "blank": lambda: np.zeros((480, 640, 3), np.uint8),
        "noise": lambda: np.random.default_rng(7).integers(0, 256, (480, 640, 3), np.uint8),
        "rocket": lambda: np.ascontiguousarray(data.rocket(), np.uint8),
    }

    assert detector.detect(images[kind](), 0.25, 0) == []


def test_objects_the_segmentation_takes_for_people_score_low(
    detector: MediaPipePersonDetector,
) -> None:
    """The selfie model marks scikit-image's coffee cup and coins as confidently as a
    person; with no face there, they score no more than the segmentation's weight."""
    for image in (data.coffee(), cv2.cvtColor(data.coins(), cv2.COLOR_GRAY2RGB)):
        found = detector.detect(np.ascontiguousarray(image), 0.0, 0)

        assert all(d.score <= SEGMENTATION_WEIGHT for d in found)


def test_boxes_lie_in_the_image_best_first(detector: MediaPipePersonDetector) -> None:
    for image in (
        astronaut(),
        two_touching(),
        four_in_a_row(),
        np.ascontiguousarray(data.coffee()),
    ):
        height, width = image.shape[:2]
        found = detector.detect(image, 0.0, 0)

        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
        for detection in found:
            assert 0.0 <= detection.score <= 1.0
            assert detection.label == "person"
            box = detection.box
            assert 0 <= box.x_min < box.x_max <= width
            assert 0 <= box.y_min < box.y_max <= height


def test_respects_score_threshold_and_max_detections(detector: MediaPipePersonDetector) -> None:
    photo = four_in_a_row()
    everyone = detector.detect(photo, 0.0, 0)
    assert len(everyone) >= 4

    assert detector.detect(photo, 0.0, 1) == everyone[:1]
    assert detector.detect(photo, 0.0, len(everyone) + 5) == everyone
    cut = (everyone[1].score + everyone[2].score) / 2
    assert detector.detect(photo, cut, 0) == [d for d in everyone if d.score >= cut]
    assert detector.detect(photo, 1.0, 0) == [d for d in everyone if d.score >= 1.0]


def test_large_image_boxes_are_in_its_own_pixels(detector: MediaPipePersonDetector) -> None:
    side = 2000
    large = cv2.resize(astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    scale = side / 512

    [small_box] = [d.box for d in detector.detect(astronaut(), 0.5, 0)]
    [large_box] = [d.box for d in detector.detect(np.ascontiguousarray(large), 0.5, 0)]

    scaled = Box(
        small_box.x_min * scale,
        small_box.y_min * scale,
        small_box.x_max * scale,
        small_box.y_max * scale,
    )
    assert (
        intersection(large_box, scaled)
        / (large_box.area + scaled.area - intersection(large_box, scaled))
        > 0.85
    )


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (8, 8), (30, 40), (1, 300), (300, 1)])
def test_tiny_and_thin_images_give_no_error(
    detector: MediaPipePersonDetector, shape: tuple[int, int]
) -> None:
    found = detector.detect(np.full((*shape, 3), 200, np.uint8), 0.0, 0)

    for detection in found:
        assert 0 <= detection.box.x_min < detection.box.x_max <= shape[1]


def test_rejects_an_image_that_is_not_rgb(detector: MediaPipePersonDetector) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((64, 64, 4), np.uint8), 0.5, 0)


def test_concurrent_detection_matches_sequential(detector: MediaPipePersonDetector) -> None:
    images = [astronaut(), two_touching(), four_in_a_row(), np.ascontiguousarray(astronaut()[::2])]
    sequential = [detector.detect(image, 0.0, 0) for image in images]

    def run(image: Image) -> list[Detection]:
        return detector.detect(image, 0.0, 0)

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(run, images * 2))

    assert together == sequential * 2


def test_a_missing_model_names_the_file_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        MediaPipePersonDetector(tmp_path).load()

    assert str(tmp_path / MODEL) in str(raised.value)
    assert "CHORUS_MEDIAPIPE_MODELS" in str(raised.value)


def test_blazeface_anchors_are_the_short_range_grids() -> None:
    centres = anchors()

    assert centres.shape == (896, 2)
    # 16x16 cells with two anchors each, then 8x8 with six, row by row.
    np.testing.assert_allclose(centres[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(centres[1], centres[0])
    np.testing.assert_allclose(centres[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(centres[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(centres[-1], [7.5 / 8, 7.5 / 8])


def test_blazeface_finds_the_astronauts_face() -> None:
    faces = BlazeFace(MEDIAPIPE_MODELS, 0.5)
    faces.load()

    found = faces.faces(astronaut())

    # Best first: her face; then a weaker false one on her suit, which the detector drops
    # because it lies inside her person box.
    face = found[0]
    assert face.label == "face"
    assert face.score > 0.9
    assert holds(face.box, (225, 100))
    assert 80 < face.box.x_max - face.box.x_min < 130
    assert all(other.score < 0.7 for other in found[1:])


@pytest.mark.parametrize(("width", "height"), [(512, 512), (1280, 400), (400, 1280), (1280, 720)])
def test_tiles_cover_the_image_with_overlap(width: int, height: int) -> None:
    views = tiles(width, height)

    covered_pixels = np.zeros((height, width), np.int32)
    for left, top, right, bottom in views:
        assert 0 <= left < right <= width
        assert 0 <= top < bottom <= height
        covered_pixels[top:bottom, left:right] += 1
    assert covered_pixels.min() >= 1
    assert len(views) <= 10


def test_small_images_are_not_tiled() -> None:
    assert tiles(INPUT, INPUT) == []
    assert tiles(190, 100) == []


def test_a_region_holding_two_faces_is_split_between_them() -> None:
    probability = np.zeros((100, 200), np.float32)
    probability[20:100, 10:190] = 0.9  # two people merged into one blob
    faces = [Box(30, 25, 60, 55), Box(130, 25, 160, 55)]

    regions = person_regions(probability, faces, 0.01)

    assert sorted(r.face for r in regions if r.face is not None) == [0, 1]
    by_face = {r.face: r.box for r in regions}
    assert by_face[0].x_min == 10
    assert by_face[1].x_max == 190
    assert by_face[0].x_max == pytest.approx(by_face[1].x_min, abs=1)
    assert all(r.probability == pytest.approx(0.9) for r in regions)


def test_a_faceless_region_counts_only_when_large_enough() -> None:
    probability = np.zeros((100, 100), np.float32)
    probability[10:15, 10:15] = 0.8  # 25 pixels: 0.25% of the map
    probability[40:90, 40:90] = 0.8

    regions = person_regions(probability, [], 0.01)

    assert [r.box for r in regions] == [Box(40, 40, 90, 90)]
    assert regions[0].face is None
