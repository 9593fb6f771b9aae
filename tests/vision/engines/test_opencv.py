"""The weight-free engines on real photos: OpenCV's HOG and Haar detectors, and GrabCut."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import skimage.data

from services.vision.engines.base import Box, Detection, Image, Matte
from services.vision.engines.opencv import HAAR_FACE, GrabCutMatte, OpenCvPersonDetector
from services.vision.engines.person_boxes import face_to_person

# Read off the astronaut photo with the boxes drawn on it: the orange suit reaches the left
# edge near x 20 at the bottom and the shoulder ends near x 365; the helmet on the right
# (x 280-500, y 340-512) is an object, not the person. Regions are (x0, y0, x1, y1).
ASTRONAUT_PERSON = Box(20, 12, 365, 512)
ASTRONAUT_FACE = (180, 80, 260, 160)
ASTRONAUT_TORSO = (100, 300, 250, 450)
# The wall by the shuttle (inside the person's box, so GrabCut must decide it), the top-right
# corner and the flag.
ASTRONAUT_BACKGROUND = ((310, 30, 350, 120), (470, 0, 512, 60), (0, 0, 50, 150))


@pytest.fixture(scope="module")
def astronaut() -> Image:
    """scikit-image's 512x512 RGB portrait."""
    image: Image = skimage.data.astronaut()
    return image


@pytest.fixture(scope="module")
def detector() -> OpenCvPersonDetector:
    """A loaded, warmed-up detector shared by the module."""
    engine = OpenCvPersonDetector()
    engine.load()
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def matting(detector: OpenCvPersonDetector) -> GrabCutMatte:
    """A loaded, warmed-up GrabCut matte finding people with ``detector``."""
    engine = GrabCutMatte(detector)
    engine.load()
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def astronaut_matte(matting: GrabCutMatte, astronaut: Image) -> Matte:
    """The astronaut's matte with no focus given, so the detector places the cut."""
    return matting.matte(astronaut, None)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    inter = Box(
        max(a.x_min, b.x_min), max(a.y_min, b.y_min), min(a.x_max, b.x_max), min(a.y_max, b.y_max)
    ).area
    return inter / (a.area + b.area - inter)


def region_mean(matte: Matte, region: tuple[int, int, int, int]) -> float:
    """Mean alpha inside (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = region
    return float(matte[y0:y1, x0:x1].mean())


def side_by_side(image: Image) -> Image:
    """Two copies of ``image`` next to each other: a photo with two people."""
    pair: Image = np.ascontiguousarray(np.hstack([image, image]))
    return pair


def noise(seed: int) -> Iterator[Image]:
    """Uniform RGB noise frames."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)


def test_finds_the_astronaut(detector: OpenCvPersonDetector, astronaut: Image) -> None:
    found = detector.detect(astronaut, 0.5, 0)

    assert found, "no person found in the astronaut portrait"
    assert iou(found[0].box, ASTRONAUT_PERSON) > 0.6
    assert found[0].score > 0.9  # a clear frontal face


def test_boxes_lie_in_the_image_best_first(
    detector: OpenCvPersonDetector, astronaut: Image
) -> None:
    for image in (astronaut, side_by_side(astronaut), next(noise(1))):
        height, width = image.shape[:2]
        found = detector.detect(image, 0.0, 0)

        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
        for detection in found:
            assert 0.0 <= detection.score <= 1.0
            assert detection.label == "person"
            box = detection.box
            assert 0 <= box.x_min < box.x_max <= width
            assert 0 <= box.y_min < box.y_max <= height


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_nothing_found_in_blank_or_noise(detector: OpenCvPersonDetector, kind: str) -> None:
    image = np.zeros((480, 640, 3), np.uint8) if kind == "blank" else next(noise(7))

    assert detector.detect(image, 0.5, 0) == []


def test_respects_score_threshold_and_max_detections(
    detector: OpenCvPersonDetector, astronaut: Image
) -> None:
    pair = side_by_side(astronaut)
    everyone = detector.detect(pair, 0.0, 0)
    assert len(everyone) >= 2, everyone
    lefts = sorted(d.box.x_min for d in everyone if d.score > 0.9)
    assert len(lefts) == 2
    assert lefts[1] - lefts[0] == pytest.approx(512, abs=2)

    assert detector.detect(pair, 0.0, 1) == everyone[:1]
    assert detector.detect(pair, 0.0, len(everyone) + 5) == everyone
    cut = (everyone[0].score + everyone[-1].score) / 2
    assert detector.detect(pair, cut, 0) == [d for d in everyone if d.score >= cut]
    assert detector.detect(pair, 1.0, 0) == [d for d in everyone if d.score >= 1.0]


def test_large_image_boxes_are_in_its_own_pixels(
    detector: OpenCvPersonDetector, astronaut: Image
) -> None:
    side = 2000
    large = np.asarray(cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_CUBIC), np.uint8)
    scale = side / astronaut.shape[0]

    small_box = detector.detect(astronaut, 0.5, 1)[0].box
    large_box = detector.detect(large, 0.5, 1)[0].box

    scaled = Box(
        small_box.x_min * scale,
        small_box.y_min * scale,
        small_box.x_max * scale,
        small_box.y_max * scale,
    )
    assert large_box.x_max <= side
    assert large_box.y_max <= side
    assert large_box.x_max > 1000  # not left in the 640-pixel working copy's coordinates
    assert iou(large_box, scaled) > 0.85


def test_tiny_image_gives_no_error(detector: OpenCvPersonDetector) -> None:
    assert detector.detect(np.full((30, 40, 3), 200, np.uint8), 0.0, 0) == []


def test_rejects_an_image_that_is_not_rgb(detector: OpenCvPersonDetector) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((64, 64), np.uint8), 0.5, 0)


def test_concurrent_detection_matches_sequential(
    detector: OpenCvPersonDetector, astronaut: Image
) -> None:
    images = [astronaut, side_by_side(astronaut), next(noise(3)), astronaut[::2, ::2].copy()]
    sequential = [detector.detect(image, 0.0, 0) for image in images]

    def run(image: Image) -> list[Detection]:
        return detector.detect(image, 0.0, 0)

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, images))

    assert concurrent == sequential


def test_face_grows_into_a_clipped_person_box() -> None:
    person = face_to_person(Box(100, 50, 140, 90), HAAR_FACE, 300, 200)

    assert person == Box(50, 26, 190, 200)


def test_matte_covers_the_astronaut_not_the_background(astronaut_matte: Matte) -> None:
    assert astronaut_matte.dtype == np.float32
    assert astronaut_matte.shape == (512, 512)
    assert float(astronaut_matte.min()) >= 0.0
    assert float(astronaut_matte.max()) <= 1.0
    assert region_mean(astronaut_matte, ASTRONAUT_FACE) > 0.9
    assert region_mean(astronaut_matte, ASTRONAUT_TORSO) > 0.9
    for region in ASTRONAUT_BACKGROUND:
        assert region_mean(astronaut_matte, region) < 0.1, region


def test_matte_edge_is_soft(astronaut_matte: Matte) -> None:
    partial = (astronaut_matte > 0.05) & (astronaut_matte < 0.95)

    assert partial.any()
    assert partial.mean() < 0.05  # a thin band, not a haze


def test_matte_with_focus_keeps_outside_as_background(
    matting: GrabCutMatte, astronaut: Image
) -> None:
    face_only = matting.matte(astronaut, Box(140, 10, 310, 210))

    assert region_mean(face_only, ASTRONAUT_FACE) > 0.9
    assert region_mean(face_only, ASTRONAUT_TORSO) < 0.05


def test_matte_of_a_large_image_has_its_size(matting: GrabCutMatte, astronaut: Image) -> None:
    large = np.asarray(cv2.resize(astronaut, (1500, 1000), interpolation=cv2.INTER_AREA), np.uint8)

    matte = matting.matte(large, None)

    assert matte.shape == (1000, 1500)
    assert matte.dtype == np.float32


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_matte_without_a_person_gives_no_error(matting: GrabCutMatte, kind: str) -> None:
    image = np.zeros((240, 320, 3), np.uint8) if kind == "blank" else next(noise(5))[:240, :320]

    matte = matting.matte(np.ascontiguousarray(image), None)

    assert matte.shape == (240, 320)
    assert np.all((matte >= 0.0) & (matte <= 1.0))


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 2), (1, 7), (2, 1)])
def test_an_image_of_a_few_pixels_is_cut_by_its_focus(
    matting: GrabCutMatte, height: int, width: int
) -> None:
    # Too few pixels for GrabCut's colour models: the focus box is the cut.
    image = np.ascontiguousarray(next(noise(7))[:height, :width])

    matte = matting.matte(image, None)
    focused = matting.matte(image, Box(0, 0, 1, 1))

    assert matte.shape == focused.shape == (height, width)
    assert np.all((matte >= 0.0) & (matte <= 1.0))
    assert focused[0, 0] > 0.0


def test_matte_rejects_a_focus_outside_the_image(matting: GrabCutMatte, astronaut: Image) -> None:
    with pytest.raises(ValueError, match="does not overlap"):
        matting.matte(astronaut, Box(600, 600, 700, 700))


def test_concurrent_mattes_match_sequential(matting: GrabCutMatte, astronaut: Image) -> None:
    half = np.ascontiguousarray(astronaut[::2, ::2])
    focus = Box(30, 5, 195, 256)
    sequential = matting.matte(half, focus)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: matting.matte(half, focus), range(4)))

    for result in results:
        np.testing.assert_array_equal(result, sequential)
