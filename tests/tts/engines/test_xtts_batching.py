"""Continuous batching of XTTS's GPT decoding (services.tts.engines.xtts_decoder), on the
tiny XTTS the tests build (random weights, every sentence runs to the token limit).

What a stream makes must not depend on what else is decoded with it: tokens are compared
exactly, latents and audio to 1e-5 (a batched matrix product may round differently from
a single row's; on this CPU they come out identical). Which streams each step ran is read
from the decoder's events, never from the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from devtools.builders.tiny_xtts import MAX_AUDIO_TOKENS
from services.common.settings import load_settings
from services.tts.engines import create_engine
from services.tts.engines.base import PcmChunk, collecting_sink
from services.tts.engines.coqui import CoquiEngine
from services.tts.engines.xtts_compat import bridge_xtts_cache_argument
from services.tts.engines.xtts_decoder import (
    DecoderEvent,
    XttsDecoder,
    XttsStream,
    open_stream,
    stream_audio,
    xtts_audio,
)
from services.tts.engines.xtts_gpt import XttsSampling
from services.tts.settings import TtsSettings

TOLERANCE = 1e-5
GREEDY = XttsSampling(top_k=1)
SENTENCES = [
    ("hello there.", "en", "Ana Florence"),
    ("how are you today?", "en", "Bob Stone"),
    ("guten tag.", "de", "Ana Florence"),
    ("a longer sentence, with more words in it!", "en", "Bob Stone"),
]


@pytest.fixture(scope="module")
def model(tiny_xtts_dir: Path) -> Any:
    """The tiny XTTS loaded as the coqui engine loads it, on the CPU."""
    bridge_xtts_cache_argument()
    from TTS.api import TTS

    api = TTS(
        model_path=str(tiny_xtts_dir / "model.pth"),
        config_path=str(tiny_xtts_dir / "config.json"),
        progress_bar=False,
    )
    return api.to("cpu").synthesizer.tts_model


class Recorder:
    """Collects the decoder's events; ``then`` runs an action once, right after the
    event it waits for (on the loop thread, before the loop goes on)."""

    def __init__(self) -> None:
        self.events: list[DecoderEvent] = []
        self._actions: list[tuple[Any, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: DecoderEvent) -> None:
        with self._lock:
            self.events.append(event)
            due = [action for action in self._actions if action[0](self.events)]
            for action in due:
                self._actions.remove(action)
        for _, run in due:
            run()

    def then(self, condition: Any, run: Any) -> None:
        with self._lock:
            self._actions.append((condition, run))

    def steps(self) -> list[tuple[int, ...]]:
        return [event.streams for event in self.events if event.kind == "step"]

    def index(self, kind: str, stream: int) -> int:
        return next(
            i for i, e in enumerate(self.events) if e.kind == kind and e.streams == (stream,)
        )

    def reason(self, stream: int) -> str:
        return self.events[self.index("leave", stream)].reason


@pytest.fixture
def decoder_factory(model: Any) -> Iterator[Any]:
    made: list[XttsDecoder] = []

    def make(max_streams: int, recorder: Recorder | None = None) -> XttsDecoder:
        decoder = XttsDecoder(model, max_streams=max_streams, on_event=recorder)
        made.append(decoder)
        return decoder

    yield make
    for decoder in made:
        assert decoder.close()


def opened(
    decoder: XttsDecoder, index: int, *, sampling: XttsSampling = GREEDY, seed: int | None = None
) -> XttsStream:
    text, language, speaker = SENTENCES[index]
    latent = decoder.model.speaker_manager.speakers[speaker]["gpt_cond_latent"]
    return open_stream(decoder, text, language, latent, sampling=sampling, seed=seed)


def collect(stream: XttsStream) -> tuple[list[int], list[torch.Tensor]]:
    with torch.inference_mode():
        pairs = list(stream)
    return [token for token, _ in pairs], [latent for _, latent in pairs]


def coqui_tokens(model: Any, index: int) -> tuple[list[int], list[torch.Tensor]]:
    """Tokens and latents of coqui's own stream generator, greedy (top_k 1)."""
    text, language, speaker = SENTENCES[index]
    latent = model.speaker_manager.speakers[speaker]["gpt_cond_latent"]
    with torch.inference_mode():
        ids = torch.IntTensor(model.tokenizer.encode(text, lang=language)).unsqueeze(0)
        inputs = model.gpt.compute_embeddings(latent, ids)
        generator = model.gpt.get_generator(
            fake_inputs=inputs,
            top_k=1,
            top_p=0.85,
            temperature=0.75,
            do_sample=True,
            num_beams=1,
            num_return_sequences=1,
            length_penalty=1.0,
            repetition_penalty=10.0,
            output_attentions=False,
            output_hidden_states=True,
            return_dict_in_generate=True,
        )
        pairs = [(int(token), latent[0]) for token, latent in generator]
    return [token for token, _ in pairs], [latent for _, latent in pairs]


def assert_same(
    got: tuple[list[int], list[torch.Tensor]], want: tuple[list[int], list[torch.Tensor]]
) -> None:
    assert got[0] == want[0]
    for mine, theirs in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(mine, theirs, atol=TOLERANCE, rtol=0)


def test_a_stream_alone_decodes_as_coqui_does(model: Any, decoder_factory: Any) -> None:
    decoder = decoder_factory(4)
    for index in range(len(SENTENCES)):
        mine = collect(opened(decoder, index))
        assert len(mine[0]) == MAX_AUDIO_TOKENS
        assert_same(mine, coqui_tokens(model, index))


def test_audio_matches_coquis_inference_stream(model: Any, decoder_factory: Any) -> None:
    decoder = decoder_factory(2)
    text, language, speaker = SENTENCES[0]
    voice = model.speaker_manager.speakers[speaker]
    for speed in (1.0, 0.5):
        with torch.inference_mode():
            theirs = list(
                model.inference_stream(
                    text,
                    language,
                    voice["gpt_cond_latent"],
                    voice["speaker_embedding"],
                    top_k=1,
                    speed=speed,
                )
            )
            mine = list(
                xtts_audio(
                    decoder,
                    text,
                    language,
                    voice["gpt_cond_latent"],
                    voice["speaker_embedding"],
                    speed=speed,
                    sampling=GREEDY,
                )
            )
        assert len(mine) == len(theirs) == 2  # a chunk every 20 tokens, then the rest
        for got, want in zip(mine, theirs, strict=True):
            torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "sampling", [GREEDY, XttsSampling(), XttsSampling(top_k=0, top_p=1.0, temperature=1.5)]
)
def test_batched_streams_decode_as_they_do_alone(
    decoder_factory: Any, sampling: XttsSampling
) -> None:
    alone_decoder = decoder_factory(4)
    alone = [
        collect(opened(alone_decoder, index, sampling=sampling, seed=100 + index))
        for index in range(4)
    ]

    recorder = Recorder()
    decoder = decoder_factory(4, recorder)
    streams: list[XttsStream] = []

    def open_the_others() -> None:
        streams.extend(
            opened(decoder, index, sampling=sampling, seed=100 + index) for index in (1, 2, 3)
        )

    recorder.then(lambda events: len(events) == 2, open_the_others)  # after the first step
    first = opened(decoder, 0, sampling=sampling, seed=100)
    together = [collect(first)] + [collect(stream) for stream in streams]

    for got, want in zip(together, alone, strict=True):
        assert_same(got, want)
    # They were decoded together: most steps ran all four.
    ids = tuple(stream.id for stream in [first, *streams])
    assert recorder.steps().count(ids) == MAX_AUDIO_TOKENS - 2
    if sampling != GREEDY:
        assert len({tuple(tokens) for tokens, _ in alone}) == 4


def test_a_joining_stream_is_decoded_at_the_very_next_step(decoder_factory: Any) -> None:
    recorder = Recorder()
    decoder = decoder_factory(4, recorder)
    late: list[XttsStream] = []
    recorder.then(
        lambda events: sum(e.kind == "step" for e in events) == 5,
        lambda: late.append(opened(decoder, 1)),
    )
    first = opened(decoder, 0)
    first_tokens = collect(first)
    second_tokens = collect(late[0])

    a, b = first.id, late[0].id
    joined = recorder.index("prefill", b)
    # The fifth step of the first stream, then the prefill, then a step of both.
    assert recorder.events[joined - 1] == DecoderEvent("step", (a,))
    assert recorder.events[joined + 1] == DecoderEvent("step", (a, b))
    steps = recorder.steps()
    assert steps[:5] == [(a,)] * 5
    # Its first token comes from its prefill; it then steps with the first stream until
    # that one leaves, and goes on alone.
    assert steps.count((a, b)) == MAX_AUDIO_TOKENS - 1 - 5
    assert steps[-5:] == [(b,)] * 5
    assert recorder.reason(a) == recorder.reason(b) == "length"
    alone = decoder_factory(1)
    assert_same(first_tokens, collect(opened(alone, 0)))
    assert_same(second_tokens, collect(opened(alone, 1)))


def test_a_stream_that_ends_frees_its_slot_for_a_waiting_one(decoder_factory: Any) -> None:
    recorder = Recorder()
    decoder = decoder_factory(2, recorder)
    text, language, speaker = SENTENCES[0]
    latent = decoder.model.speaker_manager.speakers[speaker]["gpt_cond_latent"]
    ids = torch.IntTensor(decoder.model.tokenizer.encode(text, lang=language)).unsqueeze(0)
    short = decoder.open(latent, ids, sampling=GREEDY, max_new_tokens=4)
    long = opened(decoder, 1)
    waiting = opened(decoder, 2)  # no slot for it until the short one ends

    short_tokens = collect(short)
    long_tokens = collect(long)
    waiting_tokens = collect(waiting)

    assert len(short_tokens[0]) == 4
    assert recorder.reason(short.id) == "length"
    # The waiting stream takes the freed slot right away.
    left = recorder.index("leave", short.id)
    assert recorder.events[left + 1] == DecoderEvent("prefill", (waiting.id,))
    assert all(len(streams) <= 2 for streams in recorder.steps())
    # It took the short one's slot, the first: steps list streams in slot order.
    assert (waiting.id, long.id) in recorder.steps()
    alone = decoder_factory(1)
    assert_same(long_tokens, collect(opened(alone, 1)))
    assert_same(waiting_tokens, collect(opened(alone, 2)))
    assert short_tokens[0] == collect(opened(alone, 0))[0][:4]


def test_a_stream_leaves_on_its_stop_token(model: Any, decoder_factory: Any) -> None:
    recorder = Recorder()
    decoder = decoder_factory(2, recorder)
    stop = model.gpt.stop_audio_token
    bias = model.gpt.mel_head.bias
    with torch.no_grad():
        pinned = float(bias[stop])
        bias[stop] = 1e4  # the stop token now wins at once
    try:
        stream = opened(decoder, 0)
        tokens, latents = collect(stream)
    finally:
        with torch.no_grad():
            bias[stop] = pinned
    # As coqui does, the stop token (and its latent) is the stream's last item.
    assert tokens == [stop]
    assert len(latents) == 1
    assert recorder.reason(stream.id) == "stop"
    assert recorder.steps() == []
    # The slot is free again: the model as it was decodes in full.
    assert len(collect(opened(decoder, 1))[0]) == MAX_AUDIO_TOKENS


def test_a_cancelled_stream_frees_its_slot_and_the_others_go_on(decoder_factory: Any) -> None:
    recorder = Recorder()
    decoder = decoder_factory(2, recorder)
    late: list[XttsStream] = []
    # The second stream joins after the first's prefill and is cancelled after the
    # third step (both on the loop thread, so at known points of the decoding).
    recorder.then(lambda events: len(events) == 1, lambda: late.append(opened(decoder, 1)))
    recorder.then(
        lambda events: sum(e.kind == "step" for e in events) == 3, lambda: late[0].cancel()
    )
    first = opened(decoder, 0)
    kept = collect(first)
    cancelled = collect(late[0])

    a, b = first.id, late[0].id
    assert recorder.reason(b) == "cancelled"
    assert 1 <= len(cancelled[0]) < MAX_AUDIO_TOKENS
    left = recorder.index("leave", b)
    assert all(b not in event.streams for event in recorder.events[left + 1 :])
    assert recorder.events[left + 1] == DecoderEvent("step", (a,))
    assert recorder.reason(a) == "length"
    # A third stream gets the freed slot.
    third = collect(opened(decoder, 2))
    alone = decoder_factory(1)
    assert_same(kept, collect(opened(alone, 0)))
    assert_same(third, collect(opened(alone, 2)))


def test_a_failing_consumer_does_not_fail_the_others(model: Any, decoder_factory: Any) -> None:
    recorder = Recorder()
    decoder = decoder_factory(3, recorder)
    gate = threading.Event()
    # Hold the loop at the first prefill until all three streams are queued: they then
    # decode together.
    recorder.then(lambda events: len(events) == 1, lambda: gate.wait(60))
    streams = [opened(decoder, index) for index in range(3)]
    gate.set()

    class ConsumerBroke(RuntimeError):
        pass

    results: dict[int, list[torch.Tensor]] = {}
    errors: dict[int, BaseException] = {}

    def consume(index: int) -> None:
        speaker = SENTENCES[index][2]
        embedding = model.speaker_manager.speakers[speaker]["speaker_embedding"]
        chunks: list[torch.Tensor] = []
        try:
            with torch.inference_mode():
                for chunk in stream_audio(model, streams[index], embedding):
                    chunks.append(chunk.clone())
                    if index == 1:
                        raise ConsumerBroke("the client went away")
        except ConsumerBroke as error:
            errors[index] = error
        results[index] = chunks

    threads = [threading.Thread(target=consume, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert list(errors) == [1]
    assert recorder.reason(streams[1].id) in ("cancelled", "length")
    assert recorder.reason(streams[0].id) == recorder.reason(streams[2].id) == "length"
    assert (streams[0].id, streams[1].id, streams[2].id) in recorder.steps()
    alone = decoder_factory(1)
    for index in (0, 2):
        speaker = SENTENCES[index][2]
        embedding = model.speaker_manager.speakers[speaker]["speaker_embedding"]
        with torch.inference_mode():
            want = list(stream_audio(model, opened(alone, index), embedding))
        assert len(results[index]) == len(want) == 2
        for got, expected in zip(results[index], want, strict=True):
            torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


def test_closing_the_decoder_ends_its_streams(decoder_factory: Any) -> None:
    from services.tts.engines.xtts_decoder import DecoderClosed

    recorder = Recorder()
    decoder = decoder_factory(1, recorder)
    gate = threading.Event()

    def close_at_the_first_prefill() -> None:
        gate.wait(60)
        decoder.close()  # from the loop thread itself: it does not wait for itself

    recorder.then(lambda events: len(events) == 1, close_at_the_first_prefill)
    first = opened(decoder, 0)
    second = opened(decoder, 1)  # waits for the one slot
    gate.set()
    for stream in (first, second):
        with pytest.raises(DecoderClosed):
            collect(stream)
    with pytest.raises(DecoderClosed):
        opened(decoder, 2)


def test_a_half_precision_cache_under_autocast_runs(model: Any) -> None:
    """The engine's CUDA set-up (float16 cache, autocast on the loop thread), here with
    the CPU's bfloat16: the loop thread runs in the context it is given."""
    exact = XttsDecoder(model, max_streams=2)
    half = XttsDecoder(
        model,
        max_streams=2,
        cache_dtype=torch.bfloat16,
        precision=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    )
    try:
        want = collect(opened(exact, 0))
        got = collect(opened(half, 0))
    finally:
        assert exact.close()
        assert half.close()
    assert len(got[0]) == MAX_AUDIO_TOKENS
    assert all(bool(torch.isfinite(latent).all()) for latent in got[1])
    # Lower precision may round a close call the other way; on the tiny model it does not.
    assert got[0] == want[0]


# The engine, with CHORUS_XTTS_MAX_STREAMS above 1.


@pytest.fixture(scope="module")
def batched_engine(tiny_xtts_dir: Path) -> Iterator[CoquiEngine]:
    settings = load_settings(
        TtsSettings,
        [],
        environ={
            "CHORUS_ENGINE": "coqui",
            "CHORUS_COQUI_MODEL": str(tiny_xtts_dir),
            "CHORUS_DEVICE": "cpu",
            "CHORUS_XTTS_MAX_STREAMS": "4",
        },
    )
    engine = create_engine(settings)
    assert isinstance(engine, CoquiEngine)
    engine.load()
    engine.warm_up()
    yield engine
    engine.close()


def test_the_engine_streams_xtts_through_the_decoder(batched_engine: CoquiEngine) -> None:
    assert batched_engine.xtts_max_streams == 4
    voice = batched_engine.resolve_voice("Bob Stone/de", "")
    outcomes: list[list[PcmChunk]] = [[] for _ in range(4)]

    def speak(index: int) -> None:
        batched_engine.synthesize("Hello there.", voice, 1.0, collecting_sink(outcomes[index]))

    threads = [threading.Thread(target=speak, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for chunks in outcomes:
        # Two chunks of speech (one every 20 tokens), then the sentence's pause.
        assert len(chunks) == 3
        assert all(chunk.dtype == np.float32 for chunk in chunks)
        assert chunks[0].any()
        assert chunks[1].any()
        assert not chunks[2].any()


def test_the_engine_stops_a_stream_when_the_sink_says_so(batched_engine: CoquiEngine) -> None:
    calls: list[PcmChunk] = []

    def first_only(chunk: PcmChunk) -> bool:
        calls.append(chunk)
        return False

    batched_engine.synthesize("Hello there.", batched_engine.resolve_voice("", ""), 1.0, first_only)
    assert len(calls) == 1
    # The stream left, so its slot is free for the next sentence.
    chunks: list[PcmChunk] = []
    voice = batched_engine.resolve_voice("", "")
    batched_engine.synthesize("Hello there.", voice, 1.0, collecting_sink(chunks))
    assert len(chunks) == 3


def test_one_stream_is_todays_path(tiny_xtts_dir: Path) -> None:
    engine = CoquiEngine(str(tiny_xtts_dir), device="cpu")
    assert engine.xtts_max_streams == 1
    with pytest.raises(ValueError, match="xtts_max_streams must be at least 1"):
        CoquiEngine(str(tiny_xtts_dir), xtts_max_streams=0)
