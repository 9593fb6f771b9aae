"""Realtime speech over a WebSocket, ``/v1/realtime/speech``, over the orchestrator's
SpeakStream.

Each JSON message from the client becomes one SpeakStreamRequest, relayed as it comes;
each SpeakResponse becomes one message back (audio as a binary frame, or base64), as it
comes. The orchestrator and tts judge the conversation (a config first, text limits,
nothing after an end); the gateway checks only that each message is well formed. The
message formats are written down in services/gateway/README.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.tts.v1 import tts_pb2
from grpc import aio
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.stream_timing import StreamMetrics, StreamTiming
from services.gateway.credentials import KeyCheck
from services.gateway.errors import ApiError, from_rpc_error, invalid, too_late
from services.gateway.json_fields import JsonObject
from services.gateway.orchestrator_client import OrchestratorClient
from services.gateway.settings import GatewaySettings
from services.gateway.streaming import next_message

logger = logging.getLogger(__name__)

ROUTE = "/v1/realtime/speech"

ENCODINGS = {
    "pcm_s16le": audio_pb2.AUDIO_ENCODING_PCM_S16LE,
    "pcm_f32le": audio_pb2.AUDIO_ENCODING_PCM_F32LE,
    "ogg_opus": audio_pb2.AUDIO_ENCODING_OGG_OPUS,
    "mp3": audio_pb2.AUDIO_ENCODING_MP3,
}
_ENCODING_NAMES = {value: name for name, value in ENCODINGS.items()} | {
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED: "pcm_s16le"
}
CONFIG_FIELDS = (
    "type",
    "voice",
    "language",
    "sample_rate_hz",
    "encoding",
    "word_timings",
    "speaking_rate",
    "audio_frames",
    "api_key",
)
MESSAGE_TYPES = ("config", "text", "flush", "interrupt", "end")
_INT32 = range(-(2**31), 2**31)

_NORMAL_CLOSURE = 1000


class ClientGone(Exception):
    """The client closed the WebSocket or its connection dropped."""


@dataclass(frozen=True)
class Opening:
    """What a config message asks for: the config to relay, and the gateway's own part."""

    request: pb.SpeakStreamRequest
    base64_audio: bool = False
    api_key: str = ""


def opening(message: JsonObject) -> Opening:
    """The conversation's first message: a config, or (for tts to refuse, naming
    ``config``) anything else, relayed as it is."""
    if message.string("type") != "config":
        return Opening(stream_request(message))
    message.refuse_others(CONFIG_FIELDS)
    encoding = message.string("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise invalid("encoding", f"must be one of {', '.join(ENCODINGS)}")
    audio_frames = message.string("audio_frames", "binary")
    if audio_frames not in ("binary", "base64"):
        raise invalid("audio_frames", "must be binary or base64")
    sample_rate = message.integer("sample_rate_hz", 0)
    if sample_rate not in _INT32:
        raise invalid("sample_rate_hz", "is out of range")
    config = pb.SpeakStreamConfig(
        voice=message.string("voice", ""),
        language=message.string("language", ""),
        sample_rate_hz=sample_rate,
        encoding=ENCODINGS[encoding],
        word_timings=message.boolean("word_timings", False),
        # Checked by tts, which names speaking_rate.
        speaking_rate=message.number("speaking_rate", 0.0),
    )
    return Opening(
        pb.SpeakStreamRequest(config=config),
        base64_audio=audio_frames == "base64",
        api_key=message.string("api_key", ""),
    )


def stream_request(message: JsonObject) -> pb.SpeakStreamRequest:
    """The SpeakStreamRequest for a message after the first."""
    kind = message.string("type")
    if kind not in MESSAGE_TYPES:
        raise invalid("type", f"must be one of {', '.join(MESSAGE_TYPES)}")
    if kind == "config":
        # A second config, for tts to refuse by name; its own fields are not relayed.
        return pb.SpeakStreamRequest(config=pb.SpeakStreamConfig())
    if kind == "text":
        message.refuse_others(("type", "text"))
        return pb.SpeakStreamRequest(text=message.string("text"))
    message.refuse_others(("type",))
    if kind == "flush":
        return pb.SpeakStreamRequest(flush=tts_pb2.Flush())
    if kind == "interrupt":
        return pb.SpeakStreamRequest(interrupt=tts_pb2.Interrupt())
    return pb.SpeakStreamRequest(end=tts_pb2.End())


def server_message(response: pb.SpeakResponse) -> dict[str, Any] | None:
    """The JSON message for a SpeakResponse that is not audio (None for audio)."""
    kind = response.WhichOneof("content")
    if kind == "format":
        audio_format = response.format
        return {
            "type": "format",
            "sample_rate_hz": audio_format.sample_rate_hz,
            "encoding": _ENCODING_NAMES.get(audio_format.encoding, "unknown"),
            "channels": audio_format.channels,
        }
    if kind == "word":
        word = response.word
        return {
            "type": "word",
            "word": word.word,
            "char_start": word.char_start,
            "char_end": word.char_end,
            "start_sample": word.start_sample,
            "end_sample": word.end_sample,
        }
    if kind == "interrupted":
        return {
            "type": "interrupted",
            "sample_offset": response.interrupted.sample_offset,
            "dropped_chars": response.interrupted.dropped_chars,
        }
    if kind == "summary":
        summary = response.summary
        return {
            "type": "summary",
            "audio_seconds": summary.audio_seconds,
            "first_audio_seconds": summary.first_audio_seconds,
            "total_seconds": summary.total_seconds,
            "trace_id": summary.trace_id,
        }
    return None


@dataclass
class _Conversation:
    """One WebSocket's SpeakStream call and what both relays share."""

    websocket: WebSocket
    call: aio.StreamStreamCall[pb.SpeakStreamRequest, pb.SpeakResponse]
    base64_audio: bool
    metrics: StreamMetrics
    timing: StreamTiming | None = None
    """Counts from the first text to the first audio sent (TTFA as the client sees it)."""


class RealtimeSpeech:
    """The endpoint: one SpeakStream per WebSocket, messages relayed both ways."""

    def __init__(
        self,
        orchestrator: OrchestratorClient,
        keys: KeyCheck,
        settings: GatewaySettings,
        metrics: StreamMetrics,
    ) -> None:
        self._orchestrator = orchestrator
        self._keys = keys
        self._timeout_s = settings.realtime_timeout_s
        self._config_timeout_s = settings.realtime_config_timeout_s
        self._metrics = metrics

    async def handle(self, websocket: WebSocket) -> None:
        """``/v1/realtime/speech``: until the summary, an error, or the client leaves."""
        await websocket.accept()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._converse(websocket)
        except ApiError as error:
            await _close_with(websocket, error)
        except aio.AioRpcError as error:
            await _close_with(websocket, from_rpc_error(error, {}))
        except TimeoutError:
            await _close_with(
                websocket,
                ApiError(
                    504,
                    f"the conversation passed its deadline ({self._timeout_s:g} s)",
                    param=None,
                    code="deadline_exceeded",
                ),
            )
        except ClientGone:
            pass

    async def _converse(self, websocket: WebSocket) -> None:
        first = opening(await self._first_message(websocket))
        credentials = self._keys.credentials(websocket, first.api_key)
        call = self._orchestrator.stub.SpeakStream(
            metadata=credentials.metadata(), timeout=self._timeout_s
        )
        conversation = _Conversation(websocket, call, first.base64_audio, self._metrics)
        inbound = asyncio.create_task(_relay_in(conversation, first.request))
        outbound = asyncio.create_task(_relay_out(conversation))
        try:
            done, _ = await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
            if inbound in done:
                # Returns only when the call has ended under it (tts refused a message):
                # the status is the outbound relay's to read. Otherwise it raised.
                inbound.result()
            await outbound
            await _close(websocket, _NORMAL_CLOSURE)
        finally:
            # Whatever ended the conversation ends the call: the orchestrator's slot and
            # tts's stream are freed now, not at the deadline.
            call.cancel()
            inbound.cancel()
            outbound.cancel()
            await asyncio.gather(inbound, outbound, return_exceptions=True)

    async def _first_message(self, websocket: WebSocket) -> JsonObject:
        """The client's first message, which must come soon: a socket opened and left
        silent costs the gateway a connection, and no call has been made to end it."""
        try:
            async with asyncio.timeout(self._config_timeout_s):
                return await _receive(websocket)
        except TimeoutError:
            raise too_late(
                "config", f"none within {self._config_timeout_s:g} s of opening"
            ) from None


async def _relay_in(conversation: _Conversation, first: pb.SpeakStreamRequest) -> None:
    """The client's messages to the call, until the call ends (returns) or the client
    leaves or sends something malformed (raises)."""
    call = conversation.call
    if not await _write(call, first):
        return
    ended = False
    while True:
        message = await _receive(conversation.websocket)
        if ended:
            raise invalid("end", "no message may follow an end")
        request = stream_request(message)
        if request.HasField("text") and conversation.timing is None:
            conversation.timing = conversation.metrics.timing(
                time.perf_counter(), {"http.route": ROUTE}
            )
        if not await _write(call, request):
            return
        if request.HasField("end"):
            ended = True
            # A WebSocket cannot half-close: an end is the client's last word.
            await call.done_writing()


async def _relay_out(conversation: _Conversation) -> None:
    """The call's responses to the client, until the call ends (returns) or fails
    (raises grpc.aio.AioRpcError) or the client leaves (raises ClientGone)."""
    call, websocket = conversation.call, conversation.websocket
    while (response := await next_message(call)) is not None:
        message = server_message(response)
        if message is not None:
            await _send(websocket, message)
            continue
        if conversation.timing is not None:
            conversation.timing.sent()
        if conversation.base64_audio:
            encoded = base64.b64encode(response.audio).decode()
            await _send(websocket, {"type": "audio", "audio": encoded})
        else:
            await _send(websocket, response.audio)


async def _write(
    call: aio.StreamStreamCall[pb.SpeakStreamRequest, pb.SpeakResponse],
    request: pb.SpeakStreamRequest,
) -> bool:
    """Write ``request``; False when the call has already ended."""
    try:
        await call.write(request)
    except (aio.AioRpcError, asyncio.InvalidStateError):
        return False
    return True


async def _receive(websocket: WebSocket) -> JsonObject:
    """The client's next message, a JSON object in a text frame."""
    try:
        message = await websocket.receive()
    except (WebSocketDisconnect, OSError, RuntimeError):
        raise ClientGone from None
    if message["type"] == "websocket.disconnect":
        raise ClientGone
    text = message.get("text")
    if text is None:
        raise invalid("message", "binary frames are not accepted: send JSON in text frames")
    return JsonObject.parse(text, "message")


async def _send(websocket: WebSocket, message: dict[str, Any] | bytes) -> None:
    try:
        if isinstance(message, bytes):
            await websocket.send_bytes(message)
        else:
            await websocket.send_json(message)
    except (WebSocketDisconnect, OSError, RuntimeError):
        raise ClientGone from None


async def _close_with(websocket: WebSocket, error: ApiError) -> None:
    """Tell the client what went wrong, then close with the error's code."""
    with contextlib.suppress(ClientGone):
        await _send(websocket, {"type": "error", **error.body()})
    await _close(websocket, error.close_code, error.close_reason)


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Close the conversation, unless the client has already gone."""
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await websocket.close(code, reason)
