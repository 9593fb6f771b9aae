"""Coqui VITS inference over a padded batch, in two stages that a CUDA graph can capture.

Coqui's ``Vits.inference`` speaks one sentence (or a batch whose shorter items come out
wrong at the end: its HiFi-GAN decoder has no mask, so the padding after a short item
leaks into that item's last samples through every convolution), and it stops the GPU
several times per sentence: its duration predictor's spline checks its input's range and
picks the elements inside it by boolean indexing, and draws its noise on the CPU. Here the
same computation runs over the model's own modules, with every padded position masked
before each convolution, so each item of a batch (or of a batch padded to a bucket size)
comes out as if it had been run alone, and with no host synchronisation inside either
stage:

* ``text_side``: text encoder and duration predictor; tokens ``[B, T]`` in, the frames
  per token out;
* the caller reads the frame counts (the one synchronisation: the output length depends
  on them) and picks the number of frames ``F``;
* ``acoustic_side``: prior expanded to frames, flow and decoder; ``F`` frames in, audio and
  each item's number of samples out.

Both are plain functions of tensors, for eager runs, ``torch.compile`` and
``torch.cuda.CUDAGraph`` capture alike (see services.tts.engines.vits_graphs).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 (torch's own name for it)

# HiFi-GAN's slope for the leaky ReLUs inside its blocks (its last one uses torch's 0.01).
_LRELU_SLOPE = 0.1


class TextSide(NamedTuple):
    """What ``text_side`` hands to ``acoustic_side``."""

    frames_per_token: torch.Tensor
    """``[B, 1, T]`` whole frames per token (0 on padding): the durations VITS used."""
    means: torch.Tensor
    """``[B, C, T]`` the prior's mean per token."""
    log_scales: torch.Tensor
    """``[B, C, T]`` the prior's log standard deviation per token."""
    token_mask: torch.Tensor
    """``[B, 1, T]`` 1 on each item's tokens, 0 on padding."""


def sequence_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 1, size]`` float mask: 1 before each item's length, 0 from it on."""
    positions = torch.arange(size, device=lengths.device)
    return (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).float()


def text_side(
    model: Any,
    tokens: torch.Tensor,
    token_lengths: torch.Tensor,
    length_scales: torch.Tensor,
    speaker: torch.Tensor | None,
    language: torch.Tensor | None,
) -> TextSide:
    """Encode ``tokens`` ``[B, T]`` (each item ``token_lengths`` long) and predict how many
    frames each token lasts, stretched by each item's ``length_scales`` ``[B]``.

    ``speaker`` (``[B, C, 1]``) and ``language`` (``[B, L, 1]``) are the model's
    conditioning vectors, None when it has none (``conditioning`` makes them).
    """
    encoded, means, log_scales, token_mask = model.text_encoder(
        tokens, token_lengths, lang_emb=language
    )
    duration_speaker = speaker if model.args.condition_dp_on_speaker else None
    if model.args.use_sdp:
        log_durations = _stochastic_log_durations(
            model.duration_predictor,
            encoded,
            token_mask,
            duration_speaker,
            language,
            float(model.inference_noise_scale_dp),
        )
    else:
        log_durations = model.duration_predictor(
            encoded, token_mask, g=duration_speaker, lang_emb=language
        )
    durations = torch.exp(log_durations) * token_mask * length_scales.view(-1, 1, 1)
    return TextSide(torch.ceil(durations), means, log_scales, token_mask)


def acoustic_side(
    model: Any,
    text: TextSide,
    frame_lengths: torch.Tensor,
    frames: int,
    speaker: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The audio ``[B, 1, S]`` of ``frames`` frames per item (each item's own
    ``frame_lengths`` of them, the rest padding) and each item's number of samples."""
    frame_mask = sequence_mask(frame_lengths, frames)
    path_mask = text.token_mask * frame_mask.transpose(1, 2)
    # [B, T, F] (Coqui squeezes a dimension here that is not always 1: one frame fails).
    path = _alignment_path(text.frames_per_token[:, 0], path_mask.transpose(1, 2))
    means = torch.matmul(path.transpose(1, 2), text.means.transpose(1, 2)).transpose(1, 2)
    log_scales = torch.matmul(path.transpose(1, 2), text.log_scales.transpose(1, 2)).transpose(1, 2)
    noise_scale = float(model.inference_noise_scale)
    prior = means
    if noise_scale:
        prior = means + torch.randn_like(means) * torch.exp(log_scales) * noise_scale
    latent = model.flow(prior, frame_mask, g=speaker, reverse=True)
    return _decode_masked(model.waveform_decoder, latent * frame_mask, frame_lengths, speaker)


def conditioning(
    model: Any,
    speaker_ids: torch.Tensor | None,
    d_vectors: torch.Tensor | None,
    language_ids: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The speaker and language vectors ``text_side`` and ``acoustic_side`` take, from
    ``[B]`` ids or ``[B, D]`` d-vectors, as ``Vits.inference`` makes them."""
    speaker = model._get_speaker_conditioning(
        {"speaker_ids": speaker_ids, "d_vectors": d_vectors}, "emb_g", normalize_embedding=False
    )
    language = None
    if model.args.use_language_embedding and language_ids is not None:
        language = model.emb_l(language_ids).unsqueeze(-1)
    return speaker, language


def samples_per_frame(model: Any) -> int:
    """Audio samples per frame: the product of the decoder's upsampling strides."""
    return int(np.prod([layer.stride[0] for layer in model.waveform_decoder.ups]))


def _alignment_path(durations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T, F]`` 1 where frame f belongs to token t (Coqui's ``generate_path``)."""
    batch, tokens, frames = mask.shape
    ends = torch.cumsum(durations, dim=1).view(batch * tokens)
    path = (torch.arange(frames, device=durations.device).unsqueeze(0) < ends.unsqueeze(1)).to(
        mask.dtype
    )
    path = path.view(batch, tokens, frames)
    path = path - F.pad(path, [0, 0, 1, 0, 0, 0])[:, :-1]
    return path * mask


def _stochastic_log_durations(
    predictor: Any,
    encoded: torch.Tensor,
    mask: torch.Tensor,
    speaker: torch.Tensor | None,
    language: torch.Tensor | None,
    noise_scale: float,
) -> torch.Tensor:
    """StochasticDurationPredictor's reverse pass (its ``forward(reverse=True)``), with
    the noise drawn on the device and the spline computed densely."""
    x = predictor.pre(encoded)
    if speaker is not None:
        x = x + predictor.cond(speaker)
    if language is not None:
        x = x + predictor.cond_lang(language)
    x = predictor.convs(x, mask)
    x = predictor.proj(x) * mask
    flows = list(reversed(predictor.flows))
    flows = [*flows[:-2], flows[-1]]  # as Coqui: the last ConvFlow is unused in reverse
    batch, _, length = x.shape
    z = torch.zeros(batch, 2, length, device=x.device, dtype=x.dtype)
    if noise_scale:
        z = torch.randn_like(z) * noise_scale
    for flow in flows:
        z = torch.flip(z, [1])
        if hasattr(flow, "num_bins"):
            z = _conv_flow_reverse(flow, z, mask, x)
        else:
            z = flow(z, mask, reverse=True)
    return z[:, :1]


def _conv_flow_reverse(
    flow: Any, z: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor
) -> torch.Tensor:
    """ConvFlow's reverse pass with the dense spline."""
    z0, z1 = torch.split(z, [flow.half_channels] * 2, 1)
    h = flow.pre(z0)
    h = flow.convs(h, mask, g=condition)
    h = flow.proj(h) * mask
    batch, channels, length = z0.shape
    h = h.reshape(batch, channels, -1, length).permute(0, 1, 3, 2)
    scale = math.sqrt(flow.hidden_channels)
    z1 = _inverse_spline(
        z1,
        h[..., : flow.num_bins] / scale,
        h[..., flow.num_bins : 2 * flow.num_bins] / scale,
        h[..., 2 * flow.num_bins :],
        float(flow.tail_bound),
    )
    return torch.cat([z0, z1], 1) * mask


# Coqui's (nflows') smallest bin width, height and derivative.
_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3


def _inverse_spline(
    inputs: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    bound: float,
) -> torch.Tensor:
    """Coqui's ``unconstrained_rational_quadratic_spline(inverse=True)`` with linear tails,
    computed for every element and then selected (``torch.where``), where Coqui picks the
    elements inside ``[-bound, bound]`` by boolean indexing and checks the range on the
    host: the same values, with shapes that do not depend on the data."""
    inside = (inputs >= -bound) & (inputs <= bound)
    clamped = inputs.clamp(-bound, bound)
    constant = math.log(math.exp(1 - _MIN_DERIVATIVE) - 1)
    derivatives = F.pad(derivatives, pad=(1, 1), value=constant)
    bins = widths.shape[-1]

    def edges(unnormalized: torch.Tensor) -> torch.Tensor:
        sizes = _MIN_BIN + (1 - _MIN_BIN * bins) * F.softmax(unnormalized, dim=-1)
        cumulative = F.pad(torch.cumsum(sizes, dim=-1), pad=(1, 0), value=0.0)
        cumulative = 2 * bound * cumulative - bound
        # Pinned to the bounds exactly, as Coqui does, against rounding in the sum.
        first = torch.full_like(cumulative[..., :1], -bound)
        last = torch.full_like(cumulative[..., :1], bound)
        return torch.cat([first, cumulative[..., 1:-1], last], dim=-1)

    cumwidths = edges(widths)
    cumheights = edges(heights)
    bin_widths = cumwidths[..., 1:] - cumwidths[..., :-1]
    bin_heights = cumheights[..., 1:] - cumheights[..., :-1]
    slopes = _MIN_DERIVATIVE + F.softplus(derivatives)

    # Coqui's searchsorted: the last edge nudged up so that the bound itself is inside.
    search = torch.cat([cumheights[..., :-1], cumheights[..., -1:] + 1e-6], dim=-1)
    index = (torch.sum(clamped[..., None] >= search, dim=-1) - 1).clamp(0, bins - 1)[..., None]

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.gather(-1, index)[..., 0]

    input_cumwidths = pick(cumwidths)
    input_widths = pick(bin_widths)
    input_cumheights = pick(cumheights)
    input_delta = pick(bin_heights / bin_widths)
    input_slope = pick(slopes)
    input_slope_next = pick(slopes[..., 1:])
    input_heights = pick(bin_heights)

    shifted = clamped - input_cumheights
    bend = input_slope + input_slope_next - 2 * input_delta
    a = shifted * bend + input_heights * (input_delta - input_slope)
    b = input_heights * input_slope - shifted * bend
    c = -input_delta * shifted
    discriminant = (b.pow(2) - 4 * a * c).clamp_min(0)
    root = (2 * c) / (-b - torch.sqrt(discriminant))
    outputs = root * input_widths + input_cumwidths
    return torch.where(inside, outputs, inputs)


def _decode_masked(
    decoder: Any, latent: torch.Tensor, frame_lengths: torch.Tensor, speaker: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coqui's HifiganGenerator.forward with every convolution's input masked to each item's
    length: a padded item then sees the zeros it would see alone at its end."""
    lengths = frame_lengths
    mask = sequence_mask(lengths, latent.shape[2])
    out = decoder.conv_pre(latent)
    if speaker is not None and hasattr(decoder, "cond_layer"):
        out = out + decoder.cond_layer(speaker)
    for stage, upsample in enumerate(decoder.ups):
        out = upsample(F.leaky_relu(out, _LRELU_SLOPE) * mask)
        # A transposed convolution's output length, as torch computes it.
        lengths = (
            (lengths - 1) * upsample.stride[0] - 2 * upsample.padding[0] + upsample.kernel_size[0]
        )
        mask = sequence_mask(lengths, out.shape[2])
        if decoder.cond_in_each_up_layer:
            out = out + decoder.conds[stage](speaker)
        total: torch.Tensor | None = None
        for block in decoder.resblocks[
            stage * decoder.num_kernels : (stage + 1) * decoder.num_kernels
        ]:
            result = _resblock_masked(block, out, mask)
            total = result if total is None else total + result
        assert total is not None
        out = total / decoder.num_kernels
    out = decoder.conv_post(F.leaky_relu(out) * mask)
    return torch.tanh(out) * mask, lengths


def _resblock_masked(block: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ResBlock1 or ResBlock2, each convolution's input masked."""
    if hasattr(block, "convs1"):
        for first, second in zip(block.convs1, block.convs2, strict=True):
            inner = first(F.leaky_relu(x, _LRELU_SLOPE) * mask)
            x = second(F.leaky_relu(inner, _LRELU_SLOPE) * mask) + x
        return x
    for conv in block.convs:
        x = conv(F.leaky_relu(x, _LRELU_SLOPE) * mask) + x
    return x
