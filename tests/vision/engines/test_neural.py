"""The neural vision engines (YOLO, BiRefNet) on real models built by ``tiny_models``.

The models have random or hand-set weights, so these tests check the plumbing (formats,
colour order, coordinates, limits, threads), not the quality of what they find.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image as PilImage
from PIL import UnidentifiedImageError
from skimage import data

from devtools.builders.tiny_vision_models import (
    build_birefnet_like_onnx,
    build_yolo_pt,
    export_yolo_onnx,
)
from services.vision.engines.base import Box, Detection, Image
from services.vision.engines.birefnet import BiRefNetMatte
from services.vision.engines.yolo import YoloPersonDetector, offline_ultralytics

ONNX_SIZE = 320
# The tiny YOLO scores every person 0.5 (see tiny_models.build_yolo_pt).
THRESHOLD = 0.25
T = TypeVar("T")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for the models, with ultralytics kept offline and its settings inside it."""
    directory = tmp_path_factory.mktemp("neural-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_OFFLINE", "1")
        patch.setenv("YOLO_CONFIG_DIR", str(directory / "ultralytics"))
        yield directory


@pytest.fixture(scope="module")
def yolo_pt(model_dir: Path) -> YoloPersonDetector:
    """The tiny YOLO as a ``.pt`` checkpoint, loaded and warmed up."""
    detector = YoloPersonDetector(build_yolo_pt(model_dir), device="cpu")
    detector.load()
    detector.warm_up()
    return detector


@pytest.fixture(scope="module")
def yolo_onnx(model_dir: Path, yolo_pt: YoloPersonDetector) -> YoloPersonDetector:
    """The same YOLO exported to ONNX at ``ONNX_SIZE``, loaded and warmed up."""
    path = export_yolo_onnx(yolo_pt.model_path, image_size=ONNX_SIZE)
    detector = YoloPersonDetector(path, device="cpu", image_size=ONNX_SIZE)
    detector.load()
    detector.warm_up()
    return detector


@pytest.fixture(scope="module")
def birefnet(model_dir: Path) -> BiRefNetMatte:
    """The BiRefNet-shaped ONNX net, loaded and warmed up."""
    matting = BiRefNetMatte(build_birefnet_like_onnx(model_dir / "birefnet-like.onnx"), "cpu")
    matting.load()
    matting.warm_up()
    return matting


def astronaut() -> Image:
    """A portrait of a person (512x512)."""
    return np.asarray(data.astronaut(), dtype=np.uint8)


def bright_square() -> Image:
    """Black, with a white square at rows 100-200, columns 150-300 (300x400)."""
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    image[100:200, 150:300] = 255
    return image


def assert_valid(detections: list[Detection], image: Image) -> None:
    """Detections are people, inside the image, scored in [0, 1] and best first."""
    height, width = image.shape[:2]
    for detection in detections:
        assert isinstance(detection, Detection)
        assert detection.label == "person"
        assert 0.0 <= detection.score <= 1.0
        box = detection.box
        assert 0.0 <= box.x_min <= box.x_max <= width
        assert 0.0 <= box.y_min <= box.y_max <= height
    scores = [detection.score for detection in detections]
    assert scores == sorted(scores, reverse=True)


def assert_same(left: list[Detection], right: list[Detection]) -> None:
    """The same detections, up to float noise between batched and single runs."""
    assert len(left) == len(right)

    def table(detections: list[Detection]) -> np.ndarray:
        rows = [(d.score, d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in detections]
        return np.array(sorted(rows)).reshape(-1, 5)

    np.testing.assert_allclose(table(left), table(right), atol=1e-3, rtol=1e-3)


def in_threads(call: Callable[[], T], count: int) -> list[T]:
    """``call`` made ``count`` times from ``count`` threads at once."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(call) for _ in range(count)]
        return [future.result() for future in futures]


def test_yolo_pt_detects_people_in_original_pixels(yolo_pt: YoloPersonDetector) -> None:
    image = astronaut()
    detections = yolo_pt.detect(image, score_threshold=THRESHOLD, max_detections=0)
    assert isinstance(detections, list)
    assert detections
    assert_valid(detections, image)
    assert all(d.score >= THRESHOLD for d in detections)


def test_yolo_respects_max_detections(yolo_pt: YoloPersonDetector) -> None:
    image = astronaut()
    unlimited = yolo_pt.detect(image, score_threshold=THRESHOLD, max_detections=0)
    limited = yolo_pt.detect(image, score_threshold=THRESHOLD, max_detections=2)
    assert len(unlimited) > 2
    assert len(limited) == 2
    assert yolo_pt.detect(image, score_threshold=0.6, max_detections=0) == []


def test_yolo_onnx_export_runs_through_the_same_engine(yolo_onnx: YoloPersonDetector) -> None:
    assert yolo_onnx.model_path.suffix == ".onnx"
    image = astronaut()
    detections = yolo_onnx.detect(image, score_threshold=THRESHOLD, max_detections=5)
    assert len(detections) == 5
    assert_valid(detections, image)


def test_detect_batch_equals_single_calls(
    yolo_pt: YoloPersonDetector, yolo_onnx: YoloPersonDetector
) -> None:
    images = [astronaut(), np.asarray(data.coffee()), np.asarray(data.chelsea())]
    # The ONNX export has a fixed batch of one: ultralytics splits the batch for it.
    for detector in (yolo_pt, yolo_onnx):
        batched = detector.detect_batch(images, score_threshold=THRESHOLD, max_detections=0)
        assert len(batched) == 3
        for image, detections in zip(images, batched, strict=True):
            assert detections
            assert_valid(detections, image)
            single = detector.detect(image, score_threshold=THRESHOLD, max_detections=0)
            assert_same(detections, single)


def test_yolo_concurrent_calls_match_sequential(
    yolo_pt: YoloPersonDetector, yolo_onnx: YoloPersonDetector
) -> None:
    image = astronaut()
    for detector in (yolo_pt, yolo_onnx):
        expected = detector.detect(image, score_threshold=THRESHOLD, max_detections=10)
        assert in_threads(partial(detector.detect, image, THRESHOLD, 10), 4) == [expected] * 4


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda path: YoloPersonDetector(path, device="cpu"), "CHORUS_YOLO_MODEL"),
        (lambda path: BiRefNetMatte(path, device="cpu"), "CHORUS_BIREFNET_MODEL"),
    ],
)
def test_missing_model_file_fails_load_naming_path_and_setting(
    tmp_path: Path, make: Callable[[Path], YoloPersonDetector | BiRefNetMatte], setting: str
) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    engine = make(missing)
    with pytest.raises(FileNotFoundError) as raised:
        engine.load()
    assert str(missing) in str(raised.value)
    assert setting in str(raised.value)


def test_birefnet_matte_follows_the_bright_subject(birefnet: BiRefNetMatte) -> None:
    image = bright_square()
    matte = birefnet.matte(image, None)
    assert matte.shape == image.shape[:2]
    assert matte.dtype == np.float32
    assert matte.min() >= 0.0
    assert matte.max() <= 1.0
    # The last output makes bright pixels foreground; the first would do the opposite.
    assert matte[120:180, 170:280].mean() > 0.99
    assert matte[:80].mean() < 0.01
    assert matte[:, :130].mean() < 0.01


def test_birefnet_matte_on_a_photo(birefnet: BiRefNetMatte) -> None:
    image = astronaut()
    matte = birefnet.matte(image, None)
    assert matte.shape == (512, 512)
    assert matte.min() >= 0.0
    assert matte.max() <= 1.0
    assert matte.std() > 0.05


def test_birefnet_focus_mattes_only_the_focus_region(birefnet: BiRefNetMatte) -> None:
    image = bright_square()
    focus = Box(x_min=150, y_min=100, x_max=300, y_max=200)
    matte = birefnet.matte(image, focus)
    assert matte.shape == image.shape[:2]
    # 10% margin: 15 px left and right, 10 px above and below.
    assert not matte[:90].any()
    assert not matte[210:].any()
    assert not matte[:, :135].any()
    assert not matte[:, 315:].any()
    assert matte[110:190, 160:290].mean() > 0.99


def test_birefnet_concurrent_calls_match_sequential(birefnet: BiRefNetMatte) -> None:
    image = astronaut()
    expected = birefnet.matte(image, None)
    for matte in in_threads(lambda: birefnet.matte(image, None), 4):
        np.testing.assert_array_equal(matte, expected)


def test_loading_ultralytics_leaves_pillow_alone() -> None:
    offline_ultralytics()
    with pytest.raises(UnidentifiedImageError):
        PilImage.open(io.BytesIO(b"not an image, and no plugin should be installed for it"))
