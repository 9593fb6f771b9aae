"""Continuous batching of XTTS's GPT decoding across concurrent streams.

Coqui's ``inference_stream`` decodes one sentence at a time, so concurrent requests on one
model copy wait for each other, while a step of the GPT costs about the same for eight
streams as for one. An ``XttsDecoder`` owns one copy's GPT and runs one loop on its own
thread; every turn of the loop:

1. drops the streams whose consumer cancelled, freeing their KV-cache slots;
2. lets waiting streams JOIN, as long as slots are free: each stream's prompt
   (conditioning latents and text, as coqui builds it) is prefilled into its slot by a
   forward of its own, which also gives the stream's first token;
3. runs ONE batched step of the GPT for every active stream (each row its own last
   token at its own position, services.tts.engines.xtts_gpt) and hands each stream its
   new token and latent;
4. lets a stream LEAVE on its stop token or its token limit, freeing its slot.

A stream that joins is therefore decoded at the very next step, and one that leaves
takes nothing from the others. Each stream samples with its own ``torch.Generator``, so
its tokens do not depend on its batch mates. Tokens and latents go to the stream's
consumer through a queue; the consumer (the engine's calling thread) turns latents into
audio with the copy's HiFi-GAN exactly as ``inference_stream`` does (``xtts_audio``). A
consumer that stops reading, or fails, cancels its stream; the others go on.

``on_event`` (for tests and metrics) sees, on the loop thread, every prefill, step and
leave with the ids of the streams in it; it may open new streams.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.nn import functional

from services.tts.engines.xtts_gpt import PROMPT_PLACEHOLDER_ID, XttsGpt, XttsSampling, sample

logger = logging.getLogger(__name__)

EventKind = Literal["prefill", "step", "leave"]


@dataclass(frozen=True)
class DecoderEvent:
    """Something the loop did: a ``prefill`` of one joining stream, a ``step`` of the
    active streams (ids in slot order), or a ``leave`` of one stream with its reason
    (``stop``, ``length``, ``cancelled`` or ``error``)."""

    kind: EventKind
    streams: tuple[int, ...]
    reason: str = ""


class DecoderClosed(RuntimeError):
    """The decoder was closed before the stream finished."""


@dataclass(frozen=True)
class _Token:
    token: int
    latent: torch.Tensor


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


class XttsStream:
    """One stream's tokens as the decoder makes them; iterate for ``(token, latent)``.

    Iteration ends after the stop token (which is yielded, as coqui yields it) or the
    token limit, and raises the error the stream failed with, if any. ``cancel`` (any
    thread) makes the decoder drop the stream before its next step.
    """

    def __init__(self, stream_id: int, wake: Callable[[], None]) -> None:
        self.id = stream_id
        self._items: queue.SimpleQueue[_Token | _End] = queue.SimpleQueue()
        self._wake = wake
        self.cancelled = False
        self.finished = False

    def cancel(self) -> None:
        """Leave the batch (a finished stream stays as it is)."""
        if not self.finished:
            self.cancelled = True
            self._wake()

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        while True:
            item = self._items.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item.token, item.latent

    def _put(self, token: int, latent: torch.Tensor) -> None:
        self._items.put(_Token(token, latent))

    def _end(self, error: BaseException | None = None) -> None:
        if not self.finished:
            self.finished = True
            self._items.put(_End(error))


@dataclass
class _Request:
    stream: XttsStream
    cond_latents: torch.Tensor
    text_tokens: torch.Tensor
    sampling: XttsSampling
    generator: torch.Generator
    max_new_tokens: int


@dataclass
class _Active:
    request: _Request
    slot: int
    made: int = 0
    last: int = 0
    seen: set[int] = field(default_factory=set)


class XttsDecoder:
    """Decodes up to ``max_streams`` XTTS streams at once on one model copy.

    ``model`` is a loaded, eval-mode ``TTS.tts.models.xtts.Xtts``; while the decoder runs
    its GPT is the decoder's (its HiFi-GAN stays free for the consumers). ``precision``
    makes the context the GPT runs in on the loop thread (autocast is per thread);
    ``cache_dtype`` is the KV cache's (default: the GPT's weights').
    """

    def __init__(
        self,
        model: Any,
        *,
        max_streams: int,
        precision: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
        cache_dtype: torch.dtype | None = None,
        on_event: Callable[[DecoderEvent], None] | None = None,
        name: str = "xtts-decoder",
    ) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, not {max_streams}")
        self.model = model
        self.max_streams = max_streams
        self._gpt = XttsGpt(model.gpt, slots=max_streams, cache_dtype=cache_dtype)
        self._precision = precision
        self._on_event = on_event
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._joining: deque[_Request] = deque()
        self._active: dict[int, _Active] = {}  # by slot
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def device(self) -> torch.device:
        """Where the GPT (and its cache) lives."""
        return self._gpt.device

    @property
    def max_new_tokens(self) -> int:
        """The most tokens a stream makes (coqui's limit for the model)."""
        return self._gpt.max_new_tokens

    @property
    def load(self) -> int:
        """Streams decoding or waiting for a slot."""
        with self._changed:
            return len(self._active) + len(self._joining)

    def open(
        self,
        cond_latents: torch.Tensor,
        text_tokens: torch.Tensor,
        *,
        sampling: XttsSampling | None = None,
        seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> XttsStream:
        """Queue a stream for ``text_tokens`` (``[1, n]`` ids) spoken with the speaker's
        ``cond_latents`` (``[1, m, model_dim]``); it joins at the next step with a free
        slot. ``seed`` seeds its sampling (None: a random seed); ``max_new_tokens`` caps
        its tokens below the model's limit. DecoderClosed after ``close``."""
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        if not 1 <= limit <= self.max_new_tokens:
            raise ValueError(f"max_new_tokens must be in 1..{self.max_new_tokens}, not {limit}")
        generator = torch.Generator(device=self._gpt.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        stream = XttsStream(next(self._ids), self._wake)
        request = _Request(
            stream, cond_latents, text_tokens, sampling or XttsSampling(), generator, limit
        )
        with self._changed:
            if self._closed:
                raise DecoderClosed("XTTS decoder closed")
            self._joining.append(request)
            self._changed.notify()
        return stream

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop the loop; streams not finished end with DecoderClosed. True if the loop
        thread ended within ``timeout_s``."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if threading.current_thread() is self._thread:  # from an on_event hook
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify()

    def _emit(self, kind: EventKind, streams: Sequence[int], reason: str = "") -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(DecoderEvent(kind, tuple(streams), reason))
        except Exception:
            logger.exception("XTTS decoder event hook failed")

    def _loop(self) -> None:
        try:
            with torch.inference_mode(), self._precision():
                while self._turn():
                    pass
        except BaseException as error:  # the loop itself broke: fail everything it holds
            logger.exception("XTTS decoder loop failed")
            self._fail_all(error)
            raise
        self._fail_all(DecoderClosed("XTTS decoder closed"))

    def _turn(self) -> bool:
        """One turn: leaves, joins, one step. False once closed."""
        with self._changed:
            while not self._closed and not self._active and not self._joining:
                self._changed.wait()
            if self._closed:
                return False
            cancelled = [a for a in self._active.values() if a.request.stream.cancelled]
            # A stream cancelled while it waited for a slot ends without one.
            for request in [r for r in self._joining if r.stream.cancelled]:
                self._joining.remove(request)
                request.stream._end()
            joining: list[_Request] = []
            free = self._gpt.cache.free + len(cancelled)
            while self._joining and len(joining) < free:
                joining.append(self._joining.popleft())
        for active in cancelled:
            self._leave(active, "cancelled")
        for request in joining:
            self._join(request)
        if self._active:
            self._step()
        return True

    def _join(self, request: _Request) -> None:
        """Prefill ``request``'s prompt into a free slot and give it its first token."""
        slot = self._gpt.cache.take()
        active = _Active(request, slot, seen={PROMPT_PLACEHOLDER_ID, self._gpt.start_token})
        with self._changed:
            self._active[slot] = active
        try:
            prompt = self._gpt.prompt(request.cond_latents, request.text_tokens)
            latent = self._gpt.prefill(slot, prompt)
            self._emit("prefill", [request.stream.id])
            [token] = self._sample([active], latent[None])
        except Exception as error:
            logger.warning("XTTS stream %d failed to join: %s", request.stream.id, error)
            self._leave(active, "error", error)
            return
        self._deliver(active, token, latent)

    def _step(self) -> None:
        """One batched forward over the active slots, one token to each stream."""
        active = [self._active[slot] for slot in sorted(self._active)]
        top = self._gpt.cache.top
        tokens = [0] * top
        positions = [0] * top
        for item in active:
            tokens[item.slot] = item.last
            positions[item.slot] = item.made
        device = self._gpt.device
        try:
            latents = self._gpt.step(
                top,
                torch.tensor(tokens, dtype=torch.long, device=device),
                torch.tensor(positions, dtype=torch.long, device=device),
            )
            self._emit("step", [item.request.stream.id for item in active])
            rows = latents[[item.slot for item in active]]
            chosen = self._sample(active, rows)
        except Exception as error:
            logger.exception("XTTS decoding step failed for %d stream(s)", len(active))
            for item in active:
                self._leave(item, "error", error)
            return
        for item, token, latent in zip(active, chosen, rows, strict=True):
            self._deliver(item, token, latent)

    def _sample(self, active: Sequence[_Active], latents: torch.Tensor) -> list[int]:
        logits = self._gpt.logits(latents)
        seen = torch.zeros(logits.shape, dtype=torch.bool)
        for row, item in enumerate(active):
            seen[row, list(item.seen)] = True
        return sample(
            logits,
            seen.to(logits.device),
            [item.request.sampling for item in active],
            [item.request.generator for item in active],
        )

    def _deliver(self, active: _Active, token: int, latent: torch.Tensor) -> None:
        active.made += 1
        active.last = token
        active.seen.add(token)
        active.request.stream._put(token, latent)
        if token == self._gpt.stop_token:
            self._leave(active, "stop")
        elif active.made >= active.request.max_new_tokens:
            self._leave(active, "length")

    def _leave(self, active: _Active, reason: str, error: BaseException | None = None) -> None:
        with self._changed:
            if self._active.get(active.slot) is not active:
                return
            del self._active[active.slot]
        self._gpt.cache.release(active.slot)
        active.request.stream._end(error)
        self._emit("leave", [active.request.stream.id], reason)

    def _fail_all(self, error: BaseException) -> None:
        with self._changed:
            self._closed = True
            held = list(self._active.values())
            waiting = list(self._joining)
            self._joining.clear()
        for active in held:
            self._leave(active, "error", error)
        for request in waiting:
            request.stream._end(error)


class XttsDecoders:
    """One XttsDecoder per model copy; a stream goes to the least loaded."""

    def __init__(self, decoders: Sequence[XttsDecoder]) -> None:
        self.all = tuple(decoders)

    def least_loaded(self) -> XttsDecoder:
        """The decoder with the fewest streams decoding or waiting."""
        return min(self.all, key=lambda decoder: decoder.load)

    def for_model(self, model: Any) -> XttsDecoder:
        """The decoder that runs ``model``'s GPT."""
        return next(decoder for decoder in self.all if decoder.model is model)

    def close(self) -> bool:
        """Close every decoder; True if all their threads ended."""
        return all([decoder.close() for decoder in self.all])


def xtts_audio(
    decoder: XttsDecoder,
    text: str,
    language: str,
    gpt_cond_latent: torch.Tensor,
    speaker_embedding: torch.Tensor,
    *,
    speed: float = 1.0,
    sampling: XttsSampling | None = None,
    seed: int | None = None,
) -> Generator[torch.Tensor, None, None]:
    """Audio chunks of ``text`` as coqui's ``Xtts.inference_stream`` makes them (one
    sentence, no text splitting), its GPT tokens decoded by ``decoder`` in a batch with
    other streams. Call under ``torch.inference_mode()``, like ``inference_stream``."""
    stream = open_stream(decoder, text, language, gpt_cond_latent, sampling=sampling, seed=seed)
    return stream_audio(decoder.model, stream, speaker_embedding, speed=speed)


def open_stream(
    decoder: XttsDecoder,
    text: str,
    language: str,
    gpt_cond_latent: torch.Tensor,
    *,
    sampling: XttsSampling | None = None,
    seed: int | None = None,
) -> XttsStream:
    """Open a stream on ``decoder`` for ``text`` read as coqui's ``inference_stream``
    reads one sentence (stripped, lower case, ``language`` without its country code).
    ValueError for a text longer than the model takes."""
    model = decoder.model
    language = language.split("-")[0]
    sentence = text.strip().lower()
    text_tokens = torch.IntTensor(model.tokenizer.encode(sentence, lang=language)).unsqueeze(0)
    if text_tokens.shape[-1] >= model.args.gpt_max_text_tokens:
        raise ValueError(
            f"XTTS speaks at most {model.args.gpt_max_text_tokens - 1} text tokens at once, "
            f"not {text_tokens.shape[-1]}"
        )
    device = decoder.device
    return decoder.open(
        gpt_cond_latent.to(device), text_tokens.to(device), sampling=sampling, seed=seed
    )


def stream_audio(
    model: Any,
    stream: XttsStream,
    speaker_embedding: torch.Tensor,
    *,
    speed: float = 1.0,
    stream_chunk_size: int = 20,
    overlap_wav_len: int = 1024,
) -> Generator[torch.Tensor, None, None]:
    """``stream``'s latents through ``model``'s HiFi-GAN, on the calling thread, chunked
    and cross-faded as ``Xtts.inference_stream`` does (the same chunk size, overlap,
    speed stretch and ``handle_chunks``). Closing the generator early, or an error while
    it runs, cancels the stream."""
    length_scale = 1.0 / max(speed, 0.05)
    speaker_embedding = speaker_embedding.to(model.device)
    try:
        tokens = iter(stream)
        last_tokens: list[int] = []
        all_latents: list[torch.Tensor] = []
        wav_gen_prev = None
        wav_overlap = None
        is_end = False
        while not is_end:
            try:
                token, latent = next(tokens)
                last_tokens.append(token)
                all_latents.append(latent)
            except StopIteration:
                is_end = True
            if is_end or (stream_chunk_size > 0 and len(last_tokens) >= stream_chunk_size):
                gpt_latents = torch.stack(all_latents, dim=0)[None, :]
                if length_scale != 1.0:
                    gpt_latents = functional.interpolate(
                        gpt_latents.transpose(1, 2), scale_factor=length_scale, mode="linear"
                    ).transpose(1, 2)
                wav_gen = model.hifigan_decoder(gpt_latents, g=speaker_embedding)
                wav_chunk, wav_gen_prev, wav_overlap = model.handle_chunks(
                    wav_gen.squeeze(), wav_gen_prev, wav_overlap, overlap_wav_len, is_final=is_end
                )
                last_tokens = []
                yield wav_chunk
    finally:
        stream.cancel()
