"""How a VITS copy runs its two inference stages: eagerly, compiled, or as captured CUDA graphs.

On a GPU, VITS is bound by kernel launches, not by arithmetic: about 1,900 small kernels
per sentence, the GPU idle between them (an H200: 166 ms wall, 6.4 ms of kernel time).
Replaying a captured CUDA graph launches all of a stage's kernels at once. A graph holds
fixed shapes, so inputs are padded up to a few bucket sizes (batch size, tokens, frames);
the masks of services.tts.engines.vits_inference make the padding change nothing. Every
bucket's graph is captured (or compiled) in the warm-up, before the server is SERVING; a
batch too large for every bucket runs eagerly, unpadded.

Modes (``CHORUS_COQUI_COMPILE``):

* ``off``: eager PyTorch, no padding;
* ``cuda-graphs``: ``torch.cuda.CUDAGraph`` captured per bucket shape (CUDA only): the
  capture costs about one run per shape, so warming up many buckets takes seconds;
* ``reduce-overhead``: ``torch.compile(mode="reduce-overhead")``, Inductor's fused
  kernels replayed as CUDA graphs on CUDA (plain Inductor code on the CPU); compiles once
  per bucket shape, which takes tens of seconds each;
* ``trace``: TorchDynamo captures each stage as one whole graph and runs it eagerly (its
  ``eager`` backend): no speed-up; it checks, cheaply and on the CPU too, that the stages
  hold no host synchronisation or data-dependent shape (tests use it);
* ``auto``: ``cuda-graphs`` on CUDA, ``off`` on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from services.tts.engines.vits_inference import TextSide, acoustic_side, text_side

COMPILE_MODES = ("auto", "off", "cuda-graphs", "reduce-overhead", "trace")
"""The values of the compile setting (see the module docstring)."""


def resolve_compile_mode(setting: str, device: str) -> str:
    """The mode to run for ``setting`` on ``device``: ``auto`` made concrete.

    ValueError for a mode not in COMPILE_MODES, and for ``cuda-graphs`` off CUDA.
    """
    if setting not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, not {setting!r}")
    on_cuda = device.startswith("cuda")
    if setting == "auto":
        return "cuda-graphs" if on_cuda else "off"
    if setting == "cuda-graphs" and not on_cuda:
        raise ValueError(f"CHORUS_COQUI_COMPILE=cuda-graphs needs a CUDA device, not {device!r}")
    return setting


def parse_sizes(text: str, setting: str) -> tuple[int, ...]:
    """``"64,128,256"`` as sorted distinct positive sizes; ValueError naming ``setting``."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"{setting} must be a comma-separated list of sizes, not {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"{setting} must list positive sizes, not {text!r}")
    return tuple(sizes)


@dataclass(frozen=True)
class Buckets:
    """The shapes inputs are padded to: batch sizes, tokens per item, frames per item."""

    batch: tuple[int, ...]
    tokens: tuple[int, ...]
    frames: tuple[int, ...]

    @staticmethod
    def batch_sizes(max_batch: int) -> tuple[int, ...]:
        """Powers of two below ``max_batch``, and ``max_batch``: at most half of a padded
        batch is padding."""
        sizes = {max_batch}
        size = 1
        while size < max_batch:
            sizes.add(size)
            size *= 2
        return tuple(sorted(sizes))

    @staticmethod
    def fit(sizes: Sequence[int], needed: int) -> int | None:
        """The smallest of ``sizes`` that holds ``needed``; None when none does."""
        return next((size for size in sizes if size >= needed), None)


class Stages(Protocol):
    """Runs the two inference stages of one model copy (vits_inference's functions)."""

    pads: bool
    """Whether inputs must be padded to bucket shapes (a bucketed mode)."""

    def text(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        length_scales: torch.Tensor,
        speaker: torch.Tensor | None,
        language: torch.Tensor | None,
    ) -> TextSide:
        """``text_side`` on these inputs; its outputs are valid until the next call."""

    def acoustic(
        self, text: TextSide, frame_lengths: torch.Tensor, frames: int, speaker: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``acoustic_side`` on these inputs; its outputs are valid until the next call."""


class EagerStages:
    """The stages as plain PyTorch calls."""

    pads = False

    def __init__(self, model: Any) -> None:
        self._model = model

    def text(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        length_scales: torch.Tensor,
        speaker: torch.Tensor | None,
        language: torch.Tensor | None,
    ) -> TextSide:
        """``text_side``, eagerly."""
        return text_side(self._model, tokens, token_lengths, length_scales, speaker, language)

    def acoustic(
        self, text: TextSide, frame_lengths: torch.Tensor, frames: int, speaker: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``acoustic_side``, eagerly."""
        return acoustic_side(self._model, text, frame_lengths, frames, speaker)


class CompiledStages:
    """The stages through ``torch.compile``, one specialisation per bucket shape."""

    pads = True

    def __init__(self, model: Any, mode: str, shapes: int) -> None:
        self._model = model
        # Dynamo keeps at most `recompile_limit` specialisations of a function before it
        # falls back to eager: one per bucket shape, per model copy, must fit.
        self._limit = max(int(torch._dynamo.config.recompile_limit), 4 * shapes)
        options: dict[str, Any] = (
            {"backend": "eager", "fullgraph": True}
            if mode == "trace"
            else {"mode": "reduce-overhead", "fullgraph": False}
        )

        def text(
            tokens: torch.Tensor,
            token_lengths: torch.Tensor,
            length_scales: torch.Tensor,
            speaker: torch.Tensor | None,
            language: torch.Tensor | None,
        ) -> TextSide:
            return text_side(model, tokens, token_lengths, length_scales, speaker, language)

        def acoustic(
            text: TextSide, frame_lengths: torch.Tensor, frames: int, speaker: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return acoustic_side(model, text, frame_lengths, frames, speaker)

        self._text = torch.compile(text, dynamic=False, **options)
        self._acoustic = torch.compile(acoustic, dynamic=False, **options)

    def text(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        length_scales: torch.Tensor,
        speaker: torch.Tensor | None,
        language: torch.Tensor | None,
    ) -> TextSide:
        """``text_side``, compiled for this shape on its first call."""
        with self._dynamo_settings():
            result: TextSide = self._text(tokens, token_lengths, length_scales, speaker, language)
        return result

    def acoustic(
        self, text: TextSide, frame_lengths: torch.Tensor, frames: int, speaker: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``acoustic_side``, compiled for this shape on its first call."""
        with self._dynamo_settings():
            result: tuple[torch.Tensor, torch.Tensor] = self._acoustic(
                text, frame_lengths, frames, speaker
            )
        return result

    @contextlib.contextmanager
    def _dynamo_settings(self) -> Iterator[None]:
        # Coqui's WaveNet slices by a number read from a CPU tensor: captured as a
        # symbolic integer instead of breaking the graph there.
        with torch._dynamo.config.patch(capture_scalar_outputs=True, recompile_limit=self._limit):
            yield


class _Graph:
    """One function captured as a CUDA graph over fixed input buffers."""

    def __init__(
        self,
        function: Callable[..., Any],
        inputs: Sequence[Any],
        pool: Any,
        precision: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        # Buffers the graph reads: each call copies its inputs into them. Tensors inside
        # a TextSide are buffers too; anything else (None) is fixed at capture.
        self._inputs = [_clone(value) for value in inputs]
        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        # Runs before capture, as CUDA graphs need: kernels chosen, memory allocated.
        with torch.cuda.stream(stream), precision():
            for _ in range(2):
                function(*self._inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA call (a metrics scrape) cannot spoil it.
        with (
            torch.cuda.graph(self._graph, pool=pool, capture_error_mode="thread_local"),
            precision(),
        ):
            self._outputs = function(*self._inputs)

    def __call__(self, *inputs: Any) -> Any:
        for buffer, value in zip(self._inputs, inputs, strict=True):
            _copy_into(buffer, value)
        self._graph.replay()
        return self._outputs


class CapturedStages:
    """The stages as CUDA graphs, one per bucket shape, all in one memory pool (a copy
    runs one batch at a time, so its graphs never run at once)."""

    pads = True

    def __init__(self, model: Any, precision: Callable[[], AbstractContextManager[Any]]) -> None:
        self._model = model
        self._precision = precision
        self._pool = torch.cuda.graph_pool_handle()
        self._text_graphs: dict[tuple[int, int], _Graph] = {}
        self._acoustic_graphs: dict[tuple[int, int, int], _Graph] = {}

    def text(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        length_scales: torch.Tensor,
        speaker: torch.Tensor | None,
        language: torch.Tensor | None,
    ) -> TextSide:
        """Replays the graph of this shape, capturing it on first use (the warm-up)."""
        key = (tokens.shape[0], tokens.shape[1])
        graph = self._text_graphs.get(key)
        inputs = (tokens, token_lengths, length_scales, speaker, language)
        if graph is None:
            graph = _Graph(self._text_function, inputs, self._pool, self._precision)
            self._text_graphs[key] = graph
        result: TextSide = graph(*inputs)
        return result

    def acoustic(
        self, text: TextSide, frame_lengths: torch.Tensor, frames: int, speaker: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replays the graph of this shape, capturing it on first use (the warm-up)."""
        batch, _, tokens = text.token_mask.shape
        key = (batch, tokens, frames)
        graph = self._acoustic_graphs.get(key)
        inputs = (text, frame_lengths, speaker)
        if graph is None:

            def run(text: TextSide, lengths: torch.Tensor, speaker: torch.Tensor | None) -> Any:
                return acoustic_side(self._model, text, lengths, frames, speaker)

            graph = _Graph(run, inputs, self._pool, self._precision)
            self._acoustic_graphs[key] = graph
        result: tuple[torch.Tensor, torch.Tensor] = graph(*inputs)
        return result

    @property
    def captured(self) -> int:
        """Graphs captured so far."""
        return len(self._text_graphs) + len(self._acoustic_graphs)

    def _text_function(self, *inputs: Any) -> TextSide:
        return text_side(self._model, *inputs)


def make_stages(
    mode: str, model: Any, precision: Callable[[], AbstractContextManager[Any]], shapes: int
) -> Stages:
    """The stages for a resolved ``mode`` (``resolve_compile_mode``) on one model copy;
    ``shapes`` is how many bucket shapes it will see."""
    if mode == "off":
        return EagerStages(model)
    if mode == "cuda-graphs":
        return CapturedStages(model, precision)
    return CompiledStages(model, mode, shapes)


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, TextSide):
        return TextSide(*(part.clone() for part in value))
    return value


def _copy_into(buffer: Any, value: Any) -> None:
    if isinstance(buffer, torch.Tensor):
        buffer.copy_(value)
    elif isinstance(buffer, TextSide):
        for part, new in zip(buffer, value, strict=True):
            part.copy_(new)
