"""RPC count and duration by final status, through the real interceptor chain on loopback.

A scripted TextToSpeech servicer acts out each way an RPC can end: returned, refused with
a domain error, failed unexpectedly, past its deadline, cancelled while awaiting or while
blocked on a full send window, refused before the models loaded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from typing import Any

import grpc
import pytest
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry
from services.tts.server import SERVICE_NAME
from tests.support.service_harness import ServerUnderTest, server_starter
from tests.support.waiting import WAIT_S, poll, wait_until

LIST_VOICES = f"/{SERVICE_NAME}/ListVoices"
SYNTHESIZE = f"/{SERVICE_NAME}/Synthesize"


class ScriptedTts(tts_pb2_grpc.TextToSpeechServicer):
    """Ends each RPC the way its request's language (ListVoices) or text (Synthesize) says."""

    def __init__(self) -> None:
        self.slow_calls = 0
        """"slow" calls whose handler has started."""
        self.slow_handler_s: list[float] = []
        """How long each "slow" call's handler ran before gRPC cancelled it."""

    async def ListVoices(  # noqa: N802 - the RPC's name
        self, request: tts_pb2.ListVoicesRequest, context: aio.ServicerContext[Any, Any]
    ) -> tts_pb2.ListVoicesResponse:
        if request.language == "bad":
            raise InvalidArgument("language", "no such language")
        if request.language == "bug":
            raise RuntimeError("a bug")
        if request.language == "slow":
            self.slow_calls += 1
            entered = time.perf_counter()
            try:
                await asyncio.Event().wait()  # never set: only the deadline ends this call
            finally:
                self.slow_handler_s.append(time.perf_counter() - entered)
        return tts_pb2.ListVoicesResponse()

    async def SynthesizeStream(  # noqa: N802 - the RPC's name
        self,
        request_iterator: AsyncIterator[tts_pb2.SynthesizeStreamRequest],
        context: aio.ServicerContext[Any, Any],
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        async for request in request_iterator:
            if request.text == "bad":
                raise InvalidArgument("text", "is bad")
            yield tts_pb2.SynthesizeResponse(chunk=tts_pb2.AudioChunk(audio=b"\0\0"))

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

    def __init__(self) -> None:
        self.servicer = ScriptedTts()

    @property
    def service_names(self) -> Sequence[str]:
        return (SERVICE_NAME,)

    def add_to_server(self, server: aio.Server) -> None:
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(self.servicer, server)

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        pass


Server = ServerUnderTest[ScriptedService]
StartScripted = Callable[[bool], Awaitable[Server]]


@pytest.fixture
async def start_scripted() -> AsyncIterator[StartScripted]:
    """Start scripted servers, ready (load=True) or still loading."""
    async with server_starter(ServerUnderTest[ScriptedService]) as start:

        async def start_one(load: bool) -> Server:
            def build(_telemetry: Telemetry) -> ScriptedService:
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
    """The request counts once they equal ``expected``, or as they are when the wait runs
    out (a cancelled stream is counted when gRPC closes it, a moment after the client has
    gone)."""

    async def counts() -> dict[Any, int]:
        return requests(server)

    return await poll(counts, lambda found: found == expected)


async def list_voices(server: Server, language: str, deadline_s: float = 10) -> grpc.StatusCode:
    """Call ListVoices; returns the status it ended with."""
    stub = tts_pb2_grpc.TextToSpeechStub(server.channel)
    try:
        await stub.ListVoices(tts_pb2.ListVoicesRequest(language=language), timeout=deadline_s)
    except aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# Deadlines that gRPC sends as they are (under a second, in milliseconds) and rounded up
# (from a second on, to three significant digits: 1.0 s arrives as 1.01 s): then the
# server's deadline falls after the client's, and the client's cancellation, sent at its
# own deadline, reaches the server first.
DEADLINES_S = (0.2, 0.5, 1.0, 1.234, 2.0)


async def test_unary_rpcs_are_counted_with_the_status_the_caller_got(
    start_scripted: StartScripted,
) -> None:
    server = await start_scripted(True)
    assert await list_voices(server, "") == grpc.StatusCode.OK
    assert await list_voices(server, "bad") == grpc.StatusCode.INVALID_ARGUMENT
    assert await list_voices(server, "bug") == grpc.StatusCode.INTERNAL
    # The handler waits for ever, so only the deadline ends these calls.
    for deadline_s in DEADLINES_S:
        assert await list_voices(server, "slow", deadline_s) == grpc.StatusCode.DEADLINE_EXCEEDED

    expected = {
        (LIST_VOICES, "OK"): 1,
        (LIST_VOICES, "INVALID_ARGUMENT"): 1,
        (LIST_VOICES, "INTERNAL"): 1,
        (LIST_VOICES, "DEADLINE_EXCEEDED"): len(DEADLINES_S),
    }
    assert await settled(server, expected) == expected
    durations = {
        point.attributes["rpc.grpc.status_code"]: point
        for point in server.metric_points("chorus.rpc.server.duration")
    }
    assert {status: point.count for status, point in durations.items()} == {
        "OK": 1,
        "INVALID_ARGUMENT": 1,
        "INTERNAL": 1,
        "DEADLINE_EXCEEDED": len(DEADLINES_S),
    }
    assert all(point.sum > 0 for point in durations.values())
    # The duration runs from the call to its status: it covers all the time the handlers
    # spent waiting for the deadline (no absolute figure: the machine may be slow).
    assert durations["DEADLINE_EXCEEDED"].sum >= sum(server.service.servicer.slow_handler_s)


async def test_a_unary_rpc_the_client_cancels_is_counted_as_cancelled(
    start_scripted: StartScripted,
) -> None:
    server = await start_scripted(True)
    # A plain channel: through OpenTelemetry's client interceptor, cancelling a unary call
    # before its response arrives does not cancel the RPC.
    async with aio.insecure_channel(server.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        # A deadline far beyond the cancel: no rounding tolerance reaches back to it.
        call = stub.ListVoices(tts_pb2.ListVoicesRequest(language="slow"), timeout=WAIT_S)
        await wait_until(lambda: server.service.servicer.slow_calls > 0, "the slow handler")
        call.cancel()
        expected = {(LIST_VOICES, "CANCELLED"): 1}
        assert await settled(server, expected) == expected


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


@pytest.mark.parametrize("pace", ["paced", "busy"])
async def test_a_stream_past_its_deadline_is_counted_as_deadline_exceeded(
    start_scripted: StartScripted, pace: str
) -> None:
    server = await start_scripted(True)
    stub = tts_pb2_grpc.TextToSpeechStub(server.channel)
    call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=pace), timeout=1.0)
    if pace == "paced":
        # Read all along: the deadline finds the servicer between chunks. Unread ("busy"),
        # the stream fills the send window and the deadline finds it blocked in gRPC.
        with pytest.raises(aio.AioRpcError):
            async for _ in call:
                pass
    assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    expected = {(SYNTHESIZE, "DEADLINE_EXCEEDED"): 1}
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


async def read_all(call: AsyncIterable[tts_pb2.SynthesizeResponse]) -> None:
    async for _ in call:
        pass


async def test_bidirectional_streams_are_counted_and_their_bad_messages_mapped(
    start_scripted: StartScripted,
) -> None:
    server = await start_scripted(True)
    stub = tts_pb2_grpc.TextToSpeechStub(server.channel)

    async def written(*texts: str) -> AsyncIterator[tts_pb2.SynthesizeStreamRequest]:
        for text in texts:
            yield tts_pb2.SynthesizeStreamRequest(text=text)

    answered = [r async for r in stub.SynthesizeStream(written("a", "b"), timeout=WAIT_S)]
    assert len(answered) == 2
    refused = stub.SynthesizeStream(written("a", "bad"), timeout=WAIT_S)
    with pytest.raises(aio.AioRpcError) as raised:
        await read_all(refused)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "text: is bad"
    stream = f"/{SERVICE_NAME}/SynthesizeStream"
    expected = {(stream, "OK"): 1, (stream, "INVALID_ARGUMENT"): 1}
    assert await settled(server, expected) == expected
