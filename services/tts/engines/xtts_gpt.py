"""XTTS's GPT run by hand over a static KV cache: prompt prefill, batched one-token steps,
and coqui's sampling, row by row.

Coqui decodes one stream at a time through transformers' ``generate`` (its
``GPT2InferenceModel`` and ``stream_generator``), whose cache classes keep one length for
the whole batch. Here the same modules, with the same weights, run outside transformers'
cache machinery: each GPT-2 block's layer norms, ``c_attn``, ``c_proj`` and MLP are
called directly, attention is ``scaled_dot_product_attention`` over the rows of a
services.tts.engines.xtts_kv_cache.StaticKvCache with a per-row mask, so every row sits
at its own position. What coqui computes is kept step for step:

* the prompt is the conditioning latents, then the text between XTTS's start and stop
  text tokens (text embedding plus text position embedding), then the start audio token
  at audio position 0 (``GPT.compute_embeddings`` and ``GPT2InferenceModel.forward``);
* the n-th generated token goes in as its audio embedding plus audio position n;
* GPT-2's own position embeddings are zeros in XTTS and its embedding dropout is off in
  eval, so the blocks see the embeddings as they are;
* a position's latent is ``final_norm(ln_f(h))`` and its logits ``mel_head`` of that (the
  latent is what coqui's stream generator yields for HiFi-GAN, the logits what its
  ``lm_head`` gives);
* sampling is transformers' for ``do_sample=True`` with coqui's arguments: repetition
  penalty over the prompt's input ids (coqui's placeholder ids ``1`` and the start audio
  token) and every generated token, then temperature, top-k and top-p, then one draw
  from the softmax, here from the stream's own ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional

from services.tts.engines.xtts_kv_cache import StaticKvCache

PROMPT_PLACEHOLDER_ID = 1
"""The id coqui's ``compute_embeddings`` fills its fake prompt ids with: the repetition
penalty sees it as a token already said."""


@dataclass(frozen=True)
class XttsSampling:
    """How a stream's next token is drawn; the defaults are coqui's ``inference_stream``'s.

    ``top_k`` 0 and ``top_p`` 1.0 turn those filters off; ``top_k`` 1 makes the draw
    greedy (the most likely token after the repetition penalty), whatever the seed.
    """

    temperature: float = 0.75
    top_k: int = 50
    top_p: float = 0.85
    repetition_penalty: float = 10.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, not {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must not be negative, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be positive, not {self.repetition_penalty}")


class XttsGpt:
    """One XTTS copy's GPT over a cache of ``slots`` rows (one per concurrent stream)."""

    def __init__(self, gpt: Any, *, slots: int, cache_dtype: torch.dtype | None = None) -> None:
        """``gpt`` is the model's ``TTS.tts.layers.xtts.gpt.GPT`` (``Xtts.gpt``)."""
        self.gpt = gpt
        self.transformer = gpt.gpt
        self.blocks: Sequence[Any] = list(self.transformer.h)
        self.model_dim = int(gpt.model_dim)
        self.heads = int(gpt.heads)
        self.head_dim = self.model_dim // self.heads
        config = self.transformer.config
        if getattr(config, "reorder_and_upcast_attn", False) or getattr(
            config, "scale_attn_by_inverse_layer_idx", False
        ):
            raise ValueError("XTTS GPT with attention options the batched decoder does not run")
        self.scale = self.head_dim**-0.5 if getattr(config, "scale_attn_weights", True) else 1.0
        self.stop_token = int(gpt.stop_audio_token)
        self.start_token = int(gpt.start_audio_token)
        self.vocab = int(gpt.mel_head.out_features)
        self.max_new_tokens = int(gpt.max_gen_mel_tokens)
        """Tokens a stream makes at most (coqui's generation limit)."""
        weight = gpt.mel_head.weight
        self.device: torch.device = weight.device
        # The sequence length coqui's inference GPT is configured for.
        max_len = int(gpt.max_prompt_tokens + gpt.max_mel_tokens + gpt.max_text_tokens + 1)
        self.cache = StaticKvCache(
            layers=len(self.blocks),
            slots=slots,
            heads=self.heads,
            head_dim=self.head_dim,
            max_len=max_len,
            dtype=cache_dtype or weight.dtype,
            device=self.device,
        )

    def prompt(self, cond_latents: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """The prompt's embeddings ``[1, length, model_dim]``: conditioning latents
        ``[1, n, model_dim]``, the text ids ``[1, m]`` between the start and stop text
        tokens, and the start audio token at audio position 0."""
        gpt = self.gpt
        text = functional.pad(text_tokens.to(self.device), (0, 1), value=gpt.stop_text_token)
        text = functional.pad(text, (1, 0), value=gpt.start_text_token)
        text_emb = gpt.text_embedding(text) + gpt.text_pos_embedding(text)
        start = torch.full((1, 1), self.start_token, dtype=torch.long, device=self.device)
        audio_emb = gpt.mel_embedding(start) + gpt.mel_pos_embedding(start)
        return torch.cat([cond_latents.to(self.device, text_emb.dtype), text_emb, audio_emb], 1)

    def prefill(self, slot: int, prompt: torch.Tensor) -> torch.Tensor:
        """Run ``prompt`` (``[1, length, model_dim]``) into ``slot``'s cache rows; the
        latent ``[model_dim]`` of its last position."""
        length = prompt.shape[1]
        if length >= self.cache.max_len:
            raise ValueError(f"prompt of {length} positions exceeds the GPT's {self.cache.max_len}")
        x = prompt
        for layer, block in enumerate(self.blocks):
            query, key, value = self._qkv(block, x)
            self.cache.write_prompt(layer, slot, key[0], value[0])
            attended = functional.scaled_dot_product_attention(
                query, key, value, is_causal=True, scale=self.scale
            )
            x = self._finish_block(block, x, attended)
        self.cache.lengths[slot] = length
        return self.latent(x[0, -1])

    def step(self, top: int, tokens: torch.Tensor, audio_positions: torch.Tensor) -> torch.Tensor:
        """One position for every row of ``[:top]``: row ``i`` feeds ``tokens[i]`` at
        audio position ``audio_positions[i]``, written at the row's cache length; the
        latents ``[top, model_dim]``. A free row among them computes on whatever it is
        given; its result means nothing and its cache row is not read until a stream
        prefills it."""
        gpt = self.gpt
        lengths = self.cache.lengths[:top]
        positions = torch.tensor(lengths, dtype=torch.long, device=self.device)
        span = max(lengths) + 1
        if span > self.cache.max_len:
            raise ValueError(f"a stream outgrew the KV cache's {self.cache.max_len} positions")
        mask = torch.arange(span, device=self.device)[None, :] <= positions[:, None]
        mask = mask[:, None, None, :]  # [rows, heads, query, key]
        x = gpt.mel_embedding(tokens) + gpt.mel_pos_embedding.emb(audio_positions)
        x = x[:, None, :]
        for layer, block in enumerate(self.blocks):
            query, key, value = self._qkv(block, x)
            self.cache.write_step(layer, top, positions, key[:, :, 0], value[:, :, 0])
            keys = self.cache.keys[layer, :top, :, :span].to(query.dtype)
            values = self.cache.values[layer, :top, :, :span].to(query.dtype)
            attended = functional.scaled_dot_product_attention(
                query, keys, values, attn_mask=mask, scale=self.scale
            )
            x = self._finish_block(block, x, attended)
        self.cache.advance(top)
        result: torch.Tensor = self.latent(x[:, 0])
        return result

    def latent(self, hidden: torch.Tensor) -> torch.Tensor:
        """What coqui hands HiFi-GAN for a position: ``final_norm(ln_f(h))``."""
        result: torch.Tensor = self.gpt.final_norm(self.transformer.ln_f(hidden))
        return result

    def logits(self, latents: torch.Tensor) -> torch.Tensor:
        """The audio-token logits of latents ``[rows, model_dim]``, in float32."""
        result: torch.Tensor = self.gpt.mel_head(latents).float()
        return result

    def _qkv(self, block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``[rows, heads, length, head_dim]`` of ``x``
        ``[rows, length, model_dim]``."""
        rows, length, _ = x.shape
        query, key, value = block.attn.c_attn(block.ln_1(x)).split(self.model_dim, dim=2)
        shape = (rows, length, self.heads, self.head_dim)
        return (
            query.view(shape).transpose(1, 2),
            key.view(shape).transpose(1, 2),
            value.view(shape).transpose(1, 2),
        )

    def _finish_block(self, block: Any, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The rest of a GPT-2 block after attention: projection, residual, MLP, residual."""
        rows, _, length, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(rows, length, self.model_dim)
        x = x + block.attn.c_proj(merged)
        result: torch.Tensor = x + block.mlp(block.ln_2(x))
        return result


def sample(
    logits: torch.Tensor,
    seen: torch.Tensor,
    samplings: Sequence[XttsSampling],
    generators: Sequence[torch.Generator],
) -> list[int]:
    """One token per row of ``logits`` (``[rows, vocab]``, float32), as transformers'
    sampling does with coqui's arguments: repetition penalty on the ids ``seen``
    (``[rows, vocab]`` bool), temperature, top-k, top-p, then a draw from row ``i``'s
    ``generators[i]``."""
    rows, vocab = logits.shape
    device = logits.device

    def per_row(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)[:, None]

    scores = logits
    penalty = per_row([s.repetition_penalty for s in samplings])
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    scores = torch.where(seen, penalised, scores)
    scores = scores / per_row([s.temperature for s in samplings])
    top_ks = [min(s.top_k, vocab) if s.top_k > 0 else vocab for s in samplings]
    if min(top_ks) < vocab:
        ranked = torch.topk(scores, max(top_ks), dim=-1).values
        index = torch.tensor([k - 1 for k in top_ks], device=device)[:, None]
        kth = ranked.gather(1, index)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if any(s.top_p < 1.0 for s in samplings):
        sorted_scores, sorted_index = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # A row without top-p keeps everything (its threshold is below any sum).
        floor = per_row([1 - s.top_p if s.top_p < 1.0 else -1.0 for s in samplings])
        remove = cumulative <= floor
        remove[..., -1:] = False
        remove = remove.scatter(1, sorted_index, remove)
        scores = scores.masked_fill(remove, float("-inf"))
    probabilities = functional.softmax(scores, dim=-1)
    draws = [
        torch.multinomial(probabilities[row], 1, generator=generators[row]) for row in range(rows)
    ]
    # One transfer for all rows, not one per row.
    return [int(token) for token in torch.cat(draws).tolist()]
