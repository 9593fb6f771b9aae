"""Whom an RPC is for: told apart by address, or by the orchestrator's word on services
only it reaches; a client that never reads its streams cannot take every slot."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio

from services.common.callers import (
    CALLER,
    CALLER_METADATA,
    caller_key,
    forward_caller_interceptors,
)
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.service_harness import ServerUnderTest, server_starter
from tests.support.waiting import wait_until

# Minutes of audio: far more than gRPC's flow-control window holds for a reader that
# never reads, so each such stream keeps its slot.
LONG_TEXT = "This sentence is spoken again and again. " * 120


def test_a_peer_is_its_address_without_the_port() -> None:
    assert caller_key((), "ipv4:10.1.2.3:51234", trust_metadata=True) == "ipv4:10.1.2.3"
    assert caller_key((), "ipv6:[::1]:51234", trust_metadata=False) == "ipv6:[::1]"


def test_the_named_caller_counts_only_where_trusted() -> None:
    metadata = [(CALLER_METADATA, "alice")]
    assert caller_key(metadata, "ipv4:10.1.2.3:5", trust_metadata=True) == "alice"
    assert caller_key(metadata, "ipv4:10.1.2.3:5", trust_metadata=False) == "ipv4:10.1.2.3"


@pytest.fixture
async def small_tts() -> AsyncIterator[ServerUnderTest[TtsService]]:
    """A tts server with 4 slots, no queue, half of them for any one caller."""
    async with server_starter(ServerUnderTest) as start:
        settings = dataclasses.replace(
            TtsSettings(host="127.0.0.1", port=0),
            engine="espeak",
            max_in_flight=4,
            max_queue=0,
            caller_share=0.5,
        )
        yield await start(lambda telemetry: TtsService(settings, telemetry), settings, True)


async def test_streams_never_read_take_only_their_callers_share(
    small_tts: ServerUnderTest[TtsService],
) -> None:
    stub = tts_pb2_grpc.TextToSpeechStub(small_tts.channel)
    admission = small_tts.service.admission
    greedy = [
        stub.Synthesize(
            tts_pb2.SynthesizeRequest(text=LONG_TEXT), metadata=((CALLER_METADATA, "greedy"),)
        )
        for _ in range(2)
    ]
    try:
        await wait_until(lambda: admission.held_by("greedy") == 2, "greedy holding two slots")
        refused = stub.Synthesize(
            tts_pb2.SynthesizeRequest(text="Hello."), metadata=((CALLER_METADATA, "greedy"),)
        )
        with pytest.raises(aio.AioRpcError) as raised:
            async for _ in refused:
                pass
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "its whole share" in (raised.value.details() or "")
        served = [
            response
            async for response in stub.Synthesize(
                tts_pb2.SynthesizeRequest(text="Hello."),
                metadata=((CALLER_METADATA, "polite"),),
            )
        ]
        assert served[-1].HasField("summary")
    finally:
        for call in greedy:
            call.cancel()
    await wait_until(lambda: admission.in_flight == 0, "the greedy slots freed")


class EchoCaller(grpc.GenericRpcHandler):
    """Answers /echo/Unary and /echo/Stream with the chorus-caller metadata it received."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        metadata = dict(handler_call_details.invocation_metadata or ())
        caller = str(metadata.get(CALLER_METADATA, "")).encode()

        async def unary(_request: bytes, _context: object) -> bytes:
            return caller

        async def stream(_request: bytes, _context: object) -> AsyncIterator[bytes]:
            yield caller

        if handler_call_details.method.endswith("Stream"):
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(unary)


async def test_upstream_calls_name_the_current_caller() -> None:
    server = aio.server()
    server.add_generic_rpc_handlers((EchoCaller(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=forward_caller_interceptors()
        ) as channel:
            unary: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/echo/Unary")
            stream: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                "/echo/Stream"
            )
            assert await unary(b"") == b""
            CALLER.set("alice")
            assert await unary(b"") == b"alice"
            assert [reply async for reply in stream(b"")] == [b"alice"]
    finally:
        await server.stop(0)
