"""Word timings from the piper engine on the packaged voice (en_US-joe-medium), over a real
gRPC channel: each word starts where the model's own durations put it.

The check is independent of the engine's graph surgery: the test opens the whole model
itself, makes the tensor of each phoneme's frames (``w_ceil``, which Piper's exporter
names /Ceil_output_0) an output, checks it is what sets the audio's length, and sums it
for the same phonemes the server's pieces were made of.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import pytest

from services.common.sentences import split_sentences
from services.tts.engines.espeak_library import load_espeak_library
from services.tts.engines.piper import SENTENCE_PAUSE_S
from services.tts.engines.piper_phonemes import phoneme_ids, piece_phonemes
from services.tts.engines.piper_voice import PiperVoice, locate_voice, read_voice
from services.tts.engines.sentence_pieces import split_pieces
from tests.tts.harness import StartTts, TtsServer
from tests.tts.word_timing_checks import check_timed_synthesis, synthesize_timed

# Pieces cut at punctuation only (no cut between words, whose silence would be trimmed)
# and phonemes with one phoneme word per word: the test can place words by itself.
PLAIN = "Hello there, thanks for calling. The voice reads every word, one after another."
# Cuts between words, words espeak-ng runs together ("as it is", "at it"), numbers and
# abbreviations that become several phoneme words, a dash and a second sentence.
HARD = (
    "Chorus turns text into speech that streams out as it is made, at 10:30 on the 4th "
    "of July \u2014 I'm going to have a look at it. It costs $5.50, Dr. Smith!"
)
STEADY = {"piper_noise_scale": 0.0, "piper_noise_w": 0.0}
HOP = 256
DURATIONS = "/Ceil_output_0"


@pytest.fixture
async def tts(start_tts: StartTts) -> TtsServer:
    """A piper server on the packaged voice, noise off: the same text, the same audio."""
    return await start_tts(engine="piper", **STEADY)


@pytest.fixture(scope="module")
def timed_model() -> tuple[Any, PiperVoice]:
    """The packaged voice's whole model with its durations as a second output."""
    import onnx
    import onnxruntime

    model = locate_voice("")
    proto = onnx.load(str(model))
    [described] = [value for value in proto.graph.value_info if value.name == DURATIONS]
    proto.graph.output.append(described)
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    return session, read_voice(model)


def piece_durations(timed_model: tuple[Any, PiperVoice], phonemes: str) -> tuple[np.ndarray, int]:
    """Frames of each input id of ``phonemes``, and the samples the model made."""
    session, voice = timed_model
    ids = phoneme_ids(phonemes, voice.phoneme_ids)
    scales = np.array([0.0, voice.length_scale, 0.0], dtype=np.float32)
    audio, durations = session.run(
        None,
        {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64), "scales": scales},
    )
    return np.rint(durations).astype(np.int64).reshape(-1), int(np.asarray(audio).size)


def word_first_ids(phonemes: str, table: dict[str, tuple[int, ...]] | Any) -> list[int]:
    """The index of the first input id of each space-separated phoneme word: ``^`` is
    one id, then each known code point its id and a pad."""
    firsts: list[int] = []
    index = 1
    at_word_start = True
    for symbol in unicodedata.normalize("NFD", phonemes):
        if symbol == " ":
            at_word_start = True
        elif at_word_start and (symbol.isalpha() or symbol in "\u02c8\u02cc"):
            firsts.append(index)
            at_word_start = False
        if symbol in table:
            index += 2
    return firsts


async def test_words_start_where_the_models_durations_put_them(
    tts: TtsServer, timed_model: tuple[Any, PiperVoice]
) -> None:
    result = await synthesize_timed(tts.stub, text=PLAIN, word_timings=True)
    check_timed_synthesis(PLAIN, result)
    _, voice = timed_model
    library = load_espeak_library()
    pause = round(SENTENCE_PAUSE_S * voice.sample_rate)

    expected: list[int] = []
    offset = 0
    for sentence in split_sentences(PLAIN):
        for piece in split_pieces(sentence):
            assert not piece.flows_on
            phonemes = piece_phonemes(library, voice.espeak_voice, piece)
            durations, made = piece_durations(timed_model, phonemes)
            # The tensor is the length regulator's: it sets the audio's length.
            assert made == int(durations.sum()) * HOP
            firsts = word_first_ids(phonemes.rstrip(",. "), voice.phoneme_ids)
            assert len(firsts) == len(piece.text.split()), phonemes
            expected.extend(offset + int(durations[:first].sum()) * HOP for first in firsts)
            offset += made
        offset += pause

    assert result.summary.sample_count == offset
    starts = [word.start_sample for word in result.words]
    assert len(starts) == len(expected)
    # Within a frame, as asked of any engine; the piper engine is exact.
    for start, model_start in zip(starts, expected, strict=True):
        assert abs(start - model_start) < HOP
    assert starts == expected


async def test_hard_text_every_word_once_and_resampled(tts: TtsServer) -> None:
    native = await synthesize_timed(tts.stub, text=HARD, word_timings=True)
    resampled = await synthesize_timed(tts.stub, text=HARD, word_timings=True, sample_rate_hz=48000)

    check_timed_synthesis(HARD, native)
    check_timed_synthesis(HARD, resampled)
    for at_native, at_48k in zip(native.words, resampled.words, strict=True):
        assert at_48k.start_sample == round(at_native.start_sample * 48000 / 22050)
        assert at_48k.end_sample == round(at_native.end_sample * 48000 / 22050)
    # Words run together by espeak-ng still come apart, each with some of the audio.
    by_word = {word.word: word for word in native.words}
    for word in ("as", "it", "is", "at", "10:30", "$5.50", "Dr"):
        assert by_word[word].end_sample > by_word[word].start_sample, word
    # The first chunk leaves after its words, not after the sentence: the first piece's
    # words come before the first chunk, the later pieces' after it.
    assert native.order[0] == ("word", 0)
    assert native.order.index(("chunk", 0)) < len(native.order) // 2
