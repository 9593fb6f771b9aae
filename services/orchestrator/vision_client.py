"""Portraits through the inner vision service, beside SpeechClient's tts and prosody."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc

from services.orchestrator.upstreams import Upstream

# vision's names for the caller's fields: vision checks the photo as its `image`.
_CALLER_FIELDS = {"image": "photo"}


@dataclass(frozen=True)
class Portrait:
    """The main person of a photo, cut out, and everyone vision found in it."""

    cutout_png: bytes
    detections: Sequence[vision_pb2.Detection]


class VisionClient:
    """The vision calls the orchestrator's RPCs are made of."""

    def __init__(self, vision: Upstream) -> None:
        self.vision = vision

    @property
    def _vision(self) -> vision_pb2_grpc.VisionAsyncStub:
        return self.vision.stub(vision_pb2_grpc.VisionStub)

    async def portrait(self, photo: bytes, remaining_s: float | None) -> Portrait:
        """The cut-out of ``photo``'s main person; InvalidArgument naming ``photo`` when it
        is not an image vision takes."""
        try:
            response = await self._vision.Portrait(
                vision_pb2.PortraitRequest(image=photo), timeout=remaining_s
            )
        except grpc.aio.AioRpcError as error:
            raise self.vision.error(error, _CALLER_FIELDS) from None
        return Portrait(response.cutout_png, response.detections)
