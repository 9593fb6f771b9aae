"""VITS inference over padded batches (vits_inference, vits_runner) against Coqui's own.

The tiny models sample no noise (devtools/builders/tiny_vits.py), so a sentence spoken
alone by Coqui's ``synthesize`` and the same sentence inside a padded batch must agree.
They agree to float rounding: the padded positions are masked before every convolution,
but a batch's matrix products may sum in another order than one sentence's, so the
samples are compared within TOLERANCE (measured: under 2e-7, on samples of about 0.2).
Lengths and durations are compared exactly.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from TTS.api import TTS
from TTS.tts.layers.vits.transforms import piecewise_rational_quadratic_transform

from services.tts.engines.vits_graphs import Buckets, EagerStages
from services.tts.engines.vits_inference import (
    _inverse_spline,
    acoustic_side,
    conditioning,
    text_side,
)
from services.tts.engines.vits_runner import VitsRequest, VitsRunner, vits_request

TOLERANCE = 1e-5
"""Largest difference allowed between a sample made alone and the same one in a batch."""

SENTENCES = [
    ("Hello there.", 1.0),
    ("How are you today, my good friend? I am fine, thank you.", 0.7),
    ("Yes.", 1.6),
]


def coqui_model(folder: Path) -> Any:
    """The model as Coqui's API loads it."""
    return TTS(
        model_path=str(folder / "model.pth"), config_path=str(folder / "config.json")
    ).synthesizer.tts_model


@pytest.fixture(scope="module")
def model(tiny_vits_dir: Path) -> Any:
    return coqui_model(tiny_vits_dir)


def alone(model: Any, text: str, rate: float, speaker: str | None = None) -> tuple[Any, Any]:
    """Coqui's own synthesis of one sentence: its samples and frames per token."""
    model.length_scale = model.args.length_scale / rate
    try:
        outputs = model.synthesize(text, speaker=speaker)
    finally:
        model.length_scale = model.args.length_scale
    durations = outputs["outputs"]["durations"].reshape(-1).numpy()
    return np.asarray(outputs["wav"], dtype=np.float32), durations


def runner(model: Any) -> VitsRunner:
    return VitsRunner(model, EagerStages(model), Buckets((1,), (1,), (1,)), contextlib.nullcontext)


def test_each_sentence_of_a_batch_is_what_it_is_alone(model: Any) -> None:
    requests = [vits_request(model, text, None, None, rate) for text, rate in SENTENCES]
    speeches = runner(model).run(requests)
    assert len({speech.audio.size for speech in speeches}) == len(SENTENCES)  # all differ
    for (text, rate), request, speech in zip(SENTENCES, requests, speeches, strict=True):
        audio, durations = alone(model, text, rate)
        assert speech.tokens == request.tokens
        assert speech.audio.size == audio.size
        assert np.abs(speech.audio - audio).max() < TOLERANCE
        assert np.array_equal(speech.frames_per_token, durations)


def test_padding_beyond_the_longest_item_changes_nothing(model: Any) -> None:
    requests = [vits_request(model, text, None, None, rate) for text, rate in SENTENCES]
    longest = max(len(request.tokens) for request in requests)
    with torch.inference_mode():
        # Padded as a bucket pads: two rows, 9 tokens and 7 frames more than needed.
        inputs = runner(model)._inputs(requests + requests[:2], 5, longest + 9)
        text = text_side(model, *inputs)
        lengths = torch.clamp_min(text.frames_per_token.sum(dim=(1, 2)), 1).long()
        audio, counts = acoustic_side(model, text, lengths, int(lengths.max()) + 7, inputs[3])
    for row, (sentence, rate) in enumerate(SENTENCES):
        expected, _ = alone(model, sentence, rate)
        assert int(counts[row]) == expected.size
        assert np.abs(audio[row, 0, : expected.size].numpy() - expected).max() < TOLERANCE
        assert not audio[row, 0, expected.size :].any()  # silence after its own end


def test_speakers_mix_in_one_batch(two_speaker_vits_dir: Path) -> None:
    model = coqui_model(two_speaker_vits_dir)
    cases = [("Hello there.", "alice"), ("Hello there.", "bob"), ("Good morning.", "alice")]
    requests = [vits_request(model, text, speaker, None, 1.0) for text, speaker in cases]
    assert [request.speaker_id for request in requests] == [0, 1, 0]
    speeches = runner(model).run(requests)
    for (text, speaker), speech in zip(cases, speeches, strict=True):
        audio, _ = alone(model, text, 1.0, speaker)
        assert speech.audio.size == audio.size
        assert np.abs(speech.audio - audio).max() < TOLERANCE


def test_one_frame_of_audio_is_spoken(model: Any) -> None:
    # A lone blank token predicts one frame; Coqui's own inference fails on that shape.
    [speech] = runner(model).run([VitsRequest("", (model.tokenizer.characters.blank_id,), 1.0)])
    assert speech.audio.size == 256
    assert np.isfinite(speech.audio).all()


def test_the_dense_spline_is_coquis_spline() -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (2, 1, 50)
    bins = 10
    inputs = 7 * torch.randn(*shape, generator=generator)  # many beyond the bound of 5
    widths = torch.randn(*shape, bins, generator=generator)
    heights = torch.randn(*shape, bins, generator=generator)
    derivatives = torch.randn(*shape, bins - 1, generator=generator)
    assert (inputs.abs() > 5).any()
    expected, _ = piecewise_rational_quadratic_transform(
        inputs, widths, heights, derivatives, inverse=True, tails="linear", tail_bound=5.0
    )
    dense = _inverse_spline(inputs, widths, heights, derivatives, 5.0)
    assert torch.allclose(dense, expected, atol=1e-5)


def test_conditioning_is_none_for_a_single_speaker_model(model: Any) -> None:
    assert conditioning(model, None, None, None) == (None, None)
