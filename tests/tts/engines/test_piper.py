"""The piper engine in-process: the packaged joe voice for real speech, tiny tone models the
tests build (devtools/builders/tiny_piper.py) for speakers, broken files and concurrency."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest

from devtools.builders.tiny_piper import (
    BASE_HZ,
    HOP,
    HZ_PER_SPEAKER,
    build_piper_voice,
    packaged_config,
    write_config,
)
from services.common.errors import EngineError, InvalidArgument
from services.common.settings import load_settings
from services.prosody.analysis import analyze
from services.tts.engines import create_engine
from services.tts.engines.base import PcmChunk, VoiceInfo
from services.tts.engines.espeak import EspeakEngine
from services.tts.engines.espeak_library import load_espeak_library
from services.tts.engines.piece_joins import Edge, join_edges
from services.tts.engines.piper import SENTENCE_PAUSE_S, PiperEngine
from services.tts.engines.piper_graph import CannotSplit, split_at_decoder
from services.tts.engines.piper_phonemes import phoneme_ids, piece_phonemes
from services.tts.engines.piper_runner import FIRST_WINDOW_FRAMES
from services.tts.engines.piper_voice import PACKAGED_VOICE_FILE, locate_voice
from services.tts.engines.sentence_pieces import split_pieces
from services.tts.settings import TtsSettings
from tests.tts.harness import engine_chunks

RATE = 22050
PAUSE = round(SENTENCE_PAUSE_S * RATE)
FOX = "The quick brown fox jumps over the lazy dog."
LONG_CLAUSE = "Chorus turns text into speech that streams out as it is made."
TWO_CLAUSES = "Hello there, thanks for calling."


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    """The packaged voice as the server runs it by default: noise on."""
    engine = PiperEngine()
    engine.load()
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def steady() -> PiperEngine:
    """The packaged voice with its noise scales at 0: the same text, the same samples."""
    engine = PiperEngine(noise_scale=0.0, noise_w=0.0)
    engine.load()
    return engine


def loaded(model: Path, **options: object) -> PiperEngine:
    engine = PiperEngine(str(model), **options)  # type: ignore[arg-type]
    engine.load()
    return engine


def seconds(audio: PcmChunk) -> float:
    return audio.size / RATE


def spectral_flatness(audio: PcmChunk, frame: int = 512) -> float:
    """Median over frames of the power spectrum's geometric over arithmetic mean: near 0
    for tones and voices, about 0.56 for white noise."""
    frames = audio.size // frame
    windowed = audio[: frames * frame].reshape(frames, frame) * np.hanning(frame)
    power = np.abs(np.fft.rfft(windowed, axis=1)) ** 2 + 1e-12
    return float(np.median(np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)))


def phone_count(text: str) -> int:
    """Sounds in espeak-ng's phonemes for ``text``: its letters, without stress or length."""
    phonemes = " ".join(load_espeak_library().phonemes(text, "en-us"))
    return sum(
        unicodedata.category(c).startswith("L") for c in unicodedata.normalize("NFD", phonemes)
    )


def tone_hz(audio: PcmChunk) -> float:
    """The strongest frequency, to within RATE / audio.size (the spectrum's resolution)."""
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * RATE / audio.size)


def test_loads_the_packaged_voice_by_default(piper: PiperEngine) -> None:
    assert piper.voice.model == locate_voice("")
    assert piper.voice.model.name == PACKAGED_VOICE_FILE
    assert piper.sample_rate == 22050
    assert [(v.name, v.languages) for v in piper.voices()] == [("en_US-joe-medium", ("en-us",))]
    assert piper.default_voice == "en_US-joe-medium"
    assert piper.resolve_voice("", "en").name == "en_US-joe-medium"
    assert piper.providers == ["CPUExecutionProvider"]
    assert piper.model_version.startswith("piper en_US-joe-medium sha256:")


def test_a_sentence_is_speech_not_noise(piper: PiperEngine) -> None:
    audio = piper.speak_whole(FOX)
    noise = np.random.default_rng(0).normal(0.0, audio.std(), audio.size).astype(np.float32)
    assert np.isfinite(audio).all()
    assert 0.05 < np.abs(audio).max() <= 1.0
    # Praat (through the prosody service's analysis) hears a voice: pitch through the
    # vowels and voiced consonants, at a man's pitch, in syllables at a speaking pace. In
    # noise it hears none of that.
    speech, hiss = analyze(audio, RATE), analyze(noise, RATE)
    assert speech.voiced_fraction > 0.3
    assert 70 < speech.f0_median_hz < 250
    assert 2 < speech.speaking_rate_syllables_per_s < 7
    assert hiss.voiced_fraction < 0.05
    # A voice's spectrum is harmonics and formants, noise's is flat.
    assert spectral_flatness(audio) < 0.1 * spectral_flatness(noise)


def test_the_duration_is_what_the_phoneme_count_predicts(piper: PiperEngine) -> None:
    # English speech runs at 10 to 16 sounds a second; this voice at about 14.
    for text in (FOX, TWO_CLAUSES, LONG_CLAUSE):
        predicted = phone_count(text) / 14.0
        spoken = seconds(piper.speak_whole(text)) - SENTENCE_PAUSE_S
        assert 0.7 * predicted < spoken < 1.4 * predicted, text


def test_noise_makes_each_call_differ_and_zero_noise_repeats_exactly(
    piper: PiperEngine, steady: PiperEngine
) -> None:
    assert not np.array_equal(piper.speak_whole(FOX), piper.speak_whole(FOX))
    assert np.array_equal(steady.speak_whole(FOX), steady.speak_whole(FOX))


def whole_pieces(engine: PiperEngine, whole: Any, text: str) -> list[PcmChunk]:
    """Each piece of ``text`` as one call of the uncut model makes it (noise off), its
    edges shaped as the engine shapes them, the sentence's pause after the last."""
    library = load_espeak_library()
    pieces = split_pieces(text)
    made: list[PcmChunk] = []
    for index, piece in enumerate(pieces):
        ids = phoneme_ids(piece_phonemes(library, "en-us", piece), engine.voice.phoneme_ids)
        feeds = {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        }
        [audio] = whole.run(None, feeds)
        start = Edge.FLOW if index and pieces[index - 1].flows_on else Edge.PAUSE
        end = Edge.FLOW if piece.flows_on else Edge.PAUSE
        made.append(join_edges(audio.reshape(-1), RATE, start, end))
    made[-1] = np.concatenate((made[-1], np.zeros(PAUSE, dtype=np.float32)))
    return made


@pytest.fixture(scope="module")
def whole(steady: PiperEngine) -> Any:
    """The packaged model uncut, in one ONNX Runtime session on the engine's threads."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = steady.threads
    return onnxruntime.InferenceSession(str(steady.voice.model), options)


def test_the_model_is_cut_before_its_decoder(steady: PiperEngine) -> None:
    assert steady.windowed


@pytest.mark.parametrize("text", [LONG_CLAUSE, TWO_CLAUSES, FOX])
def test_the_streamed_windows_make_the_audio_of_one_call_per_piece(
    steady: PiperEngine, whole: Any, text: str
) -> None:
    chunks = engine_chunks(steady, text)
    expected = whole_pieces(steady, whole, text)
    assert len(chunks) > len(expected)  # pieces come in several windows
    streamed = np.concatenate(chunks)
    reference = np.concatenate(expected)
    assert streamed.size == reference.size
    # The same samples, to float rounding: far below what 16-bit audio can tell apart.
    np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-5)


def test_first_audio_is_a_short_window_of_a_short_first_piece(steady: PiperEngine) -> None:
    chunks = engine_chunks(steady, LONG_CLAUSE)
    # "Chorus turns text": its first 16 frames, 256 samples each.
    assert split_pieces(LONG_CLAUSE)[0].text == "Chorus turns text"
    assert chunks[0].size == FIRST_WINDOW_FRAMES * 256


def test_pieces_join_without_clicks_or_gaps_inside_a_phrase(
    steady: PiperEngine, whole: Any
) -> None:
    audio = np.concatenate(engine_chunks(steady, LONG_CLAUSE))
    first, _ = whole_pieces(steady, whole, LONG_CLAUSE)
    join = first.size  # where "Chorus turns text" ends and "into speech ..." starts
    # Faded on both sides: whatever the model's samples there, nothing jumps at the join.
    assert abs(audio[join - 1]) < 1e-3
    assert abs(audio[join]) < 1e-3
    # Cut between "text" and "into": the silence left around the cut is a gap between
    # words (tens of ms), not the model's end-of-utterance silence (about 0.2 s).
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    gap = loud[loud >= join][0] - loud[loud < join][-1]
    assert gap / RATE < 0.12


def test_a_pause_at_punctuation_is_kept(steady: PiperEngine, whole: Any) -> None:
    audio = np.concatenate(engine_chunks(steady, TWO_CLAUSES))
    first, _ = whole_pieces(steady, whole, TWO_CLAUSES)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    gap = loud[loud >= first.size][0] - loud[loud < first.size][-1]
    assert gap / RATE > 0.15  # the comma's pause, as the model makes it


def test_a_sink_that_says_stop_ends_the_sentence_before_its_next_window(
    steady: PiperEngine,
) -> None:
    calls: list[PcmChunk] = []

    def first_only(chunk: PcmChunk) -> bool:
        calls.append(chunk)
        return False

    steady.synthesize(TWO_CLAUSES, steady.resolve_voice("", ""), 1.0, first_only)
    assert len(calls) == 1


def test_speaking_rate_2_gives_clearly_shorter_audio(steady: PiperEngine) -> None:
    normal = seconds(steady.speak_whole(FOX)) - SENTENCE_PAUSE_S
    fast = seconds(steady.speak_whole(FOX, speaking_rate=2.0)) - SENTENCE_PAUSE_S
    slow = seconds(steady.speak_whole(FOX, speaking_rate=0.5)) - SENTENCE_PAUSE_S
    # Not exactly half and double: each sound lasts a whole number of frames, at least one.
    assert fast < 0.7 * normal
    assert slow > 1.5 * normal


def tiny_audio(engine: PiperEngine, text: str, voice: str = "", rate: float = 1.0) -> PcmChunk:
    """The tone model's audio for ``text``, without the sentence's pause."""
    return engine.speak_whole(text, voice=voice, speaking_rate=rate)[:-PAUSE]


def test_rate_length_and_text_reach_the_model(tiny_piper_voice: Path) -> None:
    engine = loaded(tiny_piper_voice)
    normal = tiny_audio(engine, "Hello.")
    fast = tiny_audio(engine, "Hello.", rate=2.0)
    # The tone model makes length_scale frames per id (1.0 / rate here), HOP samples each.
    assert normal.size % HOP == 0
    assert normal.size == pytest.approx(2 * fast.size, abs=HOP)
    assert tone_hz(normal) == pytest.approx(BASE_HZ, abs=RATE / normal.size)


def test_a_model_is_decoded_in_windows_that_join_seamlessly(
    tmp_path: Path, tiny_piper_voice: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cut = loaded(tiny_piper_voice)
    assert cut.windowed
    # A first piece long enough for two windows; the tone model makes a frame per id.
    text = "Extraordinarily unbelievable circumstances, and then some more words."
    chunks = engine_chunks(cut, text)
    # Not cut (its decoder is not where Piper's exporter puts it), the same model runs
    # whole, and says so.
    uncut_model = build_piper_voice(tmp_path, decoder_scope="/vocoder/")
    with caplog.at_level(logging.WARNING, logger="services.tts.engines.piper"):
        uncut = loaded(uncut_model)
    assert not uncut.windowed
    assert "cannot be cut before its decoder (no /dec/ nodes)" in caplog.text
    whole = engine_chunks(uncut, text)
    assert len(chunks) == len(whole) + 1 == len(split_pieces(text)) + 1
    np.testing.assert_array_equal(np.concatenate(chunks), np.concatenate(whole))


def test_without_the_onnx_package_the_model_runs_whole(
    monkeypatch: pytest.MonkeyPatch, tiny_piper_voice: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(CannotSplit, match="onnx package is not installed"):
        split_at_decoder(tiny_piper_voice)
    engine = loaded(tiny_piper_voice)
    assert not engine.windowed
    assert tiny_audio(engine, "Hello.").size > 0


def test_nothing_to_say_makes_no_audio(steady: PiperEngine) -> None:
    assert engine_chunks(steady, "... !") == []


def test_bad_requests_are_refused(steady: PiperEngine) -> None:
    voice = steady.resolve_voice("", "")
    with pytest.raises(InvalidArgument, match="speaking_rate"):
        steady.synthesize("Hi.", voice, 0.0, lambda _chunk: True)
    with pytest.raises(EngineError, match="no voice 'nobody'"):
        steady.synthesize("Hi.", VoiceInfo("nobody", ("en",)), 1.0, lambda _chunk: True)


def test_an_engine_used_before_load_says_so() -> None:
    with pytest.raises(EngineError, match="before load"):
        PiperEngine().voices()
    with pytest.raises(EngineError, match="before load"):
        _ = PiperEngine().sample_rate


def test_a_multi_speaker_voice_offers_each_speaker(two_speaker_piper_voice: Path) -> None:
    engine = loaded(two_speaker_piper_voice)
    assert engine.windowed  # the speaker reaches the decoder beside the latent frames
    assert [(v.name, v.languages) for v in engine.voices()] == [
        ("alice", ("en-us",)),
        ("bob", ("en-us",)),
    ]
    assert engine.default_voice == "alice"
    # The speaker's id reaches the model's sid input: each speaker has its own tone.
    for index, name in enumerate(("alice", "bob")):
        tone = tiny_audio(engine, "Hello.", voice=name)
        expected = BASE_HZ + index * HZ_PER_SPEAKER
        assert tone_hz(tone) == pytest.approx(expected, abs=RATE / tone.size)


def test_the_language_comes_from_the_config_else_the_espeak_voice(
    tmp_path: Path, tiny_piper_voice: Path
) -> None:
    model = Path(shutil.copy(tiny_piper_voice, tmp_path / "de_DE-tiny-low.onnx"))
    config = packaged_config()
    config["language"] = {"code": "de_DE"}
    config["espeak"] = {"voice": "de"}
    write_config(model, config)
    assert loaded(model).voices()[0].languages == ("de-de",)
    del config["language"]
    write_config(model, config)
    assert loaded(model).voices()[0].languages == ("de",)


def test_model_version_is_a_hash_of_the_models_content(
    tmp_path: Path, tiny_piper_voice: Path
) -> None:
    original = loaded(tiny_piper_voice).model_version
    copy = tmp_path / "copy" / tiny_piper_voice.name
    copy.parent.mkdir()
    shutil.copy(tiny_piper_voice, copy)
    shutil.copy(tiny_piper_voice.with_name(tiny_piper_voice.name + ".json"), copy.parent)
    assert loaded(copy).model_version == original
    config = packaged_config()
    config["inference"]["noise_scale"] = 0.5
    write_config(copy, config)
    assert loaded(copy).model_version != original


def voice_files(folder: Path, source: Path) -> Path:
    """A copy of the voice ``source`` (.onnx and .onnx.json) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = Path(shutil.copy(source, folder / source.name))
    shutil.copy(source.with_name(source.name + ".json"), folder)
    return model


def test_a_missing_model_names_the_file_and_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "voices" / "en_US-nobody-medium.onnx"
    with pytest.raises(FileNotFoundError, match="CHORUS_PIPER_MODEL") as raised:
        loaded(missing)
    assert str(missing) in str(raised.value)


def test_a_missing_config_names_the_json(tmp_path: Path, tiny_piper_voice: Path) -> None:
    model = voice_files(tmp_path, tiny_piper_voice)
    config = model.with_name(model.name + ".json")
    config.unlink()
    with pytest.raises(FileNotFoundError, match="config") as raised:
        loaded(model)
    assert str(config) in str(raised.value)


def test_a_garbage_model_names_the_file(tmp_path: Path, tiny_piper_voice: Path) -> None:
    model = voice_files(tmp_path, tiny_piper_voice)
    model.write_bytes(b"this is not an ONNX model" * 100)
    with pytest.raises(ValueError, match="cannot load Piper model") as raised:
        loaded(model)
    assert str(model) in str(raised.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c.pop("phoneme_id_map"), "no phoneme_id_map"),
        (lambda c: c["phoneme_id_map"].pop("$"), "lacks '\\$'"),
        (lambda c: c.update(phoneme_type="text"), "espeak phonemes only"),
        (lambda c: c.pop("espeak"), "no espeak.voice"),
        (lambda c: c["audio"].update(sample_rate="fast"), "sample_rate"),
        (lambda c: c["inference"].update(noise_w=-1), "noise_w"),
        (lambda c: c.update(num_speakers=2, speaker_id_map={}), "no speaker_id_map"),
        (lambda c: c["espeak"].update(voice="xx-nowhere"), "espeak voice 'xx-nowhere'"),
    ],
)
def test_a_config_that_is_not_a_piper_voices_names_the_json_and_the_field(
    tmp_path: Path, tiny_piper_voice: Path, change: object, problem: str
) -> None:
    model = voice_files(tmp_path, tiny_piper_voice)
    config = packaged_config()
    change(config)  # type: ignore[operator]
    path = write_config(model, config)
    with pytest.raises(ValueError, match=problem) as raised:
        loaded(model)
    assert str(path) in str(raised.value)


def test_a_config_that_is_not_json_names_the_file(tmp_path: Path, tiny_piper_voice: Path) -> None:
    model = voice_files(tmp_path, tiny_piper_voice)
    path = model.with_name(model.name + ".json")
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read Piper voice config") as raised:
        loaded(model)
    assert str(path) in str(raised.value)


def test_speakers_in_the_config_must_match_the_models_inputs(
    tmp_path: Path, tiny_piper_voice: Path, two_speaker_piper_voice: Path
) -> None:
    single = voice_files(tmp_path / "single", tiny_piper_voice)
    config = packaged_config()
    config.update(num_speakers=2, speaker_id_map={"a": 0, "b": 1})
    write_config(single, config)
    with pytest.raises(ValueError, match="takes no speaker id"):
        loaded(single)
    multi = voice_files(tmp_path / "multi", two_speaker_piper_voice)
    write_config(multi, packaged_config())
    with pytest.raises(ValueError, match="takes a speaker id"):
        loaded(multi)


def test_cuda_asked_for_without_a_cuda_provider_fails_loading(tiny_piper_voice: Path) -> None:
    with pytest.raises(RuntimeError, match="CHORUS_DEVICE=cuda"):
        loaded(tiny_piper_voice, device="cuda")


def test_sessions_share_out_the_cpus_unless_threads_are_set(tiny_piper_voice: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert loaded(tiny_piper_voice, sessions=2).threads == max(1, cpus // 2)
    assert loaded(tiny_piper_voice, sessions=2, threads=3).threads == 3
    with pytest.raises(ValueError, match="sessions"):
        PiperEngine(sessions=0)
    with pytest.raises(ValueError, match="noise_w"):
        PiperEngine(noise_w=float("nan"))


def test_calls_from_many_threads_match_calls_one_at_a_time(tiny_piper_voice: Path) -> None:
    """Two sessions, four threads, and espeak speaking beside them on the same library: the
    phonemes (hence the tone model's lengths) come out as they do alone."""
    engine = loaded(tiny_piper_voice, sessions=2)
    espeak = EspeakEngine()
    espeak.load()
    texts = [f"Sentence {i}, with a clause or two; and then some more words." for i in range(8)]
    alone = [engine.speak_whole(text) for text in texts]
    together: dict[int, PcmChunk] = {}
    failures: list[BaseException] = []

    def speak(indices: range) -> None:
        try:
            for index in indices:
                together[index] = engine.speak_whole(texts[index])
                espeak.speak_whole(texts[index])
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=speak, args=(range(i, 8, 4),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert all(np.array_equal(together[index], alone[index]) for index in range(8))


def test_settings_choose_and_configure_the_engine(tiny_piper_voice: Path) -> None:
    assert TtsSettings().engine == "piper"
    settings = load_settings(
        TtsSettings,
        [],
        environ={
            "CHORUS_PIPER_MODEL": str(tiny_piper_voice),
            "CHORUS_PIPER_SESSIONS": "2",
            "CHORUS_PIPER_THREADS": "1",
            "CHORUS_PIPER_NOISE_SCALE": "0",
            "CHORUS_PIPER_NOISE_W": "0.5",
            "CHORUS_DEVICE": "cpu",
        },
    )
    engine = create_engine(settings)
    assert isinstance(engine, PiperEngine)
    engine.load()
    assert engine.threads == 1
    assert engine.voice.model == tiny_piper_voice
    assert engine.model_version.startswith("piper xx_XX-tiny-low sha256:")


def test_the_packaged_voice_config_is_a_piper_config() -> None:
    config = json.loads(
        locate_voice("").with_name(PACKAGED_VOICE_FILE + ".json").read_text(encoding="utf-8")
    )
    assert config["espeak"]["voice"] == "en-us"
    assert config["audio"]["sample_rate"] == 22050
