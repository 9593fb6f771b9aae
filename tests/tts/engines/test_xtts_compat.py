"""The bridge between coqui's XTTS GPT and transformers' ``cache`` argument (5.24 and later).

The tests on the real model run on whichever transformers is installed: on 5.23 and
earlier no ``cache`` argument arrives and they check the bridge changes nothing; on 5.24
they fail without it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from devtools.builders.tiny_xtts import MAX_AUDIO_TOKENS
from services.tts.engines.coqui import CoquiEngine
from services.tts.engines.xtts_compat import bridge_xtts_cache_argument
from tests.tts.harness import engine_chunks

TEXT = "Hello there."
# Greedy choice of every token, so that two runs are comparable. It has to be top_k=1 with
# sampling on: coqui's streaming generator samples whatever do_sample says.
GREEDY: dict[str, Any] = {"do_sample": True, "top_k": 1}


def gpt2_inference_model() -> Any:
    from TTS.tts.layers.xtts.gpt_inference import GPT2InferenceModel

    return GPT2InferenceModel


def recording_forward(
    self: Any, input_ids: Any = None, past_key_values: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """Stands in for coqui's forward (same leading parameters): returns what it was given."""
    return {"input_ids": input_ids, "past_key_values": past_key_values, **kwargs}


@pytest.fixture
def stub_forward(monkeypatch: pytest.MonkeyPatch) -> Any:
    """GPT2InferenceModel with ``recording_forward`` as its forward, restored afterwards."""
    model_class = gpt2_inference_model()
    monkeypatch.setattr(model_class, "forward", recording_forward)
    return model_class


def test_a_cache_argument_reaches_coquis_forward_as_past_key_values(stub_forward: Any) -> None:
    cache = object()
    assert bridge_xtts_cache_argument()
    got = stub_forward.forward(None, input_ids="ids", cache=cache, use_cache=True)
    assert got == {"input_ids": "ids", "past_key_values": cache, "use_cache": True}


def test_without_a_cache_argument_the_call_is_unchanged(stub_forward: Any) -> None:
    cache = object()
    bridge_xtts_cache_argument()
    expected = {"input_ids": "ids", "past_key_values": cache}
    assert stub_forward.forward(None, input_ids="ids", past_key_values=cache) == expected
    assert stub_forward.forward(None, "ids", cache) == expected


def test_both_names_at_once_are_refused(stub_forward: Any) -> None:
    bridge_xtts_cache_argument()
    with pytest.raises(TypeError, match="both cache and past_key_values"):
        stub_forward.forward(None, input_ids="ids", cache=object(), past_key_values=object())


def test_the_bridge_wraps_once_and_keeps_the_signature(stub_forward: Any) -> None:
    bridge_xtts_cache_argument()
    bridged = stub_forward.forward
    assert bridge_xtts_cache_argument()
    assert stub_forward.forward is bridged
    # transformers reads the forward's parameters to decide what to pass it.
    assert inspect.signature(bridged) == inspect.signature(recording_forward)


def test_a_forward_that_takes_cache_itself_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def forward_with_cache(self: Any, input_ids: Any = None, cache: Any = None) -> Any:
        return cache

    model_class = gpt2_inference_model()
    monkeypatch.setattr(model_class, "forward", forward_with_cache)
    assert not bridge_xtts_cache_argument()
    assert model_class.forward is forward_with_cache


def test_loading_an_xtts_installs_the_bridge(
    monkeypatch: pytest.MonkeyPatch, tiny_xtts_dir: Path
) -> None:
    model_class = gpt2_inference_model()
    # As coqui ships it, whatever an earlier test in this process installed.
    monkeypatch.setattr(model_class, "forward", inspect.unwrap(model_class.forward))
    engine = CoquiEngine(str(tiny_xtts_dir))
    engine.load()
    assert model_class.forward is not inspect.unwrap(model_class.forward)
    chunks = engine_chunks(engine, TEXT)
    assert sum(chunk.size for chunk in chunks) > 0


@pytest.fixture(scope="module")
def xtts_model(tiny_xtts_dir: Path) -> Any:
    """The tiny XTTS as coqui loads it, on the CPU, with the bridge installed."""
    from TTS.api import TTS

    bridge_xtts_cache_argument()
    checkpoint, config = tiny_xtts_dir / "model.pth", tiny_xtts_dir / "config.json"
    tts = TTS(model_path=str(checkpoint), config_path=str(config), progress_bar=False)
    return tts.to("cpu").synthesizer.tts_model


def speak(model: Any, stream: bool, **options: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    """One sentence by Bob Stone, greedily: whole, or streamed and joined."""
    voice = model.speaker_manager.speakers["Bob Stone"]
    arguments = (TEXT, "de", voice["gpt_cond_latent"], voice["speaker_embedding"])
    with torch.inference_mode():
        if not stream:
            wav: np.ndarray[Any, np.dtype[np.float32]] = model.inference(
                *arguments, **GREEDY, **options
            )["wav"]
            return wav
        chunks = model.inference_stream(*arguments, **GREEDY, **options)
        return torch.cat(list(chunks)).numpy()


@pytest.fixture
def gpt_calls(xtts_model: Any) -> Iterator[list[dict[str, Any]]]:
    """What coqui's GPT2InferenceModel hands the GPT-2 inside it, call by call."""
    calls: list[dict[str, Any]] = []

    def record(_module: torch.nn.Module, _args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cache = kwargs.get("past_key_values")
        calls.append(
            {
                "tokens": kwargs["inputs_embeds"].shape[1],
                "cached": None if cache is None else cache.get_seq_length(),
            }
        )

    handle = xtts_model.gpt.gpt_inference.transformer.register_forward_pre_hook(
        record, with_kwargs=True
    )
    yield calls
    handle.remove()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_each_step_after_the_prompt_extends_the_kv_cache(
    xtts_model: Any, gpt_calls: list[dict[str, Any]], stream: bool
) -> None:
    speak(xtts_model, stream)
    # One call per audio token: the prompt (conditioning, text, start token) whole, then one
    # token a step, each on the cache of everything before it.
    prompt, *steps = gpt_calls[:MAX_AUDIO_TOKENS]
    assert prompt["tokens"] > 1
    assert prompt["cached"] == 0
    assert len(steps) == MAX_AUDIO_TOKENS - 1
    for number, step in enumerate(steps):
        assert step == {"tokens": 1, "cached": prompt["tokens"] + number}
    # Only made whole, XTTS then runs the GPT once more over it all, without a cache, for
    # the latents it decodes.
    after = gpt_calls[MAX_AUDIO_TOKENS:]
    assert [call["cached"] for call in after] == ([] if stream else [None])


def test_streamed_audio_is_the_audio_made_whole(xtts_model: Any) -> None:
    whole = speak(xtts_model, stream=False)
    # One chunk: streaming decodes the same latents at once, without cross-fading chunks.
    streamed = speak(xtts_model, stream=True, stream_chunk_size=0)
    assert whole.shape == streamed.shape
    assert np.abs(whole).max() > 0.01
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_the_kv_cache_changes_nothing_in_the_audio(xtts_model: Any) -> None:
    cached = speak(xtts_model, stream=True)
    recomputed = speak(xtts_model, stream=True, use_cache=False)
    np.testing.assert_allclose(cached, recomputed, atol=1e-5)
