"""The vision engines a server can run, by configured name."""

from __future__ import annotations

from pathlib import Path

from services.vision.engines.base import MattingModel, PersonDetector
from services.vision.settings import VisionSettings

DETECTORS = ("mediapipe", "opencv", "yolo")
MATTING = ("selfie", "grabcut", "birefnet")


def create_detector(settings: VisionSettings) -> PersonDetector:
    """Build (not load) the detector named by ``settings.detector``."""
    if settings.detector == "mediapipe":
        from services.vision.engines.mediapipe_detector import MediaPipePersonDetector

        return MediaPipePersonDetector(Path(settings.mediapipe_models))
    if settings.detector == "opencv":
        from services.vision.engines.opencv import OpenCvPersonDetector

        return OpenCvPersonDetector()
    if settings.detector == "yolo":
        from services.vision.engines.yolo import YoloPersonDetector

        return YoloPersonDetector(
            settings.yolo_model, device=settings.device, image_size=settings.yolo_image_size
        )
    raise ValueError(f"unknown detector {settings.detector!r}; known: {', '.join(DETECTORS)}")


def create_matting(settings: VisionSettings, detector: PersonDetector) -> MattingModel:
    """Build (not load) the matting model named by ``settings.matting``."""
    if settings.matting == "selfie":
        from services.vision.engines.selfie import SelfieMatte

        return SelfieMatte(Path(settings.mediapipe_models))
    if settings.matting == "grabcut":
        from services.vision.engines.opencv import GrabCutMatte

        return GrabCutMatte(detector)
    if settings.matting == "birefnet":
        from services.vision.engines.birefnet import BiRefNetMatte

        return BiRefNetMatte(settings.birefnet_model, device=settings.device)
    raise ValueError(f"unknown matting model {settings.matting!r}; known: {', '.join(MATTING)}")
