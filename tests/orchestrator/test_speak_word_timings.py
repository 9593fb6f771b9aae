"""Word timings through Speak: tts's as they come without a preset; with one, each
sentence's moved by prosody's change of tempo and by where the sentence starts.

Against the real tts (espeak), prosody and vision servers on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio

from services.common.sentences import split_sentences
from tests.orchestrator.real_suite import Suite, real_suite
from tests.tts.word_timing_checks import check_words, synthesize_timed

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Leading whitespace: spans index the request's text as sent.
TEXT = " Congratulations on the new job! We are all so proud of you. See you soon, 2,000 times."
RATE = 22050
CALM_TEMPO = 0.92  # services.prosody.presets: the calm preset plays 8% slower


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite() -> AsyncIterator[Suite]:
    async with real_suite() as started:
        yield started


@dataclass
class Spoken:
    """One Speak call's messages, in order."""

    format: audio_pb2.AudioFormat
    audio: list[bytes]
    words: list[tts_pb2.WordTiming]
    summary: pb.SpeakSummary
    order: list[tuple[str, int]]


async def speak(suite: Suite, **fields: Any) -> Spoken:
    responses = [r async for r in suite.stub.Speak(pb.SpeakRequest(**fields), timeout=60)]
    assert responses[0].HasField("format")
    assert responses[-1].HasField("summary")
    audio: list[bytes] = []
    words: list[tts_pb2.WordTiming] = []
    order: list[tuple[str, int]] = []
    for response in responses[1:-1]:
        if response.HasField("audio"):
            order.append(("audio", len(audio)))
            audio.append(response.audio)
        else:
            assert response.HasField("word")
            order.append(("word", len(words)))
            words.append(response.word)
    return Spoken(responses[0].format, audio, words, responses[-1].summary, order)


def check_pcm_order(spoken: Spoken) -> None:
    """Each word before the 16-bit PCM message its start is in."""
    ends, total = [], 0
    for message in spoken.audio:
        total += len(message) // 2
        ends.append(total)
    position = {entry: index for index, entry in enumerate(spoken.order)}
    for index, word in enumerate(spoken.words):
        holding = next((i for i, end in enumerate(ends) if word.start_sample < end), None)
        if holding is not None:
            assert position[("word", index)] < position[("audio", holding)], word


async def test_speak_passes_tts_words_through(suite: Suite) -> None:
    spoken = await speak(suite, text=TEXT, word_timings=True)

    total = sum(len(message) // 2 for message in spoken.audio)
    check_words(TEXT, spoken.words, total)
    check_pcm_order(spoken)
    assert spoken.words[0].word == "Congratulations"
    assert spoken.words[0].char_start == 1


async def test_speak_with_a_preset_moves_words_with_the_tempo(suite: Suite) -> None:
    spoken = await speak(suite, text=TEXT, preset="calm", word_timings=True)
    total = sum(len(message) // 2 for message in spoken.audio)
    check_words(TEXT, spoken.words, total)
    check_pcm_order(spoken)

    # Each sentence alone from tts (espeak varies by a few samples between syntheses),
    # then where calm's tempo and the sentences before should put its words.
    async with aio.insecure_channel(suite.tts.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        stripped = TEXT.strip()
        lead = len(TEXT) - len(TEXT.lstrip())
        expected: list[float] = []
        start = 0.0
        cursor = 0
        for index, sentence in enumerate(split_sentences(stripped)):
            alone = await synthesize_timed(stub, text=sentence, word_timings=True)
            report = spoken.summary.sentences[index]
            scale = 1.0 if report.fallback else 1 / CALM_TEMPO
            at = stripped.index(sentence, cursor) + lead
            cursor = at - lead + len(sentence)
            assert [(w.char_start + at, w.char_end + at) for w in alone.words] == [
                (w.char_start, w.char_end)
                for w in spoken.words[len(expected) :][: len(alone.words)]
            ]
            expected.extend(start + word.start_sample * scale for word in alone.words)
            start += alone.summary.sample_count * scale
    assert total == pytest.approx(start, abs=200)
    assert not all(report.fallback for report in spoken.summary.sentences)
    for word, where in zip(spoken.words, expected, strict=True):
        # Espeak's few samples of variation, scaled, and moved by the sentences before.
        assert word.start_sample == pytest.approx(where, abs=200), word


async def test_speak_with_a_preset_at_another_output_rate(suite: Suite) -> None:
    """Opus at 12 kHz: tts and prosody work at 16 kHz, words are given at 12 kHz."""
    spoken = await speak(
        suite,
        text=TEXT,
        preset="calm",
        word_timings=True,
        encoding=audio_pb2.AUDIO_ENCODING_OGG_OPUS,
        sample_rate_hz=12000,
    )
    assert spoken.format.sample_rate_hz == 12000
    check_words(TEXT, spoken.words, round(spoken.summary.audio_seconds * 12000))
    last = spoken.words[-1]
    assert last.end_sample > 0.8 * spoken.summary.audio_seconds * 12000


@pytest.mark.parametrize("preset", ["", "calm"], ids=["no-preset", "preset"])
async def test_speak_sends_no_words_unless_asked(suite: Suite, preset: str) -> None:
    spoken = await speak(suite, text=TEXT, preset=preset)

    assert not spoken.words
    assert spoken.audio
