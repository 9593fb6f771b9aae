"""Copies of one loaded model, each running one synthesis at a time (piper's sessions,
coqui's instances): more copies, more sentences in parallel, at the memory of each."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np

from services.tts.engines.base import ChunkSink, PcmChunk, collecting_sink

CopyT = TypeVar("CopyT")


class ModelCopies(Generic[CopyT]):
    """A fixed set of copies; ``borrow`` lends an idle one, blocking while all are busy."""

    def __init__(self, copies: Sequence[CopyT]) -> None:
        self.all: tuple[CopyT, ...] = tuple(copies)
        self._idle: queue.Queue[CopyT] = queue.Queue()
        for copy in self.all:
            self._idle.put(copy)

    @contextmanager
    def borrow(self) -> Iterator[CopyT]:
        """An idle copy for the length of the block."""
        copy = self._idle.get()
        try:
            yield copy
        finally:
            self._idle.put(copy)

    def warm_up(self, text: str, speak: Callable[[CopyT, str, ChunkSink], None]) -> bool:
        """Speak ``text`` on every copy, so that no request pays for a first run; False
        when a copy made no audio, or audio that is not finite (better unready than
        serving noise)."""
        for copy in self.all:
            pieces: list[PcmChunk] = []
            speak(copy, text, collecting_sink(pieces))
            if not pieces or not all(np.isfinite(piece).all() for piece in pieces):
                return False
        return True
