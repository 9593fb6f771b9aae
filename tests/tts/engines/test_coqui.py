"""The coqui engine in-process, on VITS and XTTS models the tests build (random weights)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from devtools.builders.tiny_vits import build_vits
from devtools.builders.tiny_xtts import MAX_AUDIO_TOKENS
from services.common.errors import EngineError, InvalidArgument
from services.common.settings import load_settings
from services.tts.engines import create_engine
from services.tts.engines.base import PcmChunk, collecting_sink
from services.tts.engines.coqui import CoquiEngine
from services.tts.settings import TtsSettings
from tests.tts.harness import engine_chunks

TWO_SENTENCES = "Hello there. How are you today?"
PAUSE = 10000  # the zero samples Coqui puts after every sentence


class NetworkUsed(RuntimeError):
    """Raised by the network guard: something tried to reach another machine."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every name lookup and connection fail loudly; returns what was attempted."""
    attempts: list[str] = []

    def refuse(*args: Any, **_kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise NetworkUsed(f"network used: {args[:2]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def loaded(model: str | Path, **options: Any) -> CoquiEngine:
    engine = CoquiEngine(str(model), **options)
    engine.load()
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def vits(tiny_vits_dir: Path) -> CoquiEngine:
    """The tiny single-speaker VITS, loaded and warmed up once for the module."""
    return loaded(tiny_vits_dir)


@pytest.fixture(scope="module")
def two_speakers(two_speaker_vits_dir: Path) -> CoquiEngine:
    return loaded(two_speaker_vits_dir)


@pytest.fixture(scope="module")
def xtts(tiny_xtts_dir: Path) -> CoquiEngine:
    return loaded(tiny_xtts_dir)


def speech_samples(chunks: list[PcmChunk]) -> int:
    """Samples of speech in one sentence's chunks, without the pause after it."""
    return sum(chunk.size for chunk in chunks) - PAUSE


def test_loads_from_a_folder(vits: CoquiEngine, tiny_vits_dir: Path) -> None:
    assert vits.name == "coqui"
    assert vits.architecture == "vits"
    assert vits.sample_rate == 22050
    assert vits.model_version.startswith(f"coqui-tts 0.28.0 vits {tiny_vits_dir.name} sha256:")
    [voice] = vits.voices()
    assert (voice.name, voice.languages) == ("default", ("en",))
    assert vits.default_voice == "default"
    audio = vits.speak_whole("Hello there.")
    assert audio.dtype == np.float32
    assert speech_samples([audio]) > 0.1 * 22050
    assert np.isfinite(audio).all()
    assert np.abs(audio[:-PAUSE]).max() > 0.01
    assert not audio[-PAUSE:].any()


def test_the_tiny_model_speaks_the_same_every_time(vits: CoquiEngine) -> None:
    assert np.array_equal(vits.speak_whole(TWO_SENTENCES), vits.speak_whole(TWO_SENTENCES))


def test_loads_a_model_name_from_a_folder_laid_out_as_coquis_cache(
    tmp_path: Path, vits: CoquiEngine
) -> None:
    models = tmp_path / "models"
    build_vits(models / "tts_models--en--tiny--vits")
    engine = loaded("tts_models/en/tiny/vits", models_dir=str(models))
    assert " tts_models--en--tiny--vits " in engine.model_version
    # Same weights (same seed) as the folder the module's engine loaded: same audio.
    assert np.array_equal(engine.speak_whole("Hello."), vits.speak_whole("Hello."))


def test_an_empty_models_dir_means_coquis_own_cache(
    tmp_path: Path, tiny_vits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTS_HOME", str(tmp_path))
    shutil.copytree(tiny_vits_dir, tmp_path / "tts" / "tts_models--en--tiny--vits")
    engine = CoquiEngine("tts_models/en/tiny/vits")
    engine.load()
    assert " tts_models--en--tiny--vits " in engine.model_version


def test_a_missing_folder_fails_load_naming_the_path_and_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError) as raised:
        CoquiEngine(str(missing)).load()
    assert str(missing) in str(raised.value)
    assert "CHORUS_COQUI_MODEL" in str(raised.value)


def test_no_model_configured_fails_load_saying_what_to_set() -> None:
    with pytest.raises(FileNotFoundError, match="set CHORUS_COQUI_MODEL"):
        CoquiEngine("").load()


def test_a_folder_without_a_checkpoint_fails_load_naming_it(
    tmp_path: Path, tiny_vits_dir: Path
) -> None:
    shutil.copy(tiny_vits_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match=r"has no checkpoint named model\.pth"):
        CoquiEngine(str(tmp_path)).load()


def test_an_architecture_it_does_not_run_is_refused_by_name(
    tmp_path: Path, tiny_vits_dir: Path
) -> None:
    shutil.copy(tiny_vits_dir / "model.pth", tmp_path / "model.pth")
    config = json.loads((tiny_vits_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model": "tacotron2"}))
    with pytest.raises(ValueError, match="'tacotron2' model; the coqui engine runs vits and xtts"):
        CoquiEngine(str(tmp_path)).load()


def test_a_missing_model_name_is_not_downloaded_without_the_flag(
    tmp_path: Path, no_network: list[str]
) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        CoquiEngine("tts_models/en/ljspeech/vits", models_dir=str(tmp_path)).load()
    message = str(raised.value)
    assert str(tmp_path / "tts_models--en--ljspeech--vits") in message
    assert "CHORUS_COQUI_ALLOW_DOWNLOAD" in message
    assert no_network == []
    assert list(tmp_path.iterdir()) == []


def test_with_the_flag_a_missing_model_name_is_fetched(
    tmp_path: Path, no_network: list[str]
) -> None:
    engine = CoquiEngine(
        "tts_models/en/ljspeech/vits", models_dir=str(tmp_path), allow_download=True
    )
    with pytest.raises(NetworkUsed):
        engine.load()
    assert no_network


def test_a_name_outside_coquis_list_is_not_downloaded(
    tmp_path: Path, no_network: list[str]
) -> None:
    engine = CoquiEngine("tts_models/xx/none/vits", models_dir=str(tmp_path), allow_download=True)
    with pytest.raises(FileNotFoundError, match="not in Coqui's list of models"):
        engine.load()
    assert no_network == []


def test_model_version_fingerprints_the_files_by_content(
    tmp_path: Path, vits: CoquiEngine, two_speakers: CoquiEngine, tiny_vits_dir: Path
) -> None:
    def digest(engine: CoquiEngine) -> str:
        return engine.model_version.rsplit(" ", 1)[1]

    assert digest(vits) != digest(two_speakers)
    copy = shutil.copytree(tiny_vits_dir, tmp_path / "copy")
    same = CoquiEngine(str(copy))
    same.load()
    assert digest(same) == digest(vits)


def test_a_multi_speaker_model_offers_one_voice_per_speaker(two_speakers: CoquiEngine) -> None:
    assert [(v.name, v.languages) for v in two_speakers.voices()] == [
        ("alice", ("en",)),
        ("bob", ("en",)),
    ]
    assert two_speakers.default_voice == "alice"
    alice = two_speakers.speak_whole("Hello there.", voice="alice")
    bob = two_speakers.speak_whole("Hello there.", voice="bob")
    assert not np.array_equal(alice, bob)


def test_the_sink_gets_one_call_per_sentence_ending_in_a_pause(vits: CoquiEngine) -> None:
    calls: list[PcmChunk] = []
    keep = collecting_sink(calls)
    voice = vits.resolve_voice("", "")
    vits.synthesize("Hello there.", voice, 1.0, keep)
    assert len(calls) == 1
    vits.synthesize("How are you today?", voice, 1.0, keep)
    assert len(calls) == 2
    for chunk in calls:
        assert not chunk[-PAUSE:].any()
        assert chunk[:-PAUSE].any()
    assert np.array_equal(np.concatenate(calls), vits.speak_whole(TWO_SENTENCES))


@pytest.mark.parametrize(
    "text",
    [
        "\N{GRINNING FACE} ...",
        # Letters, but none the English voice has a symbol for: its tokenizer drops them all.
        "\u4f60\u597d\uff0c\u4e16\u754c\u3002",
    ],
    ids=["emoji", "letters-it-cannot-read"],
)
def test_a_sentence_with_nothing_to_say_makes_no_audio(vits: CoquiEngine, text: str) -> None:
    assert engine_chunks(vits, text) == []


def test_speaking_rate_scales_the_duration(vits: CoquiEngine) -> None:
    normal = speech_samples(engine_chunks(vits, TWO_SENTENCES))
    slow = speech_samples(engine_chunks(vits, TWO_SENTENCES, speaking_rate=0.5))
    assert slow == pytest.approx(2 * normal, rel=0.1)
    assert speech_samples(engine_chunks(vits, TWO_SENTENCES)) == normal


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_speaking_rate_is_invalid(vits: CoquiEngine, rate: float) -> None:
    with pytest.raises(InvalidArgument, match="speaking_rate"):
        engine_chunks(vits, "Hello.", speaking_rate=rate)


def test_an_unknown_voice_is_refused(vits: CoquiEngine, two_speakers: CoquiEngine) -> None:
    with pytest.raises(InvalidArgument, match=r"^voice: unknown voice 'carol'"):
        two_speakers.resolve_voice("carol", "")
    with pytest.raises(EngineError, match="no voice 'alice'"):
        vits.synthesize("Hello.", two_speakers.resolve_voice("alice", ""), 1.0, lambda _: True)


def test_used_before_load_says_so(tiny_vits_dir: Path) -> None:
    with pytest.raises(EngineError, match="before load"):
        CoquiEngine(str(tiny_vits_dir)).voices()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_auto_runs_on_the_cpu_when_there_is_no_gpu(tiny_vits_dir: Path) -> None:
    engine = CoquiEngine(str(tiny_vits_dir), device="auto")
    engine.load()
    assert engine.device == "cpu"
    with pytest.raises(RuntimeError, match="CHORUS_DEVICE=cuda but torch sees no CUDA GPU"):
        CoquiEngine(str(tiny_vits_dir), device="cuda").load()


def test_bad_options_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="device must be"):
        CoquiEngine("m", device="gpu")
    with pytest.raises(ValueError, match="instances must be at least 1"):
        CoquiEngine("m", instances=0)


@pytest.mark.parametrize("instances", [1, 2])
def test_each_copy_of_the_model_speaks_one_sentence_at_a_time(
    tiny_vits_dir: Path, instances: int
) -> None:
    engine = loaded(tiny_vits_dir, instances=instances)
    in_sink, release = threading.Event(), threading.Event()

    def hold(_chunk: PcmChunk) -> bool:
        in_sink.set()
        release.wait(10)
        return True

    voice = engine.resolve_voice("", "")
    holder = threading.Thread(target=engine.synthesize, args=("Hello.", voice, 1.0, hold))
    holder.start()
    assert in_sink.wait(10)
    # The holder keeps its copy busy; a second call runs at once only on another copy.
    second = threading.Thread(target=engine_chunks, args=(engine, "Hello."))
    second.start()
    # Blocked can only be seen as "not done yet": a short wait for one copy; a long
    # one for two, so that a slow machine does not pass for a blocked call.
    second.join(timeout=0.5 if instances == 1 else 30)
    assert second.is_alive() == (instances == 1)
    release.set()
    holder.join(10)
    second.join(10)
    assert not holder.is_alive()
    assert not second.is_alive()


def test_xtts_offers_each_speaker_in_each_language(xtts: CoquiEngine) -> None:
    assert xtts.architecture == "xtts"
    assert xtts.sample_rate == 24000
    assert [(v.name, v.languages) for v in xtts.voices()] == [
        ("Ana Florence/de", ("de",)),
        ("Ana Florence/en", ("en",)),
        ("Bob Stone/de", ("de",)),
        ("Bob Stone/en", ("en",)),
    ]
    assert xtts.default_voice == "Ana Florence/en"
    assert xtts.resolve_voice("", "de").name == "Ana Florence/de"


def test_xtts_streams_chunks_within_a_sentence(xtts: CoquiEngine) -> None:
    chunks = engine_chunks(xtts, "Hello there.", voice="Bob Stone/de")
    # Two chunks of speech (XTTS decodes every 20 tokens), then the pause.
    assert len(chunks) == 3
    assert all(chunk.dtype == np.float32 for chunk in chunks)
    assert chunks[0].any()
    assert chunks[1].any()
    assert chunks[-1].size == PAUSE
    assert not chunks[-1].any()
    # Each token is 256 samples at 22050 Hz, decoded at 24000 Hz.
    expected = MAX_AUDIO_TOKENS * 256 * 24000 / 22050
    assert speech_samples(chunks) == pytest.approx(expected, rel=0.05)

    slow = engine_chunks(xtts, "Hello there.", voice="Bob Stone/de", speaking_rate=0.5)
    assert speech_samples(slow) == pytest.approx(2 * expected, rel=0.05)


@pytest.mark.parametrize(
    "text",
    [
        "word " * 120,  # 600 characters: past the 250 of English, and the tiny GPT's tokens
        "a" * 999,  # one word too long alone
        "It cost $1,000,000.00 on 2026-11-30 at 12:30pm, 1e308 or 3.14159 " * 3,
    ],
    ids=["many-words", "one-long-word", "numbers-spelled-out"],
)
def test_xtts_speaks_a_sentence_longer_than_it_takes_at_once_in_parts(
    xtts: CoquiEngine, text: str
) -> None:
    # XTTS refuses more text tokens than its GPT takes (100 here, 402 in XTTS v2).
    chunks = engine_chunks(xtts, text)
    # Each part makes the tiny model's fixed length of speech; one pause, at the end.
    one_part = MAX_AUDIO_TOKENS * 256 * 24000 / 22050
    assert speech_samples(chunks) > 1.5 * one_part
    assert chunks[-1].size == PAUSE
    assert not chunks[-1].any()
    assert all(chunk.any() for chunk in chunks[:-1])


def test_xtts_stops_when_the_sink_says_so(xtts: CoquiEngine) -> None:
    calls: list[PcmChunk] = []

    def first_only(chunk: PcmChunk) -> bool:
        calls.append(chunk)
        return False

    xtts.synthesize("Hello there.", xtts.resolve_voice("", ""), 1.0, first_only)
    assert len(calls) == 1


def test_xtts_without_built_in_speakers_is_refused(tmp_path: Path, tiny_xtts_dir: Path) -> None:
    folder = shutil.copytree(tiny_xtts_dir, tmp_path / "xtts")
    (folder / "speakers_xtts.pth").unlink()
    with pytest.raises(ValueError, match=r"has no speakers_xtts\.pth"):
        CoquiEngine(str(folder)).load()


def test_settings_choose_and_configure_the_engine(tiny_vits_dir: Path) -> None:
    settings = load_settings(
        TtsSettings,
        [],
        environ={
            "CHORUS_ENGINE": "coqui",
            "CHORUS_COQUI_MODEL": str(tiny_vits_dir),
            "CHORUS_DEVICE": "cpu",
            "CHORUS_HALF_PRECISION": "false",
            "CHORUS_COQUI_INSTANCES": "2",
        },
    )
    engine = create_engine(settings)
    assert isinstance(engine, CoquiEngine)
    engine.load()
    assert engine.device == "cpu"
    assert engine.model_version.split()[3] == tiny_vits_dir.name


@pytest.mark.parametrize("engine", ["espeak", "piper"])
def test_the_other_engines_do_not_import_torch(engine: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from services.tts.engines import create_engine
        from services.tts.settings import TtsSettings
        create_engine(TtsSettings(engine={engine!r})).load()
        assert "torch" not in sys.modules, "torch imported"
        assert "TTS" not in sys.modules, "coqui imported"
        """
    )
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], cwd=repo, check=True, timeout=60)


@pytest.mark.parametrize(
    ("variable", "value", "refusal"),
    [
        ("CHORUS_COQUI_MAX_BATCH", "0", "max_batch"),
        ("CHORUS_COQUI_COMPILE", "turbo", "compile mode"),
        ("CHORUS_COQUI_TOKEN_BUCKETS", "many", "token_buckets"),
    ],
)
def test_the_batching_and_compile_settings_reach_the_engine(
    tiny_vits_dir: Path, variable: str, value: str, refusal: str
) -> None:
    environ = {"CHORUS_ENGINE": "coqui", "CHORUS_COQUI_MODEL": str(tiny_vits_dir), variable: value}
    with pytest.raises(ValueError, match=refusal):
        create_engine(load_settings(TtsSettings, [], environ=environ))
