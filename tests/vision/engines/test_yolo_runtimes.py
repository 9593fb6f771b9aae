"""YOLO run by torch and by ONNX Runtime, on the tiny YOLO the builders make and its ONNX
export with a dynamic batch: the same network gives the same detections either way, a batch
goes through in one call, and the device rule holds for ONNX Runtime too."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from skimage import data

from devtools.builders.tiny_vision_models import build_yolo_pt, export_yolo_onnx
from services.common.devices import CUDA_PROVIDER
from services.vision.engines.base import Detection, Image
from services.vision.engines.yolo import YoloPersonDetector, offline_ultralytics
from services.vision.engines.yolo_input import letterboxed

SIDE = 320
THRESHOLD = 0.25


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for the models, with ultralytics kept offline and its settings inside it."""
    directory = tmp_path_factory.mktemp("yolo-runtimes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_OFFLINE", "1")
        patch.setenv("YOLO_CONFIG_DIR", str(directory / "ultralytics"))
        yield directory


@pytest.fixture(scope="module")
def pt_path(model_dir: Path) -> Path:
    return build_yolo_pt(model_dir)


@pytest.fixture(scope="module")
def dynamic_onnx(pt_path: Path) -> Path:
    """The tiny YOLO exported as operators are told to export it: dynamic batch and size."""
    offline_ultralytics()
    from ultralytics.models.yolo import YOLO

    with contextlib.redirect_stdout(sys.stderr):
        exported = YOLO(str(pt_path), task="detect").export(
            format="onnx", imgsz=SIDE, dynamic=True, verbose=False
        )
    return Path(str(exported))


def loaded(path: Path, image_size: int = SIDE, device: str = "cpu") -> YoloPersonDetector:
    detector = YoloPersonDetector(path, device=device, image_size=image_size)
    detector.load()
    return detector


def photos() -> list[Image]:
    return [np.asarray(data.astronaut()), np.asarray(data.coffee()), np.asarray(data.chelsea())]


def table(detections: list[Detection]) -> np.ndarray:
    rows = [(d.score, d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in detections]
    return np.array(sorted(rows)).reshape(-1, 5)


def test_onnx_runtime_gives_torchs_predictions_and_detections(
    pt_path: Path, dynamic_onnx: Path
) -> None:
    torch_detector, onnx_detector = loaded(pt_path), loaded(dynamic_onnx)
    assert onnx_detector.runtime_device == "CPUExecutionProvider"
    images = photos()
    batch = np.stack([letterboxed(image, SIDE).pixels for image in images])
    # The raw network output, compared before suppression picks among near-equal boxes.
    by_torch = torch_detector._runtime.forward(batch).numpy()  # type: ignore[union-attr]
    by_onnx = onnx_detector._runtime.forward(batch).numpy()  # type: ignore[union-attr]
    assert by_onnx.shape == by_torch.shape == (3, 6, 2100)
    np.testing.assert_allclose(by_onnx, by_torch, atol=1e-3, rtol=1e-4)
    # The suppression and box mapping after it are the same code. Which of two overlapping
    # boxes it keeps depends on their scores; this random network scores every box 0.5,
    # so with a different last bit it may keep the other: the same count and scores, then.
    found_by_torch = torch_detector.detect_batch(images, THRESHOLD, 0)
    found_by_onnx = onnx_detector.detect_batch(images, THRESHOLD, 0)
    for left, right in zip(found_by_torch, found_by_onnx, strict=True):
        assert left
        np.testing.assert_allclose(table(left)[:, 0], table(right)[:, 0], atol=1e-4)


def test_a_prepared_batch_detects_as_single_images_do(dynamic_onnx: Path) -> None:
    detector = loaded(dynamic_onnx)
    images = photos()
    prepared = [detector.prepare(image) for image in images]
    batched = detector.detect_prepared(prepared, THRESHOLD, 0)
    for image, found in zip(images, batched, strict=True):
        np.testing.assert_allclose(
            table(found), table(detector.detect(image, THRESHOLD, 0)), atol=1e-3
        )


def test_a_fixed_size_export_refuses_another_image_size(pt_path: Path) -> None:
    fixed = export_yolo_onnx(pt_path, image_size=SIDE)
    with pytest.raises(ValueError, match=f"CHORUS_YOLO_IMAGE_SIZE={SIDE}"):
        loaded(fixed, image_size=640)


def test_an_onnx_file_without_class_names_is_refused(dynamic_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(dynamic_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match="no class names"):
        loaded(bare)


@pytest.mark.skipif(
    CUDA_PROVIDER in onnxruntime.get_available_providers(), reason="ONNX Runtime has CUDA here"
)
def test_cuda_asked_of_a_cpu_only_onnx_runtime_fails_loading(dynamic_onnx: Path) -> None:
    # Never a quiet fall back to the CPU (ultralytics' own ONNX backend would).
    with pytest.raises(RuntimeError, match=CUDA_PROVIDER):
        loaded(dynamic_onnx, device="cuda")
