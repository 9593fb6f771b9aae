"""Person detection with an ultralytics YOLO model read from a local file.

The model file is a ``.pt`` checkpoint, an ONNX export or a TensorRT ``.engine``; weights are
never downloaded, and a missing file fails ``load()`` (and so the readiness check) instead of
falling back to another detector.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.common.devices import torch_cuda_available, torch_device
from services.vision.engines.base import Box, Detection, Image, PersonDetector

PERSON = "person"
SUFFIXES = (".pt", ".onnx", ".engine")

# ultralytics needs a cap on detections per image; 0 ("no limit") maps to one far above
# the number of people a portrait or group photo holds.
_UNLIMITED_MAX_DET = 1000


def offline_ultralytics() -> None:
    """Keep ultralytics off the network and its settings file out of the home folder.

    ultralytics reads these variables when it is first imported, so this runs before that;
    values set by the operator win. Also undoes ultralytics' patch of Pillow (below).
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault(
        "YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "chorus-ultralytics")
    )
    from PIL import Image as PilImage
    from ultralytics.utils import patches

    # Importing ultralytics replaces PIL.Image.open, process-wide, with a version that
    # pip-installs a HEIF plugin the first time Pillow cannot identify a file: in a server
    # that file is user input (services.vision.images). Put Pillow's own back.
    PilImage.open = patches._image_open


class YoloPersonDetector(PersonDetector):
    """Finds people with a YOLO detection model; safe to call from several threads."""

    batches = True

    name = "yolo"

    def __init__(self, model_path: str | Path, device: str = "auto", image_size: int = 640):
        """Remember where the model is; nothing is read before ``load()``.

        ``image_size`` is the network's input side; an exported model (ONNX, TensorRT) only
        runs at the size it was exported with.
        """
        self.model_path = Path(model_path)
        self.device = device
        self.image_size = image_size
        # The ultralytics model object keeps per-call state (its predictor): one call at a time.
        self._lock = threading.Lock()
        self._model: Any = None
        self._person_class = -1
        self._torch_device = "cpu"

    def load(self) -> None:
        """Load the model file; raises FileNotFoundError when it is missing."""
        if not str(self.model_path) or not self.model_path.is_file():
            raise FileNotFoundError(
                f"YOLO model file {str(self.model_path)!r} not found: set CHORUS_YOLO_MODEL "
                f"to a local {', '.join(SUFFIXES)} file (weights are never downloaded)"
            )
        if self.model_path.suffix not in SUFFIXES:
            raise ValueError(
                f"YOLO model file {str(self.model_path)!r} is not one of {', '.join(SUFFIXES)}"
            )
        offline_ultralytics()
        from ultralytics.models.yolo import YOLO

        model = YOLO(str(self.model_path), task="detect")
        names: dict[int, str] = dict(model.names)
        person = [index for index, label in names.items() if label == PERSON]
        if not person:
            raise ValueError(
                f"YOLO model {str(self.model_path)!r} has no {PERSON!r} class "
                f"(classes: {', '.join(sorted(names.values())[:10])}, ...)"
            )
        with self._lock:
            self._torch_device = torch_device(self.device, torch_cuda_available())
            self._person_class = person[0]
            self._model = model

    def warm_up(self) -> None:
        """Run one prediction on a blank image: the first one builds the predictor (~1 s)."""
        blank = np.zeros((self.image_size, self.image_size, 3), dtype=np.uint8)
        self.detect(blank, score_threshold=0.5, max_detections=1)

    def close(self) -> None:
        """Drop the model and give its GPU memory back."""
        with self._lock:
            self._model = None
        if self._torch_device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def detect(self, image: Image, score_threshold: float, max_detections: int) -> list[Detection]:
        """People in ``image`` scoring at least ``score_threshold``, best first."""
        return self.detect_batch([image], score_threshold, max_detections)[0]

    def detect_batch(
        self, images: list[Image], score_threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        """People in each image, from one batched model call (what a GPU runs best)."""
        if not images:
            return []
        if self._model is None:
            raise RuntimeError("YoloPersonDetector.detect called before load()")
        # ultralytics reads ndarrays as OpenCV does: BGR.
        bgr = [np.ascontiguousarray(image[:, :, ::-1]) for image in images]
        with self._lock:
            results = self._model.predict(
                bgr,
                conf=score_threshold,
                classes=[self._person_class],
                max_det=max_detections or _UNLIMITED_MAX_DET,
                imgsz=self.image_size,
                device=self._torch_device,
                # Square letterboxing whatever the batch holds, so an image gets the same
                # boxes alone or batched with others of other shapes.
                rect=False,
                verbose=False,
            )
        return [self._detections(result) for result in results]

    @staticmethod
    def _detections(result: Any) -> list[Detection]:
        """Detections of one ultralytics result, best first, in original pixels."""
        boxes = result.boxes
        corners = boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = boxes.conf.cpu().numpy().astype(np.float64)
        order = np.argsort(-scores, kind="stable")
        return [
            Detection(
                box=Box(*(float(value) for value in corners[index])),
                score=float(scores[index]),
                label=PERSON,
            )
            for index in order
        ]
