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
class Durations:
    """How long each input id of a piece lasts, as the model decided it."""

    frames: npt.NDArray[np.int64]
    """Frames of each input id, in order."""
    frame_samples: int
    """Samples a frame makes (the decoder's hop: 256 for Piper's voices)."""


@dataclass(frozen=True)
class Window:
    """A stretch of one piece's audio."""

    audio: PcmChunk
    first: bool
    last: bool
    durations: Durations | None = None
    """With a piece's first window, when the run was asked for timings and the model has
    them."""


def window_bounds(frames: int, lead: bool) -> list[tuple[int, int]]:
    """(start, end) frames of each window of a piece of ``frames`` frames, in order: two
    for a sentence's first piece (``lead``) long enough, else one."""
    if lead and frames - FIRST_WINDOW_FRAMES >= MIN_REST_FRAMES:
        return [(0, FIRST_WINDOW_FRAMES), (FIRST_WINDOW_FRAMES, frames)]
    return [(0, frames)]


class PiperRunner:
    """A Piper model's sessions, run by one thread at a time: the front and the decoder
    of a cut model, or the whole model alone (``decoder`` None)."""

    def __init__(self, front: Any, decoder: Any = None, durations: str | None = None) -> None:
        """``front`` and ``decoder`` are ONNX Runtime sessions. The front's outputs are the
        decoder's inputs, its first the latent frames [1, channels, frames], cut into
        windows; the others go to every window whole, except ``durations``, the output
        with each input id's frames (of the front, or of the whole model)."""
        self._front = front
        self._decoder = decoder
        self._durations = durations
        self._outputs = [output.name for output in front.get_outputs() if output.name != durations]

    @property
    def timed(self) -> bool:
        """Whether runs can hand over the model's durations."""
        return self._durations is not None

    @property
    def session(self) -> Any:
        """The session that takes the model's inputs."""
        return self._front

    @property
    def windowed(self) -> bool:
        """Whether pieces are decoded a window at a time."""
        return self._decoder is not None

    def run(
        self, feeds: Mapping[str, npt.NDArray[Any]], lead: bool, timed: bool = False
    ) -> Iterator[Window]:
        """One piece's audio as the model makes it: its windows in order, at least one;
        two for a sentence's first piece (``lead``). Stop iterating to stop decoding.
        ``timed``: the first window carries the durations, when the model has them."""
        fetch = self._outputs
        timed = timed and self._durations is not None
        if timed:
            fetch = [*self._outputs, self._durations]
        made, *rest = self._front.run(fetch, dict(feeds))
        sides, durations = (rest[:-1], rest[-1]) if timed else (rest, None)
        frames_of = None if durations is None else np.rint(durations).astype(np.int64).reshape(-1)
        if self._decoder is None:
            audio = np.asarray(made, dtype=np.float32).reshape(-1)
            timing = None
            if frames_of is not None:
                frame_samples = audio.size // max(1, int(frames_of.sum()))
                timing = Durations(frames_of, frame_samples)
            yield Window(audio, True, True, timing)
            return
        latent, *side_names = self._outputs
        side_feeds = dict(zip(side_names, sides, strict=True))
        frames = made.shape[2]
        if frames == 0:
            timing = None if frames_of is None else Durations(frames_of, 0)
            yield Window(np.zeros(0, dtype=np.float32), True, True, timing)
            return
        bounds = window_bounds(frames, lead)
        for index, (start, end) in enumerate(bounds):
            low, high = max(0, start - CONTEXT_FRAMES), min(frames, end + CONTEXT_FRAMES)
            [decoded] = self._decoder.run(None, {latent: made[:, :, low:high], **side_feeds})
            samples = np.asarray(decoded, dtype=np.float32).reshape(-1)
            per_frame = samples.size // (high - low)
            audio = samples[(start - low) * per_frame : (end - low) * per_frame]
            timing = None
            if index == 0 and frames_of is not None:
                timing = Durations(frames_of, per_frame)
            yield Window(audio, index == 0, index == len(bounds) - 1, timing)
