"""Response streams end when their reader stalls, and close the moment their call ends."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio

from services.common.response_streams import StreamGuardInterceptor
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.service_harness import ServerUnderTest, server_starter
from tests.support.waiting import wait_until

# A handler that yields these for ever soon fills the flow-control window of a client that
# does not read (a few megabytes), and stays suspended at a yield from then on.
BIG_MESSAGE = b"\x00" * (1024 * 1024)
STREAM_METHOD = "/test.Streams/Forever"
# Minutes of audio: more than a reader that never reads can buffer.
LONG_TEXT = "This sentence is spoken again and again. " * 120

HANDLER_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("handler_value")


@dataclasses.dataclass
class StreamHandler:
    """Yields BIG_MESSAGE for ever; notes that it yielded, and how it was closed."""

    yielded: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    close_errors: list[BaseException] = dataclasses.field(default_factory=list)

    async def stream(self, _request: bytes, _context: object) -> AsyncIterator[bytes]:
        # A token set here can be reset only in this same context: what a span made
        # current inside a handler needs at its end.
        token = HANDLER_VALUE.set("streaming")
        try:
            while True:
                self.yielded.set()
                yield BIG_MESSAGE
        finally:
            try:
                HANDLER_VALUE.reset(token)
            except ValueError as error:
                self.close_errors.append(error)
            self.closed.set()

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "test.Streams", {"Forever": grpc.unary_stream_rpc_method_handler(self.stream)}
        )


async def guarded_server(handler: StreamHandler, stall_timeout_s: float) -> tuple[aio.Server, str]:
    server = aio.server(interceptors=[StreamGuardInterceptor(["test.Streams"], stall_timeout_s)])
    server.add_generic_rpc_handlers((handler.handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def forever(channel: aio.Channel) -> aio.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream(STREAM_METHOD)


async def read_all(call: aio.UnaryStreamCall[bytes, bytes], into: list[bytes]) -> None:
    async for message in call:
        into.append(message)


@pytest.mark.usefixtures("no_garbage_collection")
async def test_a_call_cancelled_while_its_message_waits_closes_the_handler_in_its_context() -> None:
    handler = StreamHandler()
    server, address = await guarded_server(handler, stall_timeout_s=0)
    try:
        async with aio.insecure_channel(address) as channel:
            call = forever(channel)(b"")
            await asyncio.wait_for(handler.yielded.wait(), 30)
            call.cancel()
            await asyncio.wait_for(handler.closed.wait(), 30)
        assert handler.close_errors == []
    finally:
        await server.stop(0)


@pytest.mark.usefixtures("no_garbage_collection")
async def test_a_reader_that_stalls_is_ended_after_the_messages_already_sent() -> None:
    handler = StreamHandler()
    server, address = await guarded_server(handler, stall_timeout_s=0.2)
    try:
        options = [("grpc.max_receive_message_length", 2 * len(BIG_MESSAGE))]
        async with aio.insecure_channel(address, options=options) as channel:
            call = forever(channel)(b"")
            await asyncio.wait_for(handler.closed.wait(), 30)
            assert handler.close_errors == []
            received: list[bytes] = []
            with pytest.raises(aio.AioRpcError) as raised:
                await read_all(call, received)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stall timeout" in (raised.value.details() or "")
        assert received
        assert all(message == BIG_MESSAGE for message in received)
    finally:
        await server.stop(0)


@pytest.fixture
async def stalling_tts() -> AsyncIterator[ServerUnderTest[TtsService]]:
    """A tts server with two slots and a short stall timeout."""
    async with server_starter(ServerUnderTest) as start:
        settings = dataclasses.replace(
            TtsSettings(host="127.0.0.1", port=0),
            engine="espeak",
            max_in_flight=2,
            max_queue=0,
            caller_share=1.0,
            stall_timeout_s=0.5,
        )
        yield await start(lambda telemetry: TtsService(settings, telemetry), settings, True)


async def test_streams_never_read_give_their_slots_back_to_other_callers(
    stalling_tts: ServerUnderTest[TtsService],
) -> None:
    stub = tts_pb2_grpc.TextToSpeechStub(stalling_tts.channel)
    admission = stalling_tts.service.admission
    unread = [stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG_TEXT)) for _ in range(2)]
    try:
        await wait_until(lambda: admission.in_flight == 2, "the unread streams holding slots")
        await wait_until(lambda: admission.in_flight == 0, "the stalled streams ended")
        served = [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hello."))]
        assert served[-1].HasField("summary")
        for call in unread:
            with pytest.raises(aio.AioRpcError) as raised:
                async for _ in call:
                    pass
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        for call in unread:
            call.cancel()
    ended = {
        (point.attributes["rpc.method"], point.attributes["rpc.grpc.status_code"]): point.value
        for point in stalling_tts.metric_points("chorus.rpc.server.requests")
    }
    assert ended[("Synthesize", "DEADLINE_EXCEEDED")] == 2
    assert ended[("Synthesize", "OK")] == 1
