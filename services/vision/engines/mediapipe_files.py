"""MediaPipe's packaged TFLite models, read from their folder and run by OpenCV's DNN module.

``make`` (and the vision image) extracts them, hash-checked, from the pinned ``mediapipe``
wheel with ``tools/mediapipe_models.py``; ``CHORUS_MEDIAPIPE_MODELS`` names the folder. OpenCV
takes their input as NCHW blobs (``cv2.dnn.blobFromImage``), not TFLite's NHWC.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

SETTING = "CHORUS_MEDIAPIPE_MODELS"


class MediaPipeNet:
    """One TFLite model in OpenCV's DNN module; safe to call from several threads."""

    def __init__(self, directory: Path, file_name: str) -> None:
        """Read ``directory / file_name``; FileNotFoundError names the file and the setting
        when it is missing, RuntimeError when OpenCV cannot read it."""
        path = directory / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"MediaPipe model file {str(path)!r} not found: set {SETTING} to the folder "
                "that holds it (`make` extracts it there from the pinned mediapipe wheel, "
                "with tools/mediapipe_models.py)"
            )
        try:
            self._net = cv2.dnn.readNetFromTFLite(str(path))
        except cv2.error as error:
            raise RuntimeError(f"{path} is not a TFLite model OpenCV can run: {error}") from None
        self.path = path
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        # A cv2.dnn.Net keeps its input and layer buffers in the object: two threads inside
        # setInput/forward on one net mix their images. Each forward already spreads over
        # OpenCV's worker threads, so serialising calls costs little.
        self._lock = threading.Lock()

    def run(
        self, blob: npt.NDArray[np.float32], outputs: tuple[str, ...] = ()
    ) -> list[npt.NDArray[np.float32]]:
        """The named ``outputs`` (by default all the model's outputs) for the NCHW ``blob``."""
        names = list(outputs) or self._outputs
        with self._lock:
            self._net.setInput(blob)
            # Copied while locked, in case OpenCV hands back views of its own buffers.
            return [np.array(result, np.float32) for result in self._net.forward(names)]
