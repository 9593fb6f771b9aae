"""VITS models built in code with random weights, saved as Coqui model folders.

Model weights cannot be downloaded here, so the tests and the benchmark make their own:
a folder with ``model.pth`` and ``config.json``, exactly what Coqui's trainer writes and
what a downloaded model holds, loaded through the same path as a real model.

Sizes: ``tiny`` (about 1.5 M parameters, a sentence in tens of milliseconds on a CPU) for
tests; ``base`` (VITS's own default layer sizes, as the released VITS models have) for
benchmarks: random weights run at the real speed of their size.

The tiny model samples no noise at inference (``inference_noise_scale`` and
``inference_noise_scale_dp`` 0), so it says a sentence the same way every time and tests
can compare audio exactly. Released VITS models sample noise (0.667 and 1.0): their
output differs slightly from call to call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

VITS_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_channels": 32,
        "hidden_channels_ffn_text_encoder": 64,
        "num_heads_text_encoder": 2,
        "num_layers_text_encoder": 2,
        "num_layers_flow": 2,
        "num_layers_posterior_encoder": 2,
        "resblock_type_decoder": "2",
        "upsample_initial_channel_decoder": 32,
        "upsample_rates_decoder": [8, 8, 2, 2],
        "upsample_kernel_sizes_decoder": [16, 16, 4, 4],
        "resblock_kernel_sizes_decoder": [3],
        "resblock_dilation_sizes_decoder": [[1, 3]],
        "inference_noise_scale": 0.0,
        "inference_noise_scale_dp": 0.0,
    },
    "base": {},
}


def build_vits(
    folder: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    speakers: Sequence[str] = (),
    language: str = "en",
) -> Path:
    """Save a randomly initialised VITS of ``size`` into ``folder``; returns ``folder``.

    Graphemes (lower-case letters and punctuation, ``basic_cleaners``), so no phonemizer
    is needed. With ``speakers``, a multi-speaker model with a speaker embedding table and
    a ``speakers.json`` naming them. ``seed`` picks the weights: two seeds, two models.
    """
    import torch
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs
    from TTS.tts.utils.text.tokenizer import TTSTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    args = VitsArgs(
        init_discriminator=False, use_speaker_embedding=bool(speakers), **VITS_SIZES[size]
    )
    config = VitsConfig(
        model_args=args,
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        languages=[language],
        speakers=list(speakers),
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations="!'(),-.:;? ",
            phonemes=None,
        ),
    )
    tokenizer, _ = TTSTokenizer.init_from_config(config)
    config.model_args.num_chars = tokenizer.characters.num_chars
    torch.manual_seed(seed)
    model = Vits(config)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder
