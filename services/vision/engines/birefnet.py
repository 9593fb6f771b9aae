"""Background removal with BiRefNet exported to ONNX, run by ONNX Runtime.

BiRefNet takes a 1x3x1024x1024 RGB image normalised with ImageNet's mean and deviation and
gives several 1x1x1024x1024 maps of logits, coarse to fine; the last is the matte. Batching
gains nothing for it (DESIGN.md), so every call runs one image.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from services.common.devices import onnx_providers
from services.vision.engines.base import Box, Image, Matte, MattingModel
from services.vision.engines.focus import focus_region
from services.vision.engines.scores import logistic

INPUT_SIDE = 1024
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Share of the focus box's size added on each side, so hair and hands at its edge stay in.
FOCUS_MARGIN = 0.1


class BiRefNetMatte(MattingModel):
    """BiRefNet through an ONNX Runtime session; safe to call from several threads."""

    name = "birefnet"

    def __init__(self, model_path: str | Path, device: str = "auto"):
        """Remember where the model is; nothing is read before ``load()``."""
        self.model_path = Path(model_path)
        self.device = device
        # InferenceSession.run is thread-safe (ONNX Runtime documents concurrent run calls
        # on one session), so calls need no lock; only load() is serialised.
        self._load_lock = threading.Lock()
        self._session: Any = None
        self._input_name = ""

    @property
    def providers(self) -> list[str]:
        """The execution providers of the loaded session (empty before ``load()``)."""
        return list(self._session.get_providers()) if self._session is not None else []

    def load(self) -> None:
        """Open the ONNX file; raises FileNotFoundError when it is missing."""
        if not str(self.model_path) or not self.model_path.is_file():
            raise FileNotFoundError(
                f"BiRefNet model file {str(self.model_path)!r} not found: set "
                "CHORUS_BIREFNET_MODEL to a local ONNX file (weights are never downloaded)"
            )
        import onnxruntime

        providers = onnx_providers(self.device, onnxruntime.get_available_providers())
        session = onnxruntime.InferenceSession(str(self.model_path), providers=providers)
        with self._load_lock:
            self._input_name = session.get_inputs()[0].name
            self._session = session

    def close(self) -> None:
        """Drop the ONNX Runtime session."""
        with self._load_lock:
            self._session = None

    def warm_up(self) -> None:
        """Run once on a blank image: the first run allocates the session's buffers."""
        self.matte(np.zeros((64, 64, 3), dtype=np.uint8), None)

    def matte(self, image: Image, focus: Box | None) -> Matte:
        """The alpha matte of ``image``, computed on the focus box (plus margin) if given."""
        height, width = image.shape[:2]
        if focus is None:
            return self._run(image)
        top, bottom, left, right = focus_region(focus, FOCUS_MARGIN, height, width)
        matte = np.zeros((height, width), dtype=np.float32)
        if bottom > top and right > left:
            matte[top:bottom, left:right] = self._run(image[top:bottom, left:right])
        return matte

    def _run(self, image: Image) -> Matte:
        """One inference: resize to the network's side, normalise, sigmoid, resize back."""
        if self._session is None:
            raise RuntimeError("BiRefNetMatte.matte called before load()")
        height, width = image.shape[:2]
        resized = cv2.resize(image, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_LINEAR)
        normalised = (resized.astype(np.float32) / 255.0 - MEAN) / STD
        batch = np.ascontiguousarray(normalised.transpose(2, 0, 1)[np.newaxis])
        outputs = self._session.run(None, {self._input_name: batch})
        logits: npt.NDArray[np.float32] = np.asarray(outputs[-1], dtype=np.float32)[0, 0]
        alpha = logistic(logits)
        restored = np.asarray(
            cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR), np.float32
        )
        return np.clip(restored, 0.0, 1.0).astype(np.float32)
