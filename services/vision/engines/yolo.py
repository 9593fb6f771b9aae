"""Person detection with a YOLO model read from a local file.

The model file is a ``.pt`` checkpoint, an ONNX export or a TensorRT ``.engine``
(``services.vision.engines.yolo_runtimes`` runs each); weights are never downloaded, and a
missing file fails ``load()`` (and so the readiness check) instead of falling back to another
detector.

A detection is two steps, so that a batcher can keep the second, the model call, to itself:
``prepare`` letterboxes one image (in the request's own thread, in parallel with others)
and ``detect_prepared`` runs the network once over many prepared images, then suppresses
overlaps (ultralytics' NMS) and maps boxes back to each image's pixels.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.vision.engines.base import Box, Detection, Image, PersonDetector
from services.vision.engines.yolo_input import YoloInput, letterboxed
from services.vision.engines.yolo_runtimes import YoloRuntime, open_runtime

PERSON = "person"
SUFFIXES = (".pt", ".onnx", ".engine")

# ultralytics needs a cap on detections per image; 0 ("no limit") maps to one far above
# the number of people a portrait or group photo holds.
_UNLIMITED_MAX_DET = 1000
# ultralytics' default overlap (IoU) above which the weaker of two boxes is dropped.
_IOU = 0.7


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

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        image_size: int = 640,
        half: bool = True,
    ):
        """Remember where the model is; nothing is read before ``load()``.

        ``image_size`` is the network's input side; an exported model with a fixed size
        (ONNX, TensorRT) only runs at that size. ``half``: half precision on a GPU (what
        the GPU figures in shared/gpu-kit were measured with); the CPU always runs floats.
        """
        self.model_path = Path(model_path)
        self.device = device
        self.image_size = image_size
        self.half = half
        self._load_lock = threading.Lock()
        self._runtime: YoloRuntime | None = None
        self._person_class = -1

    @property
    def runtime_device(self) -> str:
        """Where the network runs once loaded (a torch device, or ONNX Runtime's provider)."""
        return self._runtime.device if self._runtime is not None else ""

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
        runtime = open_runtime(self.model_path, self.device, self.half)
        person = [index for index, label in runtime.names.items() if label == PERSON]
        if not person:
            raise ValueError(
                f"YOLO model {str(self.model_path)!r} has no {PERSON!r} class "
                f"(classes: {', '.join(sorted(runtime.names.values())[:10])}, ...)"
            )
        if runtime.fixed_side is not None and runtime.fixed_side != self.image_size:
            raise ValueError(
                f"YOLO model {str(self.model_path)!r} takes {runtime.fixed_side}x"
                f"{runtime.fixed_side} images: set CHORUS_YOLO_IMAGE_SIZE={runtime.fixed_side} "
                f"(not {self.image_size}) or export it with dynamic=True"
            )
        with self._load_lock:
            self._person_class = person[0]
            self._runtime = runtime

    def warm_up(self) -> None:
        """Run one prediction on a blank image: the first one allocates the buffers."""
        blank = np.zeros((self.image_size, self.image_size, 3), dtype=np.uint8)
        self.detect(blank, score_threshold=0.5, max_detections=1)

    def close(self) -> None:
        """Drop the model and give its GPU memory back."""
        with self._load_lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()

    def detect(self, image: Image, score_threshold: float, max_detections: int) -> list[Detection]:
        """People in ``image`` scoring at least ``score_threshold``, best first."""
        return self.detect_batch([image], score_threshold, max_detections)[0]

    def detect_batch(
        self, images: list[Image], score_threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        """People in each image, from one batched model call (what a GPU runs best)."""
        prepared = [self.prepare(image) for image in images]
        return self.detect_prepared(prepared, score_threshold, max_detections)

    def prepare(self, image: Image) -> YoloInput:
        """``image`` letterboxed for the network: the per-image work, for any thread."""
        return letterboxed(image, self.image_size)

    def detect_prepared(
        self, inputs: list[YoloInput], score_threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        """People in each prepared image, from one call of the network."""
        if not inputs:
            return []
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("YoloPersonDetector.detect called before load()")
        from ultralytics.utils import nms

        predictions = runtime.forward(np.stack([item.pixels for item in inputs]))
        kept = nms.non_max_suppression(
            predictions,
            score_threshold,
            _IOU,
            classes=[self._person_class],
            max_det=max_detections or _UNLIMITED_MAX_DET,
            end2end=runtime.end2end,
        )
        return [
            _detections(rows, item, self.image_size)
            for rows, item in zip(kept, inputs, strict=True)
        ]


def _detections(rows: Any, item: YoloInput, side: int) -> list[Detection]:
    """Detections of one image from its NMS rows (x1, y1, x2, y2, score, class in the
    letterboxed square), best first, in the image's pixels."""
    from ultralytics.utils import ops

    rows = rows.float().cpu().numpy()
    corners = ops.scale_boxes((side, side), rows[:, :4].copy(), item.shape)
    scores = rows[:, 4].astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    return [
        Detection(
            box=Box(*(float(value) for value in corners[index])),
            score=float(scores[index]),
            label=PERSON,
        )
        for index in order
    ]
