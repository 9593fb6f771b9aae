"""Detectors whose per-image work can run apart from their batched model call.

A batcher runs ``prepare`` for each request in that request's own thread, as requests
arrive, and keeps only ``detect_prepared``, one call per batch, on the model's thread: the
scaling of 32 photos then happens in parallel while the previous batch runs, instead of one
after another inside the call the GPU waits on.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from services.vision.engines.base import Detection, Image

InputT = TypeVar("InputT")


@runtime_checkable
class PreparingDetector(Protocol[InputT]):
    """A detector whose input is prepared per image, then detected in batches."""

    def prepare(self, image: Image) -> InputT:
        """``image`` as the model takes it (thread-safe, no model call)."""

    def detect_prepared(
        self, inputs: list[InputT], score_threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        """People in each prepared image, from one model call, as ``detect`` finds them."""
