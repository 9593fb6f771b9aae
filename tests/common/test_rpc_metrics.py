"""RPC count and duration by final status, through the real interceptor chain on loopback.

A scripted TextToSpeech servicer acts out each way an RPC can end: returned, refused with
a domain error, failed unexpectedly, past its deadline, cancelled while awaiting or while
blocked on a full send window, refused before the models loaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import pytest
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.server import ChorusService
from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry
from services.tts.server import SERVICE_NAME
from tests.support.service_harness import ServerUnderTest, server_starter

LIST_VOICES = f"/{SERVICE_NAME}/ListVoices"
SYNTHESIZE = f"/{SERVICE_NAME}/Synthesize"

Server = ServerUnderTest[ChorusService]
StartScripted = Callable[[bool], Awaitable[Server]]


class ScriptedTts(tts_pb2_grpc.TextToSpeechServicer):
    """Ends each RPC the way its request's language (ListVoices) or text (Synthesize) says."""

    async def ListVoices(  # noqa: N802 - the RPC's name
        self, request: tts_pb2.ListVoicesRequest, context: aio.ServicerContext[Any, Any]
    ) -> tts_pb2.ListVoicesResponse:
        if request.language == "bad":
            raise InvalidArgument("language", "no such language")
        if request.language == "bug":
            raise RuntimeError("a bug")
        if request.language == "slow":
            await asyncio.sleep(30)
        return tts_pb2.ListVoicesResponse()

    async def Synthesize(  # noqa: N802 - the RPC's name
        self, request: tts_pb2.SynthesizeRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        while True:
            yield tts_pb2.SynthesizeResponse(chunk=tts_pb2.AudioChunk(audio=bytes(64 * 1024)))
            if request.text == "paced":
                # Cancelled here, in the servicer; "busy" is cancelled in gRPC's send instead.
                await asyncio.sleep(0.01)


class ScriptedService:
    """ScriptedTts as a ChorusService, with nothing to load."""

    @property
    def service_names(self) -> Sequence[str]:
        return (SERVICE_NAME,)

    def add_to_server(self, server: aio.Server) -> None:
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(ScriptedTts(), server)

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
async def start_scripted() -> AsyncIterator[StartScripted]:
    """Start scripted servers, ready (load=True) or still loading."""
    async with server_starter(ServerUnderTest[ChorusService]) as start:

        async def start_one(load: bool) -> Server:
            def build(_telemetry: Telemetry) -> ChorusService:
                return ScriptedService()

            return await start(build, ServerSettings(host="127.0.0.1", port=0), load)

        yield start_one


def requests(server: Server) -> dict[tuple[str, str], int]:
    """``chorus.rpc.server.requests`` by (full method name, status name)."""
    return {
        (
            f"/{point.attributes['rpc.service']}/{point.attributes['rpc.method']}",
            point.attributes["rpc.grpc.status_code"],
        ): point.value
        for point in server.metric_points("chorus.rpc.server.requests")
    }


async def settled(server: Server, expected: dict[tuple[str, str], int]) -> dict[Any, int]:
    """The request counts once they equal ``expected``, or after 10 s (a cancelled stream
    is counted when gRPC closes it, a moment after the client has gone)."""
    for _ in range(500):
        if requests(server) == expected:
            break
        await asyncio.sleep(0.02)
    return requests(server)


async def list_voices(server: Server, language: str, deadline_s: float = 10) -> grpc.StatusCode:
    """Call ListVoices; returns the status it ended with."""
    stub = tts_pb2_grpc.TextToSpeechStub(server.channel)
    try:
        await stub.ListVoices(tts_pb2.ListVoicesRequest(language=language), timeout=deadline_s)
    except aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_unary_rpcs_are_counted_with_the_status_the_caller_got(
    start_scripted: StartScripted,
) -> None:
    server = await start_scripted(True)
    assert await list_voices(server, "") == grpc.StatusCode.OK
    assert await list_voices(server, "bad") == grpc.StatusCode.INVALID_ARGUMENT
    assert await list_voices(server, "bug") == grpc.StatusCode.INTERNAL
    assert await list_voices(server, "slow", deadline_s=0.2) == grpc.StatusCode.DEADLINE_EXCEEDED

    expected = {
        (LIST_VOICES, status): 1
        for status in ("OK", "INVALID_ARGUMENT", "INTERNAL", "DEADLINE_EXCEEDED")
    }
    assert await settled(server, expected) == expected
    durations = {
        point.attributes["rpc.grpc.status_code"]: point
        for point in server.metric_points("chorus.rpc.server.duration")
    }
    assert durations["OK"].count == 1
    assert durations["OK"].sum < 1
    assert 0.15 < durations["DEADLINE_EXCEEDED"].sum < 5


@pytest.mark.parametrize("pace", ["paced", "busy"])
async def test_a_stream_the_client_cancels_is_counted_as_cancelled(
    start_scripted: StartScripted, pace: str
) -> None:
    server = await start_scripted(True)
    stub = tts_pb2_grpc.TextToSpeechStub(server.channel)
    call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=pace), timeout=30)
    await call.read()
    await call.read()
    call.cancel()
    expected = {(SYNTHESIZE, "CANCELLED"): 1}
    assert await settled(server, expected) == expected


async def test_rpcs_refused_while_loading_are_counted_and_health_checks_are_not(
    start_scripted: StartScripted,
) -> None:
    server = await start_scripted(False)
    health = health_pb2_grpc.HealthStub(server.channel)
    await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert await list_voices(server, "") == grpc.StatusCode.UNAVAILABLE
    expected = {(LIST_VOICES, "UNAVAILABLE"): 1}
    assert await settled(server, expected) == expected
