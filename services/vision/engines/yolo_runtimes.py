"""What runs a YOLO network: a batch of letterboxed images in, its raw predictions out.

- ``.pt`` (a checkpoint) and ``.engine`` (TensorRT): ultralytics' AutoBackend, in torch, on
  the device ``CHORUS_DEVICE`` names, in half precision on a GPU (``CHORUS_YOLO_HALF``).
- ``.onnx`` (``yolo export format=onnx``, best with ``dynamic=True`` so batches of any size
  run as one call): ONNX Runtime with the execution providers of the device rule
  (``services.common.devices.onnx_providers``): CUDA when asked for and present, and
  loading fails when CUDA is asked for and this ONNX Runtime has none, where ultralytics'
  own ONNX backend would quietly run on the CPU.

Both give the raw predictions (batch, 4 + classes, anchors) as a torch tensor, so the
detector's non-maximum suppression and box mapping are the same whatever ran the network.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.common.devices import onnx_providers, torch_cuda_available, torch_device

Batch = npt.NDArray[np.uint8]
"""Letterboxed RGB images, shape (batch, 3, side, side)."""


class YoloRuntime(ABC):
    """A loaded YOLO network; ``forward`` may be called from several threads at once."""

    names: dict[int, str]
    """Class index to name, from the model file."""
    device: str
    """Where the network runs (a torch device name; ONNX Runtime's first provider)."""
    fixed_side: int | None = None
    """The only input side the network takes, when its file fixes one."""
    end2end: bool = False
    """Whether the network does its own suppression (its rows are boxes, score, class)."""

    @abstractmethod
    def forward(self, batch: Batch) -> Any:
        """Raw predictions for ``batch``: a torch tensor (batch, 4 + classes, anchors),
        boxes as centre and size in pixels of the letterboxed square."""

    def close(self) -> None:  # noqa: B027 (runtimes holding nothing special keep it)
        """Let go of the network (and its GPU memory)."""


class TorchYoloRuntime(YoloRuntime):
    """A ``.pt`` checkpoint or a TensorRT ``.engine`` through ultralytics' AutoBackend."""

    def __init__(self, path: Path, device: str, half: bool) -> None:
        """Load the model file onto ``device`` (the CHORUS_DEVICE setting)."""
        import torch
        from ultralytics.nn.autobackend import AutoBackend

        _import_torchvision()

        self.device = torch_device(device, torch_cuda_available())
        on_gpu = self.device.startswith("cuda")
        self._torch = torch
        self._model: Any = AutoBackend(
            model=str(path), device=torch.device(self.device), fp16=half and on_gpu,
            fuse=True, verbose=False,
        )  # fmt: skip
        self._model.eval()
        self.names = dict(self._model.names)
        self._half = bool(self._model.fp16)
        self.end2end = bool(getattr(self._model, "end2end", False))
        # A TensorRT engine's execution context and bindings serve one call at a time;
        # torch modules in inference mode are safe to call from several threads.
        self._lock = threading.Lock() if path.suffix == ".engine" else None
        if path.suffix == ".engine" and not self._model.dynamic:
            self.fixed_side = int(self._model.imgsz[0])

    def forward(self, batch: Batch) -> Any:
        """The network on ``batch``, on its device (the uint8 pixels cross to the GPU, a
        quarter of the bytes of floats, and are scaled there)."""
        torch, model = self._torch, self._model  # a call running as close() comes keeps it
        with torch.inference_mode():
            pixels = torch.from_numpy(batch).to(self.device, non_blocking=True)
            pixels = (pixels.half() if self._half else pixels.float()).div_(255)
            if self._lock is None:
                output = model(pixels)
            else:
                with self._lock:
                    output = model(pixels)
        # A checkpoint's head also returns its feature maps, after the predictions.
        return output[0] if isinstance(output, list | tuple) else output

    def close(self) -> None:
        """Drop the network and give its GPU memory back."""
        self._model = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


class OnnxYoloRuntime(YoloRuntime):
    """An ONNX export through ONNX Runtime, on the providers of the device rule."""

    def __init__(self, path: Path, device: str) -> None:
        """Open the ONNX file with the providers ``device`` (CHORUS_DEVICE) calls for."""
        import onnxruntime
        import torch

        _import_torchvision()

        providers = onnx_providers(device, onnxruntime.get_available_providers())
        # InferenceSession.run is thread-safe: concurrent calls need no lock.
        self._session: Any = onnxruntime.InferenceSession(str(path), providers=providers)
        self._torch = torch
        self.device = self._session.get_providers()[0]
        metadata: dict[str, str] = self._session.get_modelmeta().custom_metadata_map
        if "names" not in metadata:
            raise ValueError(
                f"YOLO model file {str(path)!r} has no class names in its metadata: export it "
                "with ultralytics (yolo export format=onnx)"
            )
        self.names = {int(k): str(v) for k, v in ast.literal_eval(metadata["names"]).items()}
        self.end2end = metadata.get("end2end") == "True"
        image = self._session.get_inputs()[0]
        self._input = str(image.name)
        self._float16 = image.type == "tensor(float16)"
        # Fixed dimensions are ints; dynamic ones are names ("batch", "height").
        batch_size, _, height, _ = image.shape
        self._batch = batch_size if isinstance(batch_size, int) else None
        self.fixed_side = height if isinstance(height, int) else None

    def forward(self, batch: Batch) -> Any:
        """The network on ``batch``: in one call when the export has a dynamic batch, else
        in calls of its fixed batch size (the last one padded)."""
        session = self._session  # a call running as close() comes keeps it
        scaled = batch.astype(np.float32) / np.float32(255)
        pixels = scaled.astype(np.float16) if self._float16 else scaled
        size = self._batch or len(pixels)
        outputs = [
            session.run(None, {self._input: _padded(pixels[start : start + size], size)})[0]
            for start in range(0, len(pixels), size)
        ]
        predictions = np.concatenate(outputs)[: len(batch)].astype(np.float32)
        return self._torch.from_numpy(predictions)

    def close(self) -> None:
        """Drop the ONNX Runtime session."""
        self._session = None


def _import_torchvision() -> None:
    """Import torchvision where it is installed: ultralytics' NMS uses its compiled kernel
    only when it is already imported, and its own torch version otherwise."""
    with contextlib.suppress(ImportError):
        importlib.import_module("torchvision")


def _padded(pixels: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    """``pixels`` with zero images appended up to ``size`` (a fixed-batch export's)."""
    missing = size - len(pixels)
    if missing <= 0:
        return pixels
    return np.concatenate([pixels, np.zeros((missing, *pixels.shape[1:]), pixels.dtype)])


def open_runtime(path: Path, device: str, half: bool) -> YoloRuntime:
    """The runtime for the model file at ``path``, by its suffix."""
    if path.suffix == ".onnx":
        return OnnxYoloRuntime(path, device)
    return TorchYoloRuntime(path, device, half)
