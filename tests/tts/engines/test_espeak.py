"""The espeak-ng engine against the real library from the espeakng-loader wheel."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.common.errors import EngineError, InvalidArgument
from services.tts.engines.base import PcmChunk, VoiceInfo, speaks
from services.tts.engines.espeak import EspeakEngine
from tests.support.waiting import WAIT_S
from tests.tts.harness import engine_chunks

RATE = 22050
TWO_SENTENCES = "Hello there. This is Chorus speaking."
# About seven seconds of speech at the normal rate.
SIX_SECONDS = (
    "The quick brown fox jumps over the lazy dog, while the sun sets slowly behind "
    "the distant hills and the birds return to their nests."
)


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    """One loaded, warmed-up engine shared by the module: loading is once per process."""
    engine = EspeakEngine()
    engine.load()
    engine.warm_up()
    return engine


def samples(chunks: list[PcmChunk]) -> int:
    return sum(chunk.size for chunk in chunks)


def envelope(audio: PcmChunk, frame: int = 441) -> npt.NDArray[np.float64]:
    """RMS per 20 ms frame: the shape of the speech, blind to sample-level jitter."""
    frames = audio.size // frame
    squared = audio[: frames * frame].reshape(frames, frame).astype(np.float64) ** 2
    result: npt.NDArray[np.float64] = np.sqrt(squared.mean(axis=1))
    return result


def same_speech(audio: PcmChunk, reference: PcmChunk) -> bool:
    """Same length within 2% and much the same loudness envelope.

    espeak-ng never repeats itself bit for bit: its pitch flutter runs on a static counter
    inside the library (wavegen.c) that carries over from call to call, so the same text
    comes out up to 1% longer or shorter each time and its envelope drifts against the
    last one's. Measured over 200 repeats, the same call correlates at 0.76 or better
    (a short text at double speed is the worst); another voice or rate gives 0.3 or less,
    and a different length besides.
    """
    if abs(audio.size - reference.size) > 0.02 * reference.size:
        return False
    a, b = envelope(audio), envelope(reference)
    frames = min(a.size, b.size)
    return bool(np.corrcoef(a[:frames], b[:frames])[0, 1] > 0.6)


def test_loads_with_espeaks_sample_rate_and_version(engine: EspeakEngine) -> None:
    assert engine.name == "espeak"
    assert engine.sample_rate == RATE
    assert engine.model_version.startswith("espeak-ng 1.")


def test_voices_have_unique_short_names_and_include_us_english(engine: EspeakEngine) -> None:
    voices = engine.voices()
    names = [voice.name for voice in voices]
    assert len(names) > 100
    assert len(set(names)) == len(names)
    assert all(name == name.casefold() and " " not in name for name in names)
    by_name = {voice.name: voice for voice in voices}
    assert by_name["en-us"] == VoiceInfo(name="en-us", languages=("en-us", "en"), gender="male")
    assert {"en", "de", "fr", "es", "cmn"} <= set(names)
    assert all(voice.gender in {"male", "female", "unknown"} for voice in voices)
    assert engine.resolve_voice(engine.default_voice, "").name == "en-us"
    assert engine.resolve_voice("", "").name == "en-us"


def test_every_listed_voice_can_be_selected_and_speaks(engine: EspeakEngine) -> None:
    # Also catches a voice whose dictionary is missing: espeak selects it and speaks silence.
    for voice in engine.voices():
        audio = np.concatenate(engine_chunks(engine, "Hello 123.", voice.name))
        assert audio.size > 0.25 * RATE, voice.name
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.01, voice.name


def test_a_sentence_streams_out_in_many_float_chunks(engine: EspeakEngine) -> None:
    chunks = engine_chunks(engine, TWO_SENTENCES)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.dtype == np.float32
        assert chunk.ndim == 1
        assert chunk.size > 0
        assert float(chunk.min()) >= -1.0
        assert float(chunk.max()) <= 1.0
    audio = np.concatenate(chunks)
    assert 1.0 < audio.size / RATE < 5.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.02
    assert float(np.abs(audio).max()) > 0.2


def test_chunks_are_independent_copies(engine: EspeakEngine) -> None:
    # espeak-ng reuses one buffer for every chunk; a chunk kept must not change after.
    chunks = engine_chunks(engine, TWO_SENTENCES)
    first = chunks[0].copy()
    engine_chunks(engine, "Something else entirely, to overwrite the library's buffer.")
    assert np.array_equal(chunks[0], first)
    assert all(chunk.flags.owndata for chunk in chunks)


def test_longer_text_gives_proportionally_more_audio(engine: EspeakEngine) -> None:
    sentence = "This sentence is spoken once, and then three times."
    once = samples(engine_chunks(engine, sentence))
    thrice = samples(engine_chunks(engine, " ".join([sentence] * 3)))
    assert 2.6 < thrice / once < 3.4


def test_double_speaking_rate_gives_much_shorter_audio(engine: EspeakEngine) -> None:
    normal = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=1.0))
    fast = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=2.0))
    slow = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=0.6))
    assert 5 * RATE < normal < 8 * RATE
    assert 0.35 < fast / normal < 0.65
    assert slow / normal > 1.4


def test_speaking_rate_is_clamped_to_espeaks_range(engine: EspeakEngine) -> None:
    # 175 wpm x 3 and x 10 are both past espeak's 450 wpm: both speak at 450.
    fast = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=3.0))
    faster = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=10.0))
    assert faster == pytest.approx(fast, rel=0.03)
    slow = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=0.4))
    slower = samples(engine_chunks(engine, SIX_SECONDS, speaking_rate=0.1))
    assert slower == pytest.approx(slow, rel=0.03)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_a_nonsense_speaking_rate_is_invalid(engine: EspeakEngine, rate: float) -> None:
    with pytest.raises(InvalidArgument) as raised:
        engine_chunks(engine, TWO_SENTENCES, speaking_rate=rate)
    assert raised.value.field == "speaking_rate"


def test_a_sink_returning_false_stops_the_synthesis(engine: EspeakEngine) -> None:
    received: list[PcmChunk] = []

    def first_only(chunk: PcmChunk) -> bool:
        received.append(chunk)
        return False

    voice = engine.resolve_voice("en-us", "")
    engine.synthesize(SIX_SECONDS, voice, 1.0, first_only)  # no error: the caller asked
    assert len(received) == 1
    # The library is left ready: the next synthesis is whole.
    assert samples(engine_chunks(engine, SIX_SECONDS)) > 5 * RATE


def test_an_exception_in_the_sink_stops_and_reaches_the_caller(engine: EspeakEngine) -> None:
    received: list[PcmChunk] = []
    failure = ValueError("client went away")

    def failing(chunk: PcmChunk) -> bool:
        received.append(chunk)
        raise failure

    with pytest.raises(ValueError, match="client went away") as raised:
        engine.synthesize(SIX_SECONDS, engine.resolve_voice("en-us", ""), 1.0, failing)
    assert raised.value is failure
    assert len(received) == 1
    assert samples(engine_chunks(engine, SIX_SECONDS)) > 5 * RATE


def test_markup_is_read_as_text_not_obeyed_as_ssml(engine: EspeakEngine) -> None:
    plain = samples(engine_chunks(engine, "Wait now."))
    marked = samples(engine_chunks(engine, 'Wait <break time="10s"/> now.'))
    # As SSML this would be a ten-second pause; as text the tag is read out.
    assert plain < marked < 6 * RATE


def test_text_is_utf8_and_a_nul_does_not_cut_it_short(engine: EspeakEngine) -> None:
    spaced = samples(engine_chunks(engine, "Hello world and more words here."))
    with_nul = samples(engine_chunks(engine, "Hello\0world and more words here."))
    assert with_nul == pytest.approx(spaced, rel=0.1)
    german = samples(engine_chunks(engine, "Grüße aus Köln, schöne Straße.", voice="de"))
    assert german > 1.0 * RATE


def test_concurrent_calls_are_serialised_and_each_gets_its_own_audio(
    engine: EspeakEngine,
) -> None:
    # Different text, voice and rate per thread: a voice, rate or chunk crossing over
    # between calls would change the length or the shape of the audio.
    jobs = {
        "english": (SIX_SECONDS, "en-us", 1.0),
        "german": (
            "Guten Tag, wie geht es Ihnen heute? Das Wetter ist schön, und wir gehen spazieren.",
            "de",
            2.0,
        ),
    }
    alone = {
        name: np.concatenate(engine_chunks(engine, text, voice, rate))
        for name, (text, voice, rate) in jobs.items()
    }
    rounds = 15
    log: list[tuple[str, int]] = []  # which call each chunk went to, in arrival order
    results: dict[str, list[PcmChunk]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(len(jobs))
    # A handshake makes the threads meet inside synthesize, rather than hoping the
    # scheduler overlaps them: English's first call, once it has made a chunk, waits
    # until German has called synthesize too.
    english_inside = threading.Event()
    german_calling = threading.Event()

    def run(name: str) -> None:
        text, voice_name, rate = jobs[name]
        voice = engine.resolve_voice(voice_name, "")
        try:
            start.wait(WAIT_S)
            for round_ in range(rounds):
                chunks: list[PcmChunk] = []

                def keep(chunk: PcmChunk, chunks: list[PcmChunk] = chunks, r: int = round_) -> bool:
                    log.append((name, r))
                    chunks.append(chunk)
                    if name == "english" and r == 0 and not english_inside.is_set():
                        english_inside.set()
                        if not german_calling.wait(WAIT_S):
                            raise TimeoutError("german never called synthesize")
                    return True

                if name == "german" and round_ == 0:
                    if not english_inside.wait(WAIT_S):
                        raise TimeoutError("english never got inside synthesize")
                    german_calling.set()
                engine.synthesize(text, voice, rate, keep)
                results[f"{name}/{round_}"] = chunks
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=3 * WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures
    assert len(results) == len(jobs) * rounds

    # German called synthesize while English was inside it (the handshake above) ...
    assert english_inside.is_set()
    assert german_calling.is_set()
    # ... yet each call's chunks arrived as one unbroken run: the calls were serialised.
    runs = [key for key, _ in itertools.groupby(log)]
    assert len(runs) == len(set(runs)) == len(jobs) * rounds

    for key, chunks in results.items():
        assert same_speech(np.concatenate(chunks), alone[key.split("/")[0]]), key


def test_resolve_voice_by_language_and_by_name(engine: EspeakEngine) -> None:
    german = engine.resolve_voice("", "de")
    assert german.name == "de"
    assert speaks(german, "de")
    # espeak's own preference among the voices that speak a language, not file order
    # (which would give Caribbean English and Belgian French).
    assert engine.resolve_voice("", "en").name == "en"
    assert engine.resolve_voice("", "fr").name == "fr"
    assert engine.resolve_voice("", "en-us").name == "en-us"
    assert engine.resolve_voice("EN-US", "").name == "en-us"

    with pytest.raises(InvalidArgument) as raised:
        engine.resolve_voice("no-such-voice", "")
    assert raised.value.field == "voice"
    with pytest.raises(InvalidArgument) as raised:
        engine.resolve_voice("", "zz")
    assert raised.value.field == "language"


def test_an_unlisted_voice_is_an_engine_error(engine: EspeakEngine) -> None:
    # Not even by espeak's display name: only the voices listed can be used.
    for name in ("no-such-voice", "English (America)"):
        with pytest.raises(EngineError, match="no voice"):
            engine.synthesize("Hello.", VoiceInfo(name, ("en",)), 1.0, lambda _chunk: True)
    assert samples(engine_chunks(engine, "Still here.")) > 0


def test_chunk_ms_sets_the_chunk_size_from_espeaks_60_ms_floor(engine: EspeakEngine) -> None:
    long_chunks = EspeakEngine(chunk_ms=200)
    long_chunks.load()
    sizes = [chunk.size for chunk in engine_chunks(long_chunks, SIX_SECONDS)]
    assert sizes[0] == round(0.2 * RATE) + 1
    # espeak-ng makes no buffer shorter than 60 ms: the default 20 ms gives 60 ms chunks.
    sizes = [chunk.size for chunk in engine_chunks(engine, SIX_SECONDS)]
    assert sizes[0] == round(0.06 * RATE) + 1
    assert all(size <= sizes[0] for size in sizes)


def test_an_engine_used_before_load_says_so() -> None:
    with pytest.raises(EngineError, match="before load"):
        EspeakEngine().voices()


def test_a_library_that_cannot_start_raises_instead_of_exiting() -> None:
    # espeak_Initialize calls exit(1) on bad data unless told not to; run in a fresh
    # process, since this process's library is already initialised.
    script = textwrap.dedent(
        """
        import espeakng_loader
        from services.tts.engines.espeak import EspeakEngine

        espeakng_loader.get_data_path = lambda: "/nonexistent/espeak-ng-data"
        try:
            EspeakEngine().load()
        except RuntimeError as error:
            print("data:", error)
        espeakng_loader.get_library_path = lambda: "/nonexistent/libespeak-ng.so"
        try:
            EspeakEngine().load()
        except RuntimeError as error:
            print("library:", error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "data: espeak-ng failed to initialise with its data at /nonexistent" in done.stdout
    assert "library: cannot load libespeak-ng from /nonexistent/libespeak-ng.so" in done.stdout
