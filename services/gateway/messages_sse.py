"""Video-message media, ``POST /v1/messages``, over the orchestrator's ComposeMessage.

A multipart form (text, preset, voice, photo) in; ComposeMessage's progress and then its
result out as server-sent events, as the orchestrator reports them. The event formats
are written down in services/gateway/README.md.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc import aio
from starlette.requests import Request
from starlette.responses import Response

from services.gateway.credentials import KeyCheck
from services.gateway.errors import from_rpc_error, invalid
from services.gateway.multipart_form import FormSpec, read_form
from services.gateway.orchestrator_client import OrchestratorClient
from services.gateway.request_bodies import BodyLimits, limited_stream
from services.gateway.settings import GatewaySettings
from services.gateway.streaming import ClosingStreamingResponse, read_until, replayed

logger = logging.getLogger(__name__)

ROUTE = "/v1/messages"

STAGES = {pb.STAGE_SPEECH: "speech", pb.STAGE_PROSODY: "prosody", pb.STAGE_VISION: "vision"}

_TEXT_PARTS = ("text", "preset", "voice")
_FILE_PARTS = ("photo",)
# Part headers and boundaries, beyond the parts' own limits.
_FORM_OVERHEAD_BYTES = 64 * 1024

# Some proxies hold a response back until it ends unless told not to.
_EVENT_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def compose_request(texts: dict[str, str], files: dict[str, bytes]) -> pb.ComposeMessageRequest:
    """The ComposeMessage request for a form's parts; 400 naming a required part that
    is missing (the orchestrator judges their contents)."""
    if "text" not in texts:
        raise invalid("text", "is required")
    if "photo" not in files:
        raise invalid("photo", "is required (a file part)")
    return pb.ComposeMessageRequest(
        text=texts["text"],
        preset=texts.get("preset", ""),
        voice=texts.get("voice", ""),
        photo=files["photo"],
    )


def event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event: its name and one line of JSON."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def progress_event(progress: pb.Progress) -> bytes:
    """A stage started or finished."""
    return event(
        "progress",
        {
            "stage": STAGES.get(progress.stage, "unspecified"),
            "state": "finished" if progress.finished else "started",
            "elapsed_seconds": progress.elapsed_seconds,
            "error": progress.error,
        },
    )


def result_event(result: pb.ComposedMessage) -> bytes:
    """The composed message: the media base64, the rest as the orchestrator says it."""
    return event(
        "result",
        {
            "audio_wav": base64.b64encode(result.audio_wav).decode(),
            "cutout_png": base64.b64encode(result.cutout_png).decode()
            if result.cutout_png
            else None,
            "prosody_confidence": _as_dict(result.prosody_confidence)
            if result.HasField("prosody_confidence")
            else None,
            "prosody_fallback": result.prosody_fallback,
            "detections": [_as_dict(detection) for detection in result.detections],
            "partial": result.partial,
            "missing": list(result.missing),
            "timings": {STAGES.get(t.stage, "unspecified"): t.seconds for t in result.timings},
            "total_seconds": result.total_seconds,
            "trace_id": result.trace_id,
        },
    )


def _as_dict(message: Message) -> dict[str, Any]:
    """A nested message in protobuf's JSON mapping, with its field names and defaults."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class ComposeMessages:
    """The endpoint: read the form, call ComposeMessage, relay its events."""

    def __init__(
        self, orchestrator: OrchestratorClient, keys: KeyCheck, settings: GatewaySettings
    ) -> None:
        self._orchestrator = orchestrator
        self._keys = keys
        self._spec = FormSpec(
            text_parts=_TEXT_PARTS,
            file_parts=_FILE_PARTS,
            max_text_bytes=settings.max_field_bytes,
            max_file_bytes=settings.max_photo_bytes,
        )
        self._body_limits = BodyLimits(
            settings.max_photo_bytes
            + len(_TEXT_PARTS) * settings.max_field_bytes
            + _FORM_OVERHEAD_BYTES,
            settings.body_timeout_s,
        )
        self._timeout_s = settings.request_timeout_s

    async def handle(self, request: Request) -> Response:
        """``POST /v1/messages``."""
        credentials = self._keys.credentials(request)
        form = await read_form(
            request.headers.get("content-type", ""),
            limited_stream(request, self._body_limits),
            self._spec,
        )
        compose = compose_request(form.texts, form.files)
        call = self._orchestrator.stub.ComposeMessage(
            compose, metadata=credentials.metadata(), timeout=self._timeout_s
        )
        try:
            first = await read_until(call, lambda _response: True)
        except aio.AioRpcError as error:
            raise from_rpc_error(error, {}) from None
        except BaseException:
            call.cancel()
            raise
        return ClosingStreamingResponse(
            _events(call, first), media_type="text/event-stream", headers=_EVENT_STREAM_HEADERS
        )


async def _events(
    call: aio.UnaryStreamCall[pb.ComposeMessageRequest, pb.ComposeMessageResponse],
    first: list[pb.ComposeMessageResponse],
) -> AsyncGenerator[bytes, None]:
    """The event stream: each progress, then the result, or an error event when the call
    fails after the first. Closing it cancels the call."""
    try:
        async for response in replayed(first, call):
            if response.HasField("progress"):
                yield progress_event(response.progress)
            else:
                yield result_event(response.result)
    except aio.AioRpcError as error:
        yield event("error", from_rpc_error(error, {}).body())
    finally:
        call.cancel()
