"""OpenAI's speech API, ``POST /v1/audio/speech``, over the orchestrator's Speak.

The request is OpenAI's (``model``, ``input``, ``voice``, ``response_format``, ``speed``),
so the official SDKs work unchanged; the response is the audio, streamed as Speak makes
it, at 24000 Hz as OpenAI's is. See services/gateway/README.md for every field.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from grpc import aio
from starlette.requests import Request
from starlette.responses import Response

from services.common.stream_timing import StreamMetrics, StreamTiming
from services.gateway.credentials import KeyCheck
from services.gateway.errors import from_rpc_error, invalid
from services.gateway.json_fields import JsonObject
from services.gateway.orchestrator_client import OrchestratorClient
from services.gateway.request_bodies import BodyLimits, read_json_object
from services.gateway.settings import GatewaySettings
from services.gateway.streaming import (
    ClosingStreamingResponse,
    StreamBroken,
    read_until,
    replayed,
)

logger = logging.getLogger(__name__)

ROUTE = "/v1/audio/speech"

SAMPLE_RATE = 24000
"""OpenAI's speech is 24 kHz mono in every format (its ``pcm`` is defined so)."""

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"}
    | {"verse", "marin", "cedar"}
)

MODELS = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "piper", "espeak", "coqui"})
"""Accepted so that OpenAI clients work unchanged; none selects anything: a deployment
runs one engine, tts's CHORUS_ENGINE."""

FIELDS = (
    "model",
    "input",
    "voice",
    "response_format",
    "speed",
    "instructions",
    "stream_format",
    "preset",
)

# The orchestrator's names for what this API calls otherwise.
_ORCHESTRATOR_FIELDS = {
    "text": "input",
    "encoding": "response_format",
    "sample_rate_hz": "response_format",
    "speaking_rate": "speed",
}

SPEED_RANGE = (0.25, 4.0)
"""OpenAI's range for ``speed``, checked here; within it, the orchestrator judges the rate
its speech engine supports (0.5 to 2.5), refusing others as a 400 naming ``speed``."""


@dataclass(frozen=True)
class AudioFormat:
    """How one ``response_format`` is asked of Speak and sent back."""

    encoding: audio_pb2.AudioEncoding.ValueType
    media_type: str
    wav_header: bool = False


FORMATS = {
    "mp3": AudioFormat(audio_pb2.AUDIO_ENCODING_MP3, "audio/mpeg"),
    "opus": AudioFormat(audio_pb2.AUDIO_ENCODING_OGG_OPUS, "audio/ogg"),
    "wav": AudioFormat(audio_pb2.AUDIO_ENCODING_PCM_S16LE, "audio/wav", wav_header=True),
    "pcm": AudioFormat(audio_pb2.AUDIO_ENCODING_PCM_S16LE, "audio/pcm"),
}
_UNSUPPORTED_FORMATS = ("aac", "flac")


class VoiceMap:
    """OpenAI's voice names to the suite's: listed ones as configured, other OpenAI
    names to the engine's default voice (""), any other name passed through."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = dict(mapping)

    @classmethod
    def parse(cls, text: str) -> VoiceMap:
        """``name=voice`` pairs, comma separated (CHORUS_VOICE_MAP); ValueError naming
        the pair that is not one."""
        mapping = {}
        for pair in (part.strip() for part in text.split(",")):
            if not pair:
                continue
            name, separator, voice = pair.partition("=")
            if not separator or not name.strip():
                raise ValueError(f"CHORUS_VOICE_MAP: {pair!r} is not name=voice")
            mapping[name.strip()] = voice.strip()
        return cls(mapping)

    def suite_voice(self, voice: str) -> str:
        """The suite voice that speaks for ``voice``."""
        if voice in self._mapping:
            return self._mapping[voice]
        return "" if voice in OPENAI_VOICES else voice


def speak_request(body: JsonObject, voices: VoiceMap) -> tuple[pb.SpeakRequest, AudioFormat]:
    """The Speak request and the response's format for an OpenAI request body; 400
    naming the field for anything Chorus cannot serve as asked."""
    body.refuse_others(FIELDS)
    model = body.string("model")
    if model not in MODELS:
        raise invalid("model", f"unknown model; one of {', '.join(sorted(MODELS))}")
    text = body.string("input")
    name = _voice_name(body)
    response_format = body.string("response_format", "mp3")
    if response_format in _UNSUPPORTED_FORMATS:
        raise invalid("response_format", f"{response_format} is not supported: mp3, opus, wav, pcm")
    if response_format not in FORMATS:
        raise invalid("response_format", "must be one of mp3, opus, wav, pcm")
    # OpenAI's speed and tts's speaking rate are both multipliers of the voice's tempo
    # (2.0: twice as fast, half as long), so one is the other.
    speed = body.number("speed", 1.0)
    low, high = SPEED_RANGE
    if not low <= speed <= high:
        raise invalid("speed", f"must be from {low:g} to {high:g}")
    if body.string("instructions", ""):
        raise invalid("instructions", "is not supported: shape speech with preset")
    if body.string("stream_format", "audio") != "audio":
        raise invalid("stream_format", "only audio is supported")
    audio_format = FORMATS[response_format]
    request = pb.SpeakRequest(
        text=text,
        voice=voices.suite_voice(name),
        preset=body.string("preset", ""),
        sample_rate_hz=SAMPLE_RATE,
        encoding=audio_format.encoding,
        speaking_rate=speed,
    )
    return request, audio_format


def _voice_name(body: JsonObject) -> str:
    """``voice``: a name, or OpenAI's custom voice reference ``{"id": name}``."""
    if isinstance(body.raw("voice"), dict):
        reference = JsonObject(body.raw("voice"), "voice", nested=True)
        reference.refuse_others(("id",))
        return reference.string("id")
    return body.string("voice")


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono PCM WAV header for a stream of unknown length: both sizes are
    0xFFFFFFFF, as in OpenAI's streamed WAV (readers take the data to the end)."""
    unknown = 0xFFFFFFFF
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", unknown, b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", unknown,
    )  # fmt: skip


class OpenAiSpeech:
    """The endpoint: validate, convert, call Speak, stream the audio back."""

    def __init__(
        self,
        orchestrator: OrchestratorClient,
        keys: KeyCheck,
        settings: GatewaySettings,
        metrics: StreamMetrics,
    ) -> None:
        self._orchestrator = orchestrator
        self._keys = keys
        self._voices = VoiceMap.parse(settings.voice_map)
        self._body_limits = BodyLimits(settings.max_json_bytes, settings.body_timeout_s)
        self._timeout_s = settings.request_timeout_s
        self._metrics = metrics

    async def handle(self, request: Request) -> Response:
        """``POST /v1/audio/speech``."""
        started = time.perf_counter()
        credentials = self._keys.credentials(request)
        body = await read_json_object(request, self._body_limits)
        speak, audio_format = speak_request(body, self._voices)
        call = self._orchestrator.stub.Speak(
            speak, metadata=credentials.metadata(), timeout=self._timeout_s
        )
        try:
            # Until the first audio: a voice or preset refused by tts or prosody comes
            # after Speak's format message, and must still be a 400.
            first = await read_until(call, lambda r: r.WhichOneof("content") != "format")
        except aio.AioRpcError as error:
            raise from_rpc_error(error, _ORCHESTRATOR_FIELDS) from None
        except BaseException:
            call.cancel()
            raise
        timing = self._metrics.timing(started, {"http.route": ROUTE})
        return ClosingStreamingResponse(
            _audio(call, first, audio_format, timing), media_type=audio_format.media_type
        )


async def _audio(
    call: aio.UnaryStreamCall[pb.SpeakRequest, pb.SpeakResponse],
    first: list[pb.SpeakResponse],
    audio_format: AudioFormat,
    timing: StreamTiming,
) -> AsyncGenerator[bytes, None]:
    """The response body: Speak's audio as it comes (behind a WAV header for ``wav``).
    Closing it cancels the call."""
    header = streaming_wav_header(SAMPLE_RATE) if audio_format.wav_header else b""
    try:
        async for response in replayed(first, call):
            if response.WhichOneof("content") == "audio":
                timing.sent()
                yield header + response.audio
                header = b""
        if header:  # no audio at all (nothing to say): still a WAV file, of no samples
            yield header
    except aio.AioRpcError as error:
        logger.warning("Speak failed mid-stream: %s: %s", error.code().name, error.details())
        raise StreamBroken from None
    finally:
        call.cancel()
