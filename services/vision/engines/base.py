"""The interfaces of vision engines, free of gRPC: person detectors and matting models.

Images are RGB ``uint8`` arrays of shape (height, width, 3); boxes are in pixels of that
array. Engines are loaded once per process and are safe to call from several threads
(each guards what is not thread-safe in it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
"""RGB, shape (height, width, 3)."""

Matte = npt.NDArray[np.float32]
"""Alpha in [0, 1], shape (height, width); 1 is foreground."""


def check_image(image: Image) -> None:
    """Raise ValueError unless ``image`` is what engines take: RGB uint8 (height, width, 3)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be RGB uint8 of shape (height, width, 3), got {image.dtype} {image.shape}"
        )


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: x to the right, y down."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def area(self) -> float:
        """Width times height (0 for an empty box)."""
        return max(0.0, self.x_max - self.x_min) * max(0.0, self.y_max - self.y_min)


@dataclass(frozen=True)
class Detection:
    """One person found: where, and how sure."""

    box: Box
    score: float
    label: str = "person"


class VisionModel(ABC):
    """A model loaded once per process and warmed up before the server turns SERVING."""

    name: str

    @abstractmethod
    def load(self) -> None:
        """Load the model; raises with a clear message when its file is missing."""

    @abstractmethod
    def warm_up(self) -> None:
        """Run once on a dummy image so the first request pays no start-up cost."""

    def close(self) -> None:  # noqa: B027 (the default for engines holding nothing to free)
        """Let go of the model (sessions, weights, GPU memory) when the server stops; a call
        still running keeps what it uses until it returns. Small CPU models keep this
        default and let the process's exit free them."""


class PersonDetector(VisionModel):
    """Finds people in an image."""

    batches: bool = False
    """Whether ``detect_batch`` runs the images through the model together (what a GPU
    does best) rather than one after the other: only then do requests wait to be batched."""

    @abstractmethod
    def detect(self, image: Image, score_threshold: float, max_detections: int) -> list[Detection]:
        """People in ``image`` scoring at least ``score_threshold``, best first, at most
        ``max_detections`` (0: no limit)."""

    def detect_batch(
        self, images: list[Image], score_threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        """People in each of ``images``, as ``detect`` finds them."""
        return [self.detect(image, score_threshold, max_detections) for image in images]


class MattingModel(VisionModel):
    """Separates the foreground (the person) from the background."""

    @abstractmethod
    def matte(self, image: Image, focus: Box | None) -> Matte:
        """The alpha matte of ``image``; ``focus``, when given, is where the subject is."""
