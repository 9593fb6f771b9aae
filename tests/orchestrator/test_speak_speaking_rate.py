"""Speak's and SpeakStream's speaking rate: tts's, passed on for every sentence (with or
without a preset, with or without word timings), checked by Speak before its format goes
out as tts checks it.

Against the real tts (espeak), prosody and vision servers on loopback.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.tts.v1 import tts_pb2
from grpc import aio

from tests.orchestrator.real_suite import Suite, real_suite

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = "Congratulations on the new job! We are all so proud of you. See you soon."
FASTER = 0.65
"""Twice the rate gives under this share of the samples (espeak's gives about 0.52: its
pauses shrink less than its words)."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite() -> AsyncIterator[Suite]:
    async with real_suite() as started:
        yield started


async def spoken(suite: Suite, **fields: Any) -> tuple[int, list[tts_pb2.WordTiming]]:
    """Speak's samples (16-bit PCM) and words for one request."""
    request = pb.SpeakRequest(text=TEXT, **fields)
    responses = [r async for r in suite.stub.Speak(request, timeout=60)]
    assert responses[0].HasField("format")
    assert responses[-1].HasField("summary")
    samples = sum(len(r.audio) // 2 for r in responses if r.HasField("audio"))
    assert samples == round(
        responses[-1].summary.audio_seconds * responses[0].format.sample_rate_hz
    )
    return samples, [r.word for r in responses if r.HasField("word")]


@pytest.mark.parametrize("preset", ["", "calm"], ids=["tts-stream", "preset"])
@pytest.mark.parametrize("word_timings", [False, True], ids=["audio", "words"])
async def test_twice_the_rate_is_audibly_shorter(
    suite: Suite, preset: str, word_timings: bool
) -> None:
    normal, normal_words = await spoken(
        suite, preset=preset, word_timings=word_timings, speaking_rate=1.0
    )
    fast, fast_words = await spoken(
        suite, preset=preset, word_timings=word_timings, speaking_rate=2.0
    )
    assert fast < FASTER * normal, (fast, normal)
    if word_timings:
        # The same words, spoken sooner.
        assert [w.word for w in fast_words] == [w.word for w in normal_words]
        assert fast_words[-1].end_sample < FASTER * normal_words[-1].end_sample


async def test_no_rate_is_the_normal_rate_and_half_is_longer(suite: Suite) -> None:
    default, _ = await spoken(suite)
    normal, _ = await spoken(suite, speaking_rate=1.0)
    slow, _ = await spoken(suite, speaking_rate=0.5)
    assert default == normal
    assert slow > normal / FASTER


@pytest.mark.parametrize("rate", [0.5, 2.5])
async def test_the_bounds_are_served(suite: Suite, rate: float) -> None:
    samples, _ = await spoken(suite, speaking_rate=rate)
    assert samples > 0


@pytest.mark.parametrize("rate", [-1.0, 0.25, 0.49, 2.6, 4.0, math.nan, math.inf])
@pytest.mark.parametrize("preset", ["", "calm"])
async def test_a_bad_rate_is_invalid_argument_before_any_audio(
    suite: Suite, rate: float, preset: str
) -> None:
    call = suite.stub.Speak(
        pb.SpeakRequest(text=TEXT, preset=preset, speaking_rate=rate), timeout=60
    )
    with pytest.raises(aio.AioRpcError) as raised:
        await call.read()  # not even the format comes first
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("speaking_rate: ")


async def speak_stream(suite: Suite, config: pb.SpeakStreamConfig) -> int:
    """SpeakStream's samples (16-bit PCM) for TEXT written in two fragments."""
    requests = [
        pb.SpeakStreamRequest(config=config),
        pb.SpeakStreamRequest(text=TEXT[:30]),
        pb.SpeakStreamRequest(text=TEXT[30:]),
        pb.SpeakStreamRequest(end=tts_pb2.End()),
    ]
    responses = [r async for r in suite.stub.SpeakStream(iter(requests), timeout=60)]
    assert responses[-1].HasField("summary")
    return sum(len(r.audio) // 2 for r in responses if r.HasField("audio"))


async def test_speak_stream_passes_its_rate_to_tts(suite: Suite) -> None:
    normal = await speak_stream(suite, pb.SpeakStreamConfig(speaking_rate=1.0))
    fast = await speak_stream(suite, pb.SpeakStreamConfig(speaking_rate=2.0))
    assert fast < FASTER * normal, (fast, normal)


async def test_speak_stream_relays_tts_refusing_a_rate(suite: Suite) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await speak_stream(suite, pb.SpeakStreamConfig(speaking_rate=9.0))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("speaking_rate: ")
