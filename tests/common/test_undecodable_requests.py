"""Bytes that do not parse as the request message are INVALID_ARGUMENT, counted in the RPC
metrics and logged without a traceback, on a real server over loopback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import cast

import grpc
import pytest
from chorus.tts.v1 import tts_pb2
from grpc import aio

from services.tts.server import SERVICE_NAME, TtsService
from tests.support.service_harness import ServerUnderTest
from tests.support.waiting import wait_until

SYNTHESIZE = f"/{SERVICE_NAME}/Synthesize"
LIST_VOICES = f"/{SERVICE_NAME}/ListVoices"

# Field 1 (text) as a length-delimited string holding bytes that are not UTF-8.
INVALID_UTF8_TEXT = b"\x0a\x02\xc3\x28"
# Field 1 claims 100 bytes and the message ends after 3.
TRUNCATED = b"\x0a\x64abc"
# A field number of 0 does not exist in any protobuf message.
GARBAGE = b"\x00\x00\x00\xff\xff"

Server = ServerUnderTest[TtsService]


def raw_call(channel: aio.Channel, method: str, streaming: bool) -> Callable[[bytes], object]:
    """A call of ``method`` that sends bytes as they are, without serialising anything."""
    if streaming:
        stream: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            method, request_serializer=None, response_deserializer=None
        )
        return stream
    unary: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        method, request_serializer=None, response_deserializer=None
    )
    return unary


async def drain(call: object) -> None:
    """Await a unary call, or read a streaming one to its end."""
    if isinstance(call, aio.UnaryStreamCall):
        async for _ in call:
            pass
    else:
        await cast("Awaitable[object]", call)


async def status_of(call: object) -> aio.AioRpcError:
    """The error a raw call ends with (it must end with one)."""
    with pytest.raises(aio.AioRpcError) as raised:
        await drain(call)
    return raised.value


@pytest.mark.parametrize("payload", [INVALID_UTF8_TEXT, TRUNCATED, GARBAGE])
@pytest.mark.parametrize(("method", "streaming"), [(SYNTHESIZE, True), (LIST_VOICES, False)])
async def test_unparsable_bytes_are_invalid_argument_naming_the_message(
    espeak_tts: Server, payload: bytes, method: str, streaming: bool
) -> None:
    call = raw_call(espeak_tts.channel, method, streaming)(payload)
    error = await status_of(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith("request: not a valid chorus.tts.v1.")
    assert "Traceback" not in details


async def test_they_are_counted_with_their_status(espeak_tts: Server) -> None:
    for payload in (INVALID_UTF8_TEXT, TRUNCATED):
        await status_of(raw_call(espeak_tts.channel, SYNTHESIZE, True)(payload))

    def refused() -> int:
        return sum(
            int(point.value)
            for point in espeak_tts.metric_points("chorus.rpc.server.requests")
            if point.attributes["rpc.method"] == "Synthesize"
            and point.attributes["rpc.grpc.status_code"] == "INVALID_ARGUMENT"
        )

    await wait_until(lambda: refused() == 2, "two refusals counted")


async def test_they_are_logged_without_a_traceback(
    espeak_tts: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await status_of(raw_call(espeak_tts.channel, SYNTHESIZE, True)(INVALID_UTF8_TEXT))
    mentions = [record for record in caplog.records if "not a valid" in record.getMessage()]
    assert mentions, "the refusal is logged"
    assert all(record.exc_info is None for record in mentions)
    assert all(record.levelno < logging.ERROR for record in caplog.records)


async def test_a_valid_request_still_parses(espeak_tts: Server) -> None:
    call = raw_call(espeak_tts.channel, LIST_VOICES, False)(
        tts_pb2.ListVoicesRequest(language="en").SerializeToString()
    )
    reply = tts_pb2.ListVoicesResponse.FromString(await cast("Awaitable[bytes]", call))
    assert reply.voices
