"""Requests the orchestrator must refuse as the caller's mistakes, at once and naming the
caller's field, without wasting the inner services' work on them: a photo that is not an
image, a batch with a voice or preset nobody has, a sample rate tts cannot make. And a
batch that asks for more concurrency than the server allows gets the server's limit. And
what is not the caller's mistake is not refused as one: text with nothing to say.

Against the real tts, prosody and vision servers on loopback (tests.orchestrator.real_suite).
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from PIL import Image as PilImage
from skimage import data

from services.common.wav import read_wav
from tests.orchestrator.real_suite import Suite, real_suite, serving
from tests.orchestrator.scripted import stand_ins
from tests.support.compressed_audio import decode_mp3, decode_ogg_opus
from tests.support.waiting import WAIT_S, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

BATCH_CONCURRENCY = 2
"""The orchestrator's CHORUS_BATCH_CONCURRENCY here; tts takes exactly that many streams
at once and refuses any more at once (no queue), so a batch over the limit shows."""

TTS_MAX_TEXT_CHARS = 200
"""Shorter than the orchestrator's limit: a segment tts alone refuses."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite() -> AsyncIterator[Suite]:
    async with real_suite(
        tts={
            "max_in_flight": BATCH_CONCURRENCY,
            "max_queue": 0,
            "caller_share": 1.0,
            "max_text_chars": TTS_MAX_TEXT_CHARS,
        },
        orchestrator={"batch_concurrency": BATCH_CONCURRENCY},
    ) as started:
        yield started


def png_claiming(width: int, height: int) -> bytes:
    """A decompression bomb: a valid PNG header that claims ``width`` x ``height``, and a
    few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(1024)))
        + chunk(b"IEND", b"")
    )


def encoded(image_format: str) -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(data.astronaut()).save(buffer, format=image_format)
    return buffer.getvalue()


BAD_PHOTOS = {
    "garbage": lambda: bytes(range(256)) * 16,
    "truncated-png": lambda: encoded("PNG")[: len(encoded("PNG")) // 2],
    "gif": lambda: encoded("GIF"),
    "decompression-bomb": lambda: png_claiming(50_000, 50_000),
}


async def responses_until_error(call: Any) -> tuple[list[Any], grpc.aio.AioRpcError]:
    """What a streaming call sent before it failed, and how it failed."""
    received = []
    try:
        async for response in call:
            received.append(response)
    except grpc.aio.AioRpcError as error:
        return received, error
    pytest.fail(f"the call ended OK, after {len(received)} messages")


@pytest.mark.parametrize("make_photo", BAD_PHOTOS.values(), ids=BAD_PHOTOS.keys())
async def test_a_photo_that_is_not_an_image_is_invalid_argument_naming_photo(
    suite: Suite, make_photo: Any
) -> None:
    request = pb.ComposeMessageRequest(text="Here is my photo.", photo=make_photo())
    _, error = await responses_until_error(suite.stub.ComposeMessage(request, timeout=WAIT_S))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert (error.details() or "").startswith("photo: "), error.details()


async def test_a_bad_photo_cancels_the_speech_made_meanwhile() -> None:
    """tts here is a stand-in whose stream for ``Hang.`` never ends unless cancelled: the
    call can only end as it must if the orchestrator gives up the speech at once."""
    scripted = stand_ins()
    inner = {name: serving(scripted[name]) for name in ("tts", "prosody")}
    async with real_suite(inner=inner) as suite:
        request = pb.ComposeMessageRequest(text="Hang.", photo=BAD_PHOTOS["garbage"]())
        # The deadline is far beyond the waits below: only the cancel ends the tts call.
        call = suite.stub.ComposeMessage(request, timeout=4 * WAIT_S)
        _, error = await responses_until_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert (error.details() or "").startswith("photo: ")
        calls = scripted["tts"].log.calls
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: all(c.ended for c in calls), "the tts calls' end")
        assert [(c.key, c.ended, c.cancelled) for c in calls] in ([], [("Hang.", True, True)])


async def test_a_batch_asking_for_more_concurrency_gets_the_servers_limit(suite: Suite) -> None:
    segments = [f"Segment {i} of a batch that asks for far too much." for i in range(12)]
    request = pb.SynthesizeBatchRequest(segments=segments, max_concurrency=1000)
    responses = [r async for r in suite.stub.SynthesizeBatch(request, timeout=WAIT_S)]
    # More than BATCH_CONCURRENCY streams at once, and tts would have refused the rest.
    assert [r.error for r in responses if r.error] == []
    assert sorted(r.index for r in responses) == list(range(len(segments)))


@pytest.mark.parametrize(
    ("field", "value", "counted"),
    [("voice", "nobody", ("tts", "Synthesize")), ("preset", "party", ("prosody", "Adjust"))],
)
async def test_a_bad_batch_wide_field_ends_the_batch_up_front(
    suite: Suite, field: str, value: str, counted: tuple[str, str]
) -> None:
    server, method = getattr(suite, counted[0]), counted[1]
    before = server.rpc_count(method)
    segments = [f"Segment {i} of a batch refused as a whole." for i in range(20)]
    request = pb.SynthesizeBatchRequest(segments=segments)
    setattr(request, field, value)
    received, error = await responses_until_error(
        suite.stub.SynthesizeBatch(request, timeout=WAIT_S)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: "), error.details()
    assert received == []
    # Only the segments already under way when the first refusal came were asked for.
    assert server.rpc_count(method) - before <= BATCH_CONCURRENCY


async def test_a_segment_refused_for_its_own_text_fails_alone(suite: Suite) -> None:
    segments = ["A short one.", "Far too long for tts. " * 20, "Another short one."]
    request = pb.SynthesizeBatchRequest(segments=segments)
    responses = {r.index: r async for r in suite.stub.SynthesizeBatch(request, timeout=WAIT_S)}
    assert sorted(responses) == [0, 1, 2]
    assert responses[1].error.startswith("text: ")
    assert read_wav(responses[0].audio_wav).samples.size > 0
    assert read_wav(responses[2].audio_wav).samples.size > 0


@pytest.mark.parametrize("rate", [12345, -1, 96000])
async def test_speak_refuses_an_unsupported_sample_rate_before_sending_anything(
    suite: Suite, rate: int
) -> None:
    request = pb.SpeakRequest(text="At what rate?", sample_rate_hz=rate)
    received, error = await responses_until_error(suite.stub.Speak(request, timeout=WAIT_S))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("sample_rate_hz: "), error.details()
    assert received == []


async def test_speak_announces_and_makes_a_supported_sample_rate(suite: Suite) -> None:
    request = pb.SpeakRequest(text="At sixteen kilohertz.", sample_rate_hz=16000)
    responses = [r async for r in suite.stub.Speak(request, timeout=WAIT_S)]
    assert responses[0].format.sample_rate_hz == 16000
    audio = b"".join(r.audio for r in responses if r.HasField("audio"))
    assert len(audio) // 2 / 16000 == pytest.approx(responses[-1].summary.audio_seconds)


@pytest.mark.parametrize(
    "encoding",
    [
        audio_pb2.AUDIO_ENCODING_PCM_S16LE,
        audio_pb2.AUDIO_ENCODING_MP3,
        audio_pb2.AUDIO_ENCODING_OGG_OPUS,
    ],
)
async def test_text_with_nothing_to_say_is_spoken_as_it_is_not_refused(
    suite: Suite, encoding: audio_pb2.AudioEncoding.ValueType
) -> None:
    # tts makes silence of punctuation alone, and prosody cannot reshape silence: that is
    # not the caller's mistake, and no field of theirs is named for it.
    request = pb.SpeakRequest(text="....", preset="celebration", encoding=encoding)
    responses = [r async for r in suite.stub.Speak(request, timeout=WAIT_S)]
    summary = responses[-1].summary
    assert [s.fallback for s in summary.sentences] == [True]
    assert summary.sentences[0].fallback_reason.startswith("prosody left the speech")
    audio = [r.audio for r in responses if r.HasField("audio")]
    assert all(audio), "no empty audio messages"
    if encoding == audio_pb2.AUDIO_ENCODING_MP3:
        decode_mp3(b"".join(audio))
    elif encoding == audio_pb2.AUDIO_ENCODING_OGG_OPUS:
        decode_ogg_opus(b"".join(audio))
