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
    batch_max: int = dataclasses.field(
        default=8, metadata={"help": "most images in one batched detection"}
    )
    batch_wait_ms: float = dataclasses.field(
        default=2.0, metadata={"help": "how long a batch waits for company"}
    )
