"""The selfie matte (MediaPipe's selfie segmentation, guided-filtered) on real photos."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from devtools.builders.photos import (
    BACKGROUND,
    FACE,
    FOUR_IN_A_ROW,
    HELMET,
    PERSON,
    SIDE,
    TORSO,
    TWO_APART,
    TWO_TOUCHING,
    Polygon,
    astronaut,
    four_in_a_row,
    mask,
    two_apart,
    two_touching,
)
from services.vision.engines.base import Box, Image, Matte
from services.vision.engines.selfie import SelfieMatte
from services.vision.engines.selfie_segmenter import MODEL, SelfieSegmenter
from services.vision.settings import MEDIAPIPE_MODELS


@pytest.fixture(scope="module")
def matting() -> SelfieMatte:
    """The selfie matte with the packaged model, loaded and warmed up."""
    engine = SelfieMatte(MEDIAPIPE_MODELS)
    engine.load()
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def astronaut_matte(matting: SelfieMatte) -> Matte:
    """The astronaut's matte, no focus given."""
    return matting.matte(astronaut(), None)


def mean_in(matte: Matte, *polygons: Polygon) -> float:
    """Mean alpha inside ``polygons``."""
    return float(matte[mask(polygons, *matte.shape)].mean())


def test_matte_covers_the_astronaut_and_not_the_background(astronaut_matte: Matte) -> None:
    assert astronaut_matte.shape == (SIDE, SIDE)
    assert astronaut_matte.dtype == np.float32
    assert 0.0 <= float(astronaut_matte.min()) <= float(astronaut_matte.max()) <= 1.0
    assert mean_in(astronaut_matte, FACE) > 0.97
    assert mean_in(astronaut_matte, TORSO) > 0.97
    for region in BACKGROUND:
        assert mean_in(astronaut_matte, region) < 0.03, region
    # Against her hand-drawn outline (the helmet she holds left out of the count).
    counted = ~mask((HELMET,), SIDE, SIDE)
    cut = (astronaut_matte > 0.5) & counted
    person = mask((PERSON,), SIDE, SIDE) & counted
    assert (cut & person).sum() / (cut | person).sum() > 0.9


def test_matte_edge_is_soft_but_thin(astronaut_matte: Matte) -> None:
    partial = (astronaut_matte > 0.05) & (astronaut_matte < 0.95)

    assert partial.any()
    assert partial.mean() < 0.05


def test_refinement_puts_the_edge_on_the_photos_edges(matting: SelfieMatte) -> None:
    """The refined matte's outline lies where the photo changes most: compared with the
    model's own (upscaled) probability, its edge band sits on stronger image gradients."""
    image = astronaut()
    segmenter = SelfieSegmenter(MEDIAPIPE_MODELS)
    segmenter.load()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))

    def gradient_on_edge(matte: Matte) -> float:
        edge = cv2.Canny((matte > 0.5).astype(np.uint8) * 255, 100, 200) > 0
        return float(gradient[edge].mean())

    assert gradient_on_edge(matting.matte(image, None)) > 1.2 * gradient_on_edge(
        segmenter.probability(image)
    )


def test_focus_keeps_only_the_person_there(matting: SelfieMatte) -> None:
    photo = two_apart()
    height, width = photo.shape[:2]
    left, right = TWO_APART

    for subject, other in ((left, right), (right, left)):
        matte = matting.matte(photo, subject.box())

        assert float(matte[mask((subject.polygon(FACE),), height, width)].mean()) > 0.95
        assert float(matte[mask((subject.polygon(TORSO),), height, width)].mean()) > 0.95
        assert float(matte[mask((other.polygon(PERSON),), height, width)].max()) == 0.0


def test_focus_drops_a_person_touching_the_subject(matting: SelfieMatte) -> None:
    photo = two_touching()
    height, width = photo.shape[:2]
    left, right = TWO_TOUCHING

    matte = matting.matte(photo, left.box())

    assert (
        float(matte[mask((left.polygon(FACE), left.polygon(TORSO)), height, width)].mean()) > 0.95
    )
    assert (
        float(matte[mask((right.polygon(FACE), right.polygon(TORSO)), height, width)].max()) == 0.0
    )


def test_without_focus_everyone_is_kept(matting: SelfieMatte) -> None:
    photo = two_apart()
    height, width = photo.shape[:2]

    matte = matting.matte(photo, None)

    for placed in TWO_APART:
        assert float(matte[mask((placed.polygon(FACE),), height, width)].mean()) > 0.95


def test_a_wide_group_photo_is_matted_in_windows(matting: SelfieMatte) -> None:
    """Stretched whole into the model's square, four people in a 3.2:1 photo are too thin
    for it to see anyone; windows of at most 4:3 find all four."""
    photo = four_in_a_row()
    height, width = photo.shape[:2]

    matte = matting.matte(photo, None)

    for placed in FOUR_IN_A_ROW:
        core = mask((placed.polygon(FACE), placed.polygon(TORSO)), height, width)
        assert float(matte[core].mean()) > 0.9, placed
    assert float(matte[:60].max()) < 0.05  # the plain ground above their heads


def test_a_grey_photo_is_matted(matting: SelfieMatte) -> None:
    grey = np.asarray(
        cv2.cvtColor(cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB), np.uint8
    )

    matte = matting.matte(grey, None)

    assert mean_in(matte, FACE) > 0.9
    assert mean_in(matte, BACKGROUND[0]) < 0.1


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (8, 8), (1, 300), (300, 1), (7, 3000)])
def test_tiny_and_thin_images_give_a_matte_of_their_size(
    matting: SelfieMatte, shape: tuple[int, int]
) -> None:
    image = np.full((*shape, 3), 90, np.uint8)

    for focus in (None, Box(0, 0, shape[1], shape[0])):
        matte = matting.matte(image, focus)

        assert matte.shape == shape
        assert np.all((matte >= 0.0) & (matte <= 1.0))


def test_a_large_image_gives_a_matte_of_its_size(matting: SelfieMatte) -> None:
    large = cv2.resize(astronaut(), (1500, 1000), interpolation=cv2.INTER_CUBIC)

    matte = matting.matte(np.ascontiguousarray(large), None)

    assert matte.shape == (1000, 1500)
    assert matte.dtype == np.float32


def test_rejects_a_focus_outside_the_image(matting: SelfieMatte) -> None:
    with pytest.raises(ValueError, match="does not overlap"):
        matting.matte(astronaut(), Box(600, 600, 700, 700))


def test_rejects_an_image_that_is_not_rgb(matting: SelfieMatte) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        matting.matte(np.zeros((64, 64), np.uint8), None)


def test_concurrent_mattes_match_sequential(matting: SelfieMatte) -> None:
    images: list[Image] = [astronaut(), two_apart(), np.ascontiguousarray(astronaut()[::2, ::-1])]
    focuses = [None, TWO_APART[0].box(), Box(0, 0, 200, 256)]
    sequential = [matting.matte(image, focus) for image, focus in zip(images, focuses, strict=True)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(matting.matte, images * 3, focuses * 3))

    for index, result in enumerate(together):
        np.testing.assert_array_equal(result, sequential[index % len(images)])


def test_a_missing_model_names_the_file_and_the_setting(tmp_path: Path) -> None:
    engine = SelfieMatte(tmp_path)

    with pytest.raises(FileNotFoundError) as raised:
        engine.load()

    assert str(tmp_path / MODEL) in str(raised.value)
    assert "CHORUS_MEDIAPIPE_MODELS" in str(raised.value)


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / MODEL).write_bytes(b"not a flatbuffer")

    with pytest.raises(RuntimeError, match="not a TFLite model"):
        SelfieMatte(tmp_path).load()
