"""Settings of the vision server (CHORUS_* variables and flags; see services.common.settings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import services
from services.common.settings import ServerSettings

MEDIAPIPE_MODELS = Path(services.__file__).resolve().parents[1] / ".models" / "mediapipe"
"""Where ``make`` (and the vision image, under /app) puts the models it extracts from the
pinned mediapipe wheel: ``.models/mediapipe`` beside the ``services`` package."""


@dataclasses.dataclass(frozen=True)
class VisionSettings(ServerSettings):
    """Chorus vision server."""

    port: int = dataclasses.field(default=50054, metadata={"help": "port to listen on"})
    metrics_port: int = dataclasses.field(
        default=9454, metadata={"help": "Prometheus /metrics port, on host; 0 turns it off"}
    )
    detector: str = dataclasses.field(
        default="mediapipe",
        metadata={"help": "person detector: mediapipe (packaged models), opencv or yolo"},
    )
    matting: str = dataclasses.field(
        default="selfie",
        metadata={"help": "matting model: selfie (packaged model), grabcut or birefnet"},
    )
    mediapipe_models: str = dataclasses.field(
        default=str(MEDIAPIPE_MODELS),
        metadata={"help": "folder of the MediaPipe models (mediapipe and selfie engines)"},
    )
    yolo_model: str = dataclasses.field(
        default="", metadata={"help": "YOLO weights: a local .pt, .onnx or .engine file"}
    )
    yolo_image_size: int = dataclasses.field(
        default=640, metadata={"help": "YOLO input size (an exported model's own size)"}
    )
    birefnet_model: str = dataclasses.field(
        default="", metadata={"help": "BiRefNet as a local ONNX file"}
    )
    device: str = dataclasses.field(
        default="auto", metadata={"help": "auto (cuda when present), cuda or cpu"}
    )
    workers: int = dataclasses.field(default=2, metadata={"help": "threads running the models"})
    max_pixels: int = dataclasses.field(
        default=40_000_000, metadata={"help": "largest image accepted, in pixels"}
    )
    working_side: int = dataclasses.field(
        default=1280, metadata={"help": "larger images are scaled to this longest side"}
    )
    batching: str = dataclasses.field(
        default="auto", metadata={"help": "batch detections: auto (on GPU), on, off"}
    )
    batch_max: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "most images in one batched detection; unset: the device's (BATCH_DEFAULTS)"
        },
    )
    batch_wait_ms: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "longest a request waits for company while the detector is idle (the "
            "batch window, from the first request); unset: the device's (BATCH_DEFAULTS)"
        },
    )
    batch_in_flight: int = dataclasses.field(
        default=1,
        metadata={
            "help": "batches the detector runs at once; requests arriving meanwhile gather "
            "into the next batch (one GPU: 1)"
        },
    )

    def batch_limits(self, device: str) -> BatchDefaults:
        """The batch size and window for ``device`` (``cpu`` or ``cuda``): the device's
        defaults from BATCH_DEFAULTS, with whatever was set explicitly on top."""
        defaults = BATCH_DEFAULTS[device]
        return BatchDefaults(
            max_batch=defaults.max_batch if self.batch_max is None else self.batch_max,
            window_ms=defaults.window_ms if self.batch_wait_ms is None else self.batch_wait_ms,
        )


@dataclasses.dataclass(frozen=True)
class BatchDefaults:
    """How large a detection batch may grow, and how long its first request waits."""

    max_batch: int
    window_ms: float


BATCH_DEFAULTS = {
    # bench/vision_batch_curve.py on this CPU (results/vision_batch_curve_cpu_20261130.json),
    # YOLO11n at 640: 158 ms at batch 1, 520 at 4, 1214 at 8, 4878 at 32: a batch of n
    # costs n images (130-158 ms each), so nothing waits for company (window 0) and
    # batches stay at 4, holding no request long behind the others. Batching is off on
    # the CPU unless CHORUS_BATCHING=on.
    "cpu": BatchDefaults(max_batch=4, window_ms=0.0),
    # YOLO11x on an H200 (shared/gpu-kit, fp16): 22-31 ms at batch 1, 24 at 8, 49 at 32.
    # Up to 8 costs the same as one and 32 costs two: 32 halves the cost per image again.
    # A 5 ms window (a fifth of one image's cost) lets a burst of requests share a call
    # and adds at most that to a lone request; under load batches fill while the
    # previous one runs, with no window at all.
    "cuda": BatchDefaults(max_batch=32, window_ms=5.0),
}
"""Batch size and window per device, from the measured cost of a batch."""
