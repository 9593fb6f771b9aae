"""The coqui engine speaking VITS sentences of concurrent calls in one pass, and compiled.

Compared with the engine that batches nothing (Coqui's own ``synthesize``) on the tiny
model, which samples no noise: the same samples within TOLERANCE (float rounding of
batched matrix products; measured under 2e-7), the same lengths and word timings exactly.
A released model samples noise (0.667 and 1.0): then batched and unbatched draw
differently, as two unbatched calls already do.

Batches are made deterministic without timing: a window no test waits out (a batch leaves
when full) or a batch held open by ``on_batch`` while the test queues more.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from TTS.api import TTS

from services.common.settings import load_settings
from services.tts.engines.base import PcmChunk, TimedWord, collecting_sink
from services.tts.engines.coqui import CoquiEngine
from services.tts.engines.vits_batcher import VitsBatcher
from services.tts.engines.vits_graphs import Buckets, EagerStages
from services.tts.engines.vits_runner import VitsRequest, VitsRunner, vits_request
from services.tts.settings import TtsSettings
from tests.support.waiting import WAIT_S, wait_until

TOLERANCE = 1e-5
NEVER_MS = 3_600_000.0  # a batch window no test waits out
PAUSE = 10000  # the zero samples after every sentence

CASES = [
    ("Hello there.", 1.0),
    ("How are you today, my good friend? I hope you are well.", 0.8),
    ("Yes.", 1.5),
]


class Recorder:
    """``on_batch``: the texts of every batch, in order; optionally holds one batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.hold_text = ""
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, requests: Sequence[VitsRequest]) -> None:
        texts = [request.text for request in requests]
        self.batches.append(texts)
        if self.hold_text in texts:
            self.held.set()
            self.release.wait(WAIT_S)


Speech = tuple[PcmChunk, list[TimedWord]]


def speak(engine: CoquiEngine, text: str, rate: float = 1.0) -> Speech:
    """One sentence, with its word timings, as the streamer asks for it."""
    pieces: list[PcmChunk] = []
    words: list[TimedWord] = []
    engine.synthesize(
        text, engine.resolve_voice("", ""), rate, collecting_sink(pieces), words.append
    )
    return np.concatenate(pieces), words


def speak_at_once(engine: CoquiEngine, cases: Sequence[tuple[str, float]]) -> dict[str, Speech]:
    """Each case on its own thread, all at once; their speech by text."""
    spoken: dict[str, Speech] = {}
    errors: list[BaseException] = []

    def run(text: str, rate: float) -> None:
        try:
            spoken[text] = speak(engine, text, rate)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=case) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not errors
    return spoken


def assert_same_speech(got: Speech, expected: Speech) -> None:
    audio, words = got
    expected_audio, expected_words = expected
    assert audio.size == expected_audio.size
    assert np.abs(audio - expected_audio).max() < TOLERANCE
    assert words == expected_words


@pytest.fixture(scope="module")
def reference(tiny_vits_dir: Path) -> CoquiEngine:
    """The engine that batches nothing: Coqui's own synthesis."""
    engine = CoquiEngine(str(tiny_vits_dir))
    engine.load()
    return engine


@pytest.fixture
def make_engine(tiny_vits_dir: Path) -> Iterator[Callable[..., CoquiEngine]]:
    """Loads and warms up engines on the tiny VITS; closes them after the test."""
    engines: list[CoquiEngine] = []

    def make(**options: Any) -> CoquiEngine:
        engine = CoquiEngine(str(tiny_vits_dir), **options)
        engines.append(engine)
        engine.load()
        engine.warm_up()
        return engine

    yield make
    for engine in engines:
        engine.close()


def test_on_the_cpu_the_engine_batches_nothing_by_default(reference: CoquiEngine) -> None:
    assert not reference.batching
    assert reference.compile_mode == "off"


def test_concurrent_sentences_share_a_pass_each_with_its_own_audio_and_words(
    make_engine: Callable[..., CoquiEngine], reference: CoquiEngine
) -> None:
    recorder = Recorder()
    engine = make_engine(max_batch=3, batch_window_ms=NEVER_MS, on_batch=recorder)
    assert engine.batching
    spoken = speak_at_once(engine, CASES)
    [batch] = recorder.batches
    assert sorted(batch) == sorted(text for text, _ in CASES)
    # Different lengths in one pass: each exactly its own length, not the longest's.
    assert len({audio.size for audio, _ in spoken.values()}) == len(CASES)
    for text, rate in CASES:
        assert_same_speech(spoken[text], speak(reference, text, rate))
        assert not spoken[text][0][-PAUSE:].any()


async def test_a_request_arriving_during_a_batch_goes_in_the_next_one(
    make_engine: Callable[..., CoquiEngine], reference: CoquiEngine
) -> None:
    recorder = Recorder()
    recorder.hold_text = "This is the first of four."
    engine = make_engine(max_batch=2, batch_window_ms=0.0, on_batch=recorder)
    long_request = [
        "This is the first of four.",
        "Here comes the second one.",
        "And a third.",
        "The fourth ends it.",
    ]
    long_thread = threading.Thread(
        target=lambda: [speak(engine, sentence) for sentence in long_request]
    )
    long_thread.start()
    assert recorder.held.wait(WAIT_S)
    joined: list[Speech] = []
    short_thread = threading.Thread(target=lambda: joined.append(speak(engine, "Short one.")))
    short_thread.start()
    await wait_until(lambda: engine.sentences_waiting == 1, "the short sentence queued")
    recorder.release.set()
    short_thread.join(WAIT_S)
    long_thread.join(WAIT_S)
    assert recorder.batches[0] == ["This is the first of four."]
    # It waited for the batch in flight only: first in the next batch, ahead of the long
    # request's later sentences, never behind all of them.
    assert recorder.batches[1][0] == "Short one."
    assert sorted(text for batch in recorder.batches for text in batch) == sorted(
        [*long_request, "Short one."]
    )
    assert_same_speech(joined[0], speak(reference, "Short one."))


def test_a_request_whose_sink_fails_leaves_the_others_their_audio(
    make_engine: Callable[..., CoquiEngine], reference: CoquiEngine
) -> None:
    recorder = Recorder()
    engine = make_engine(max_batch=2, batch_window_ms=NEVER_MS, on_batch=recorder)
    voice = engine.resolve_voice("", "")
    failures: list[BaseException] = []
    pieces: list[PcmChunk] = []

    def broken_sink(_chunk: PcmChunk) -> bool:
        raise ConnectionError("the caller went away")

    def failing() -> None:
        try:
            engine.synthesize("Hello there.", voice, 1.0, broken_sink)
        except ConnectionError as error:
            failures.append(error)

    threads = [
        threading.Thread(target=failing),
        threading.Thread(
            target=engine.synthesize, args=("Yes.", voice, 1.0, collecting_sink(pieces))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert len(recorder.batches) == 1
    assert len(failures) == 1
    [audio] = pieces
    assert np.abs(audio - speak(reference, "Yes.")[0]).max() < TOLERANCE


def test_a_sentence_that_breaks_the_pass_fails_alone(tiny_vits_dir: Path) -> None:
    model = TTS(
        model_path=str(tiny_vits_dir / "model.pth"),
        config_path=str(tiny_vits_dir / "config.json"),
    ).synthesizer.tts_model
    runner = VitsRunner(
        model, EagerStages(model), Buckets((1,), (1,), (1,)), contextlib.nullcontext
    )
    batches: list[list[str]] = []
    batcher = VitsBatcher(
        [runner],
        max_batch=2,
        window_s=NEVER_MS / 1000,
        on_batch=lambda requests: batches.append([request.text for request in requests]),
    )
    try:
        good = vits_request(model, "Hello there.", None, None, 1.0)
        # A token the model has no embedding for: the batched pass raises IndexError.
        bad = VitsRequest("bad", (*good.tokens[:3], 10_000), 1.0)
        futures = [batcher.submit(request) for request in (good, bad)]
        with pytest.raises(IndexError):
            futures[1].result(WAIT_S)
        audio = futures[0].result(WAIT_S).audio
    finally:
        batcher.close()
    assert batches == [["Hello there.", "bad"], ["Hello there."], ["bad"]]
    [alone] = runner.run([good])
    assert np.array_equal(audio, alone.audio)


def test_trace_mode_pads_to_buckets_and_captures_each_stage_whole(
    make_engine: Callable[..., CoquiEngine], reference: CoquiEngine
) -> None:
    # TorchDynamo's eager backend with fullgraph=True: it fails on any graph break (a
    # host synchronisation, a data-dependent shape), and is cheap enough for the CPU.
    # One bucket shape per stage keeps the warm-up to two traces.
    engine = make_engine(compile_mode="trace", token_buckets="64", frame_buckets="256")
    assert engine.compile_mode == "trace"
    assert engine.batching
    short = "Hello there."  # 25 tokens and 25 frames: padded to 64 and 256
    assert_same_speech(speak(engine, short), speak(reference, short))
    # More tokens than any bucket: runs eagerly, unpadded, and is right too.
    longer = "How are you today, my good friend? I hope that you are very well indeed."
    assert_same_speech(speak(engine, longer, 0.8), speak(reference, longer, 0.8))


@pytest.mark.skipif(
    not os.environ.get("CHORUS_TEST_INDUCTOR"),
    reason="Inductor compiles for minutes on a busy 2-core machine: CHORUS_TEST_INDUCTOR=1",
)
def test_inductor_compiled_pass_speaks_as_eager(
    make_engine: Callable[..., CoquiEngine], reference: CoquiEngine
) -> None:
    engine = make_engine(compile_mode="reduce-overhead", token_buckets="64", frame_buckets="256")
    assert_same_speech(speak(engine, "Hello there."), speak(reference, "Hello there."))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_graphs_on_the_cpu_are_refused_naming_the_setting(tiny_vits_dir: Path) -> None:
    engine = CoquiEngine(str(tiny_vits_dir), device="cpu", compile_mode="cuda-graphs")
    with pytest.raises(ValueError, match="CHORUS_COQUI_COMPILE=cuda-graphs needs a CUDA device"):
        engine.load()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_speak_as_eager_on_the_gpu(tiny_vits_dir: Path) -> None:
    eager = CoquiEngine(str(tiny_vits_dir), device="cuda", half_precision=False, compile_mode="off")
    graphs = CoquiEngine(
        str(tiny_vits_dir),
        device="cuda",
        half_precision=False,
        compile_mode="cuda-graphs",
        max_batch=4,
        batch_window_ms=NEVER_MS,
        token_buckets="64,128",
        frame_buckets="256,1024",
    )
    for engine in (eager, graphs):
        engine.load()
        engine.warm_up()
    try:
        assert graphs.compile_mode == "cuda-graphs"
        spoken = speak_at_once(graphs, [*CASES, ("Good morning to you.", 1.0)])
        for text, rate in CASES:
            audio, words = spoken[text]
            expected, expected_words = speak(eager, text, rate)
            # cuDNN may pick other kernels for other shapes: looser than on the CPU.
            assert audio.size == expected.size
            assert np.abs(audio - expected).max() < 1e-3
            assert words == expected_words
    finally:
        graphs.close()
        eager.close()


def test_settings_configure_batching_and_compiling(tiny_vits_dir: Path) -> None:
    settings = load_settings(
        TtsSettings,
        [],
        environ={
            "CHORUS_ENGINE": "coqui",
            "CHORUS_COQUI_MODEL": str(tiny_vits_dir),
            "CHORUS_DEVICE": "cpu",
            "CHORUS_COQUI_MAX_BATCH": "4",
            "CHORUS_COQUI_BATCH_WINDOW_MS": "2.5",
            "CHORUS_COQUI_COMPILE": "off",
            "CHORUS_COQUI_TOKEN_BUCKETS": "32,16",
            "CHORUS_COQUI_FRAME_BUCKETS": "128",
        },
    )
    assert (settings.coqui_max_batch, settings.coqui_batch_window_ms) == (4, 2.5)
    engine = CoquiEngine.from_settings(settings)
    engine.load()
    try:
        assert engine.batching
        assert engine.compile_mode == "off"
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0}, "max_batch must be at least 1"),
        ({"batch_window_ms": -1.0}, "batch_window_ms must not be negative"),
        ({"compile_mode": "fast"}, "compile mode must be one of auto, off, cuda-graphs"),
        ({"token_buckets": "64,many"}, "token_buckets must be a comma-separated list"),
        ({"frame_buckets": "0,256"}, "frame_buckets must list positive sizes"),
    ],
)
def test_bad_batching_options_are_refused_at_construction(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CoquiEngine("m", **options)


def test_xtts_runs_alone_whatever_the_batch_settings(tiny_xtts_dir: Path) -> None:
    engine = CoquiEngine(str(tiny_xtts_dir), max_batch=4, compile_mode="auto")
    engine.load()
    assert not engine.batching
    assert engine.compile_mode == "off"
    assert engine.sentences_waiting == 0


def test_closing_fails_nothing_that_is_done_and_stops_the_batcher(
    make_engine: Callable[..., CoquiEngine],
) -> None:
    engine = make_engine(max_batch=2, batch_window_ms=0.0)
    assert speak(engine, "Hello.")[0].size > PAUSE
    engine.close()
    with pytest.raises(Exception, match="after close"):
        speak(engine, "Hello.")
