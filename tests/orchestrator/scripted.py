"""Scripted stand-ins for tts, prosody and vision that record how each call to them ended,
and an orchestrator over them that counts the messages it has handed to gRPC to send.

Each stand-in is served by the common bootstrap on loopback, as the real services are, so
the orchestrator reaches it over a real channel, health-checked, through the interceptors.
A stand-in acts out what its request says:

- tts: each word of the text in turn: ``small`` sends a 64 KiB chunk, ``big`` an 8 MiB one,
  ``hang`` waits until the call is cancelled;
- prosody: preset ``hang`` waits until the call is cancelled, any other returns the audio;
- vision: always waits until the call is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from grpc import aio

from services.common.telemetry import Telemetry
from services.orchestrator.server import OrchestratorService
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.settings import OrchestratorSettings
from services.prosody.server import SERVICE_NAME as PROSODY_SERVICE
from services.tts.server import SERVICE_NAME as TTS_SERVICE
from services.vision.server import SERVICE_NAME as VISION_SERVICE

Context = aio.ServicerContext[Any, Any]
T = TypeVar("T")

CHUNKS = {"small": bytes(64 * 1024), "big": bytes(8 * 1024 * 1024)}
"""Audio the tts stand-in sends per word. 8 MiB is far beyond the flow-control window of a
client that does not read: a server writing it to one stays blocked in the write."""


@dataclass
class InnerCall:
    """One call a stand-in received, known by its key (tts: the text; prosody: the preset;
    vision: ``Portrait``)."""

    key: str
    hanging: bool = False
    """Waiting for its caller to cancel it."""
    cancelled: bool = False
    """Its caller cancelled it (the tests' deadlines outlast their waits)."""
    ended: bool = False


@dataclass
class CallLog:
    """The calls one stand-in received, in order."""

    calls: list[InnerCall] = field(default_factory=list)

    def find(self, key: str) -> InnerCall | None:
        """The first call with ``key``, if one came."""
        return next((call for call in self.calls if call.key == key), None)

    @contextlib.contextmanager
    def record(self, key: str) -> Iterator[InnerCall]:
        """Record a call with ``key`` for the duration of the block."""
        call = InnerCall(key)
        self.calls.append(call)
        try:
            yield call
        finally:
            call.ended = True


async def hang(call: InnerCall) -> NoReturn:
    """Wait until the caller cancels ``call``, and note that it did."""
    call.hanging = True
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        call.cancelled = True
        raise
    raise AssertionError("the event is never set")


class ScriptedTts(tts_pb2_grpc.TextToSpeechServicer):
    """tts: a chunk per ``small`` or ``big`` in the text, a wait at ``hang``."""

    def __init__(self) -> None:
        self.log = CallLog()

    async def Synthesize(  # noqa: N802 - the RPC's name
        self, request: tts_pb2.SynthesizeRequest, context: Context
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        with self.log.record(request.text) as call:
            for word in re.findall(r"\w+", request.text.lower()):
                if word == "hang":
                    await hang(call)
                yield tts_pb2.SynthesizeResponse(chunk=tts_pb2.AudioChunk(audio=CHUNKS[word]))


class ScriptedProsody(prosody_pb2_grpc.ProsodyServicer):
    """prosody: the audio unchanged, or a wait for preset ``hang``."""

    def __init__(self) -> None:
        self.log = CallLog()

    async def Adjust(  # noqa: N802 - the RPC's name
        self, request: prosody_pb2.AdjustRequest, context: Context
    ) -> prosody_pb2.AdjustResponse:
        with self.log.record(request.preset) as call:
            if request.preset == "hang":
                await hang(call)
            return prosody_pb2.AdjustResponse(audio=request.audio)


class ScriptedVision(vision_pb2_grpc.VisionServicer):
    """vision: a wait, always."""

    def __init__(self) -> None:
        self.log = CallLog()

    async def Portrait(  # noqa: N802 - the RPC's name
        self, request: vision_pb2.PortraitRequest, context: Context
    ) -> vision_pb2.PortraitResponse:
        with self.log.record("Portrait") as call:
            await hang(call)


@dataclass
class StandIn:
    """A scripted servicer as a ChorusService, with nothing to load."""

    service_name: str
    servicer: Any
    register: Callable[[Any, aio.Server], None]

    @property
    def log(self) -> CallLog:
        """The calls the servicer received."""
        log: CallLog = self.servicer.log
        return log

    @property
    def service_names(self) -> Sequence[str]:
        return (self.service_name,)

    def add_to_server(self, server: aio.Server) -> None:
        self.register(self.servicer, server)

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        pass


def stand_ins() -> dict[str, StandIn]:
    """A fresh stand-in for each inner service, by the orchestrator's name for it.

    (The generated stubs declare every RPC abstract; gRPC's base servicer answers
    UNIMPLEMENTED for those a stand-in does not script.)
    """
    return {
        "tts": StandIn(
            TTS_SERVICE,
            ScriptedTts(),  # type: ignore[abstract]
            tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        ),
        "prosody": StandIn(
            PROSODY_SERVICE,
            ScriptedProsody(),  # type: ignore[abstract]
            prosody_pb2_grpc.add_ProsodyServicer_to_server,
        ),
        "vision": StandIn(
            VISION_SERVICE,
            ScriptedVision(),  # type: ignore[abstract]
            vision_pb2_grpc.add_VisionServicer_to_server,
        ),
    }


class HandoverCounter(orchestrator_pb2_grpc.OrchestratorServicer):
    """The orchestrator's servicer, counting the messages its RPCs hand to gRPC.

    gRPC writes each message as it gets it and asks for the next only once the write is
    done: so once a message a client cannot take has been handed over, the RPC is blocked
    in gRPC's write.
    """

    def __init__(self, servicer: OrchestratorServicer) -> None:
        self._servicer = servicer
        self.handed_over = 0

    async def Speak(  # noqa: N802 - the RPC's name
        self, request: pb.SpeakRequest, context: Context
    ) -> AsyncGenerator[pb.SpeakResponse, None]:
        async for response in self._counted(self._servicer.Speak(request, context)):
            yield response

    async def SpeakStream(  # noqa: N802 - the RPC's name
        self, request_iterator: AsyncIterator[pb.SpeakStreamRequest], context: Context
    ) -> AsyncGenerator[pb.SpeakResponse, None]:
        async for response in self._counted(self._servicer.SpeakStream(request_iterator, context)):
            yield response

    async def ComposeMessage(  # noqa: N802 - the RPC's name
        self, request: pb.ComposeMessageRequest, context: Context
    ) -> AsyncGenerator[pb.ComposeMessageResponse, None]:
        async for response in self._counted(self._servicer.ComposeMessage(request, context)):
            yield response

    async def SynthesizeBatch(  # noqa: N802 - the RPC's name
        self, request: pb.SynthesizeBatchRequest, context: Context
    ) -> AsyncGenerator[pb.SynthesizeBatchResponse, None]:
        async for response in self._counted(self._servicer.SynthesizeBatch(request, context)):
            yield response

    async def _counted(self, responses: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
        async with contextlib.aclosing(responses):
            async for response in responses:
                self.handed_over += 1
                yield response


class CountingOrchestrator(OrchestratorService):
    """The orchestrator service, its servicer wrapped in a HandoverCounter."""

    def __init__(self, settings: OrchestratorSettings, telemetry: Telemetry) -> None:
        super().__init__(settings, telemetry)
        self.counter = HandoverCounter(self._servicer)

    def add_to_server(self, server: aio.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(self.counter, server)
