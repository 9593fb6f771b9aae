"""An XTTS model built in code with random weights, saved as a Coqui model folder.

The folder holds what a downloaded XTTS holds: ``model.pth``, ``config.json``, the BPE
vocabulary ``vocab.json`` and the built-in speakers ``speakers_xtts.pth``, and it loads
through the same path. The GPT is one small layer, but the HiFi-GAN decoder and speaker
encoder keep XTTS's fixed sizes (about 22 M parameters), so decoding dominates: one GPT
token is made 256 samples here (XTTS's own 1024) to keep a sentence under a second.

Generation would stop wherever random weights happen to pick the stop token, so that
token's logit is pinned far down: every sentence runs to the token limit and streams in
the same number of chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

MAX_AUDIO_TOKENS = 32
"""Audio tokens per sentence (the GPT's limit, less what XTTS reserves)."""


def build_xtts(
    folder: Path,
    *,
    speakers: Sequence[str] = ("Ana Florence", "Bob Stone"),
    languages: Sequence[str] = ("en", "de"),
    seed: int = 0,
) -> Path:
    """Save a randomly initialised XTTS into ``folder``; returns ``folder``."""
    from tokenizers import Tokenizer, models
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    folder.mkdir(parents=True, exist_ok=True)
    # Characters only, no merges: XTTS's tokenizer marks the language and spaces with
    # special tokens and needs [START], [STOP] and [UNK].
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", *(f"[{lang}]" for lang in languages)]
    letters = list("abcdefghijklmnopqrstuvwxyz.,!?'-")
    vocab = {token: index for index, token in enumerate(specials + letters)}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    bpe.add_special_tokens(specials)
    bpe.save(str(folder / "vocab.json"))

    audio_tokens = 24  # 22 codes, then XTTS's start and stop tokens
    args = XttsArgs(
        gpt_layers=1,
        gpt_n_model_channels=32,
        gpt_n_heads=2,
        gpt_max_text_tokens=100,
        gpt_max_prompt_tokens=8,
        gpt_max_audio_tokens=MAX_AUDIO_TOKENS + 3,
        gpt_num_audio_tokens=audio_tokens,
        gpt_start_audio_token=audio_tokens - 2,
        gpt_stop_audio_token=audio_tokens - 1,
        gpt_code_stride_len=256,
        decoder_input_dim=32,
    )
    config = XttsConfig(model_args=args, languages=list(languages))
    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(folder / "vocab.json")
    model.init_models()  # now that the tokenizer says how many text tokens there are
    with torch.no_grad():
        model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))

    latent_length = 8
    voices = {
        name: {
            "gpt_cond_latent": torch.randn(1, latent_length, args.gpt_n_model_channels),
            "speaker_embedding": torch.randn(1, args.d_vector_dim, 1),
        }
        for name in speakers
    }
    torch.save(voices, folder / "speakers_xtts.pth")
    return folder
