"""Domain errors: messages a caller can read, never longer than gRPC can carry back."""

from __future__ import annotations

import grpc
import pytest
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio

from services.common.errors import MAX_MESSAGE_CHARS, InvalidArgument, Unavailable
from services.tts.server import TtsService
from tests.support.service_harness import ServerUnderTest


def test_a_short_message_is_kept_whole() -> None:
    error = InvalidArgument("voice", "unknown voice 'robot'; see ListVoices")
    assert error.message == "voice: unknown voice 'robot'; see ListVoices"
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("length", [MAX_MESSAGE_CHARS, 8 * 1024, 1024 * 1024])
def test_an_echoed_value_is_cut_short(length: int) -> None:
    error = InvalidArgument("voice", f"unknown voice {'x' * length!r}; see ListVoices")
    assert len(error.message) == MAX_MESSAGE_CHARS
    assert error.message.startswith("voice: unknown voice 'xxx")
    assert error.message.endswith("...")
    assert str(error) == error.message


def test_every_domain_error_is_cut() -> None:
    assert len(Unavailable("tts unavailable: " + "detail " * 5000).message) == MAX_MESSAGE_CHARS


async def test_a_huge_voice_name_comes_back_as_invalid_argument(
    espeak_tts: ServerUnderTest[TtsService],
) -> None:
    """Over real gRPC: the caller's mistake, cut short, not an overflow read as overload."""
    stub = tts_pb2_grpc.TextToSpeechStub(espeak_tts.channel)
    call = stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hello.", voice="v" * 8192))
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = raised.value.details() or ""
    assert details.startswith("voice: ")
    assert len(details) <= MAX_MESSAGE_CHARS
