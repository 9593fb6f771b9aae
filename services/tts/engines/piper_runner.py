"""Running a Piper model on one piece: phoneme ids in, audio out, the first 0.19 s early.

With the model cut before its decoder (services.tts.engines.piper_graph), the front makes
the piece's latent frames and the decoder decodes them. A sentence's first piece is
decoded in two windows: a short one, so that its first audio comes after a fraction of
its decoding, then the rest, decoded while that plays. Each window is decoded with
CONTEXT_FRAMES more on each side, which are dropped: beyond the decoder's reach (12 frames
for Piper's medium voices, measured: the windows then give the whole decode's samples to
1e-6), so the windows join seamlessly. Context costs decoding, so later pieces, made while
earlier audio plays, are decoded whole. A model that cannot be cut runs whole: one window
per piece.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.tts.engines.base import PcmChunk

FIRST_WINDOW_FRAMES = 16
"""Frames of a first piece's first window: 0.19 s of audio at 256 samples a frame."""

CONTEXT_FRAMES = 16
"""Frames decoded on each side of a window and dropped."""

MIN_REST_FRAMES = 32
"""Fewer frames after the first window are decoded with it: two windows would cost more
context than they save, and the piece's trailing silence (up to about 0.2 s after a
comma) then lies whole in its last window, where it is shaped."""


@dataclass(frozen=True)
class Window:
    """A stretch of one piece's audio."""

    audio: PcmChunk
    first: bool
    last: bool


def window_bounds(frames: int, lead: bool) -> list[tuple[int, int]]:
    """(start, end) frames of each window of a piece of ``frames`` frames, in order: two
    for a sentence's first piece (``lead``) long enough, else one."""
    if lead and frames - FIRST_WINDOW_FRAMES >= MIN_REST_FRAMES:
        return [(0, FIRST_WINDOW_FRAMES), (FIRST_WINDOW_FRAMES, frames)]
    return [(0, frames)]


class PiperRunner:
    """A Piper model's sessions, run by one thread at a time: the front and the decoder
    of a cut model, or the whole model alone (``decoder`` None)."""

    def __init__(self, front: Any, decoder: Any = None) -> None:
        """``front`` and ``decoder`` are ONNX Runtime sessions. The front's outputs are the
        decoder's inputs, its first the latent frames [1, channels, frames], cut into
        windows; the others go to every window whole."""
        self._front = front
        self._decoder = decoder
        self._outputs = [output.name for output in front.get_outputs()]

    @property
    def session(self) -> Any:
        """The session that takes the model's inputs."""
        return self._front

    @property
    def windowed(self) -> bool:
        """Whether pieces are decoded a window at a time."""
        return self._decoder is not None

    def run(self, feeds: Mapping[str, npt.NDArray[Any]], lead: bool) -> Iterator[Window]:
        """One piece's audio as the model makes it: its windows in order, at least one;
        two for a sentence's first piece (``lead``). Stop iterating to stop decoding."""
        made, *sides = self._front.run(self._outputs, dict(feeds))
        if self._decoder is None:
            yield Window(np.asarray(made, dtype=np.float32).reshape(-1), True, True)
            return
        latent, *side_names = self._outputs
        side_feeds = dict(zip(side_names, sides, strict=True))
        frames = made.shape[2]
        if frames == 0:
            yield Window(np.zeros(0, dtype=np.float32), True, True)
            return
        bounds = window_bounds(frames, lead)
        for index, (start, end) in enumerate(bounds):
            low, high = max(0, start - CONTEXT_FRAMES), min(frames, end + CONTEXT_FRAMES)
            [decoded] = self._decoder.run(None, {latent: made[:, :, low:high], **side_feeds})
            samples = np.asarray(decoded, dtype=np.float32).reshape(-1)
            per_frame = samples.size // (high - low)
            audio = samples[(start - low) * per_frame : (end - low) * per_frame]
            yield Window(audio, index == 0, index == len(bounds) - 1)
