"""One VITS model copy speaking a batch of sentences at once.

Each sentence is tokenised on its caller's thread (``vits_request``); the runner pads the
batch (to bucket sizes when its stages run compiled or captured), runs the two stages of
services.tts.engines.vits_inference, and cuts each item's own audio and durations back
out, so each sentence comes back exactly as if it had been spoken alone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from services.tts.engines.vits_graphs import Buckets, EagerStages, Stages
from services.tts.engines.vits_inference import conditioning, samples_per_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VitsRequest:
    """One sentence, tokenised, with the voice and speed to say it with."""

    text: str
    tokens: tuple[int, ...]
    length_scale: float
    speaker_id: int | None = None
    d_vector: tuple[float, ...] | None = None
    language_id: int | None = None


@dataclass(frozen=True)
class VitsSpeech:
    """One sentence's audio, and the frames each of its tokens lasted."""

    audio: npt.NDArray[np.float32]
    frames_per_token: npt.NDArray[np.float32]
    tokens: tuple[int, ...]


def vits_request(
    model: Any, text: str, speaker: str | None, language: str | None, rate: float
) -> VitsRequest:
    """``text`` as ``model`` reads it (Coqui's tokenizer, speaker and language ids), said
    at ``rate``. Reads the model only: safe on any thread, beside a running batch."""
    tokens = tuple(int(token) for token in model.tokenizer.text_to_ids(text, language=language))
    speaker_id, d_vector = model._get_speaker_id_or_dvector(speaker)
    language_id = model._get_language_id(language)
    return VitsRequest(
        text=text,
        tokens=tokens,
        length_scale=float(model.args.length_scale) / rate,
        speaker_id=None if speaker_id is None else int(speaker_id.reshape(-1)[0]),
        d_vector=None if d_vector is None else tuple(d_vector.reshape(-1).tolist()),
        language_id=language_id,
    )


class VitsRunner:
    """Runs batches of VitsRequests on one model copy, one batch at a time."""

    def __init__(
        self,
        model: Any,
        stages: Stages,
        buckets: Buckets,
        precision: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        self.model = model
        self.buckets = buckets
        self._stages = stages
        self._eager = EagerStages(model)
        self._precision = precision
        self._hop = samples_per_frame(model)
        limit = getattr(model, "max_inference_len", None)
        self._max_frames: int | None = int(limit) if limit else None

    def run(self, requests: Sequence[VitsRequest]) -> list[VitsSpeech]:
        """Each request's speech, in order, from one pass of the model over all of them."""
        if not requests:
            return []
        with torch.inference_mode(), self._precision():
            return self._run(requests)

    def warm_up(self, template: VitsRequest) -> int:
        """Run every bucket shape once (capturing or compiling it) with ``template``'s
        voice; the number of shapes. Nothing when the stages take any shape."""
        if not self._stages.pads:
            return 0
        shapes = 0
        with torch.inference_mode(), self._precision():
            for batch in self.buckets.batch:
                for tokens in self.buckets.tokens:
                    filler = dataclasses.replace(template, tokens=template.tokens[:1] * tokens)
                    inputs = self._inputs([filler] * batch, batch, tokens)
                    text = self._stages.text(*inputs)
                    shapes += 1
                    speaker = inputs[3]
                    for frames in self.buckets.frames:
                        lengths = torch.full((batch,), frames, device=self.model.device)
                        self._stages.acoustic(text, lengths, frames, speaker)
                        shapes += 1
        return shapes

    def _run(self, requests: Sequence[VitsRequest]) -> list[VitsSpeech]:
        longest = max(len(request.tokens) for request in requests)
        stages: Stages = self._stages
        batch, tokens = len(requests), longest
        if stages.pads:
            batch_bucket = Buckets.fit(self.buckets.batch, batch)
            token_bucket = Buckets.fit(self.buckets.tokens, tokens)
            if batch_bucket is None or token_bucket is None:
                # Larger than every bucket: this batch runs eagerly, unpadded.
                stages = self._eager
            else:
                batch, tokens = batch_bucket, token_bucket
        inputs = self._inputs(requests, batch, tokens)
        speaker = inputs[3]
        text = stages.text(*inputs)
        # The one synchronisation: the number of frames sets the output's shape.
        lengths = torch.clamp_min(text.frames_per_token.sum(dim=(1, 2)), 1).long()
        if self._max_frames is not None:
            lengths = lengths.clamp_max(self._max_frames)
        lengths[len(requests) :] = 1  # padding rows: one frame, whatever they predicted
        frames = int(lengths.max().cpu())
        if stages.pads:
            frame_bucket = Buckets.fit(self.buckets.frames, frames)
            if frame_bucket is None:
                # Too long for every frame bucket: this batch's second stage runs eagerly.
                stages = self._eager
            else:
                frames = frame_bucket
        audio, sample_counts = stages.acoustic(text, lengths, frames, speaker)
        waves = audio[: len(requests), 0].float().cpu().numpy()
        counts = sample_counts[: len(requests)].cpu().tolist()
        durations = text.frames_per_token[: len(requests), 0].float().cpu().numpy()
        return [
            VitsSpeech(
                audio=np.ascontiguousarray(waves[index, : counts[index]], dtype=np.float32),
                frames_per_token=durations[index, : len(request.tokens)].copy(),
                tokens=request.tokens,
            )
            for index, request in enumerate(requests)
        ]

    def _inputs(
        self, requests: Sequence[VitsRequest], batch: int, tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The stages' inputs for ``requests``, padded to ``batch`` rows of ``tokens``.
        Padding rows are one token long; their output is thrown away."""
        device = self.model.device
        padded = np.zeros((batch, tokens), dtype=np.int64)
        lengths = np.ones(batch, dtype=np.int64)
        scales = np.ones(batch, dtype=np.float32)
        for row, request in enumerate(requests):
            padded[row, : len(request.tokens)] = request.tokens
            lengths[row] = len(request.tokens)
            scales[row] = request.length_scale
        first = requests[0]
        rows = list(requests) + [first] * (batch - len(requests))
        speaker_ids = (
            torch.tensor([row.speaker_id for row in rows], device=device)
            if first.speaker_id is not None
            else None
        )
        d_vectors = (
            torch.tensor([row.d_vector for row in rows], dtype=torch.float32, device=device)
            if first.d_vector is not None
            else None
        )
        language_ids = (
            torch.tensor([row.language_id for row in rows], device=device)
            if first.language_id is not None
            else None
        )
        speaker, language = conditioning(self.model, speaker_ids, d_vectors, language_ids)
        return (
            torch.from_numpy(padded).to(device),
            torch.from_numpy(lengths).to(device),
            torch.from_numpy(scales).to(device),
            speaker,
            language,
        )
