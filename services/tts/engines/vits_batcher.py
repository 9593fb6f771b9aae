"""Sentences from concurrent synthesis calls spoken by VITS in one forward pass.

Each engine call blocks on its own sentence; the calls that arrive within the batch window
(services.common.batcher) go through the model together, on whichever copy is free, and
each caller gets its own sentence's audio and durations back as soon as the pass ends, to
deliver on its own thread. A call that joins while a batch runs waits at most for that
batch: it goes in the next one, ahead of anything that arrives after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from services.common.batcher import Batcher
from services.tts.engines.model_copies import ModelCopies
from services.tts.engines.vits_runner import VitsRequest, VitsRunner, VitsSpeech

logger = logging.getLogger(__name__)


class VitsBatcher:
    """Batches VitsRequests over ``runners`` (one per model copy, each running one batch
    at a time) in batches of at most ``max_batch`` gathered over ``window_s``."""

    def __init__(
        self,
        runners: Sequence[VitsRunner],
        *,
        max_batch: int,
        window_s: float,
        on_batch: Callable[[Sequence[VitsRequest]], None] | None = None,
    ) -> None:
        self._runners = ModelCopies(runners)
        self._batcher: Batcher[VitsRequest, VitsSpeech] = Batcher(
            self._run,
            max_batch=max_batch,
            window_s=window_s,
            workers=len(runners),
            name="vits-batch",
            on_batch=on_batch,
        )

    @property
    def waiting(self) -> int:
        """Sentences queued for a batch that has not started yet."""
        return self._batcher.waiting

    def submit(self, request: VitsRequest) -> Future[VitsSpeech]:
        """Queue ``request`` for the next batch; its future holds its speech or error."""
        return self._batcher.submit(request)

    def speak(self, request: VitsRequest) -> VitsSpeech:
        """``request``'s speech, made in a batch with whatever else arrives (blocking)."""
        return self.submit(request).result()

    def warm_up(self, template: VitsRequest) -> bool:
        """Capture or compile every bucket shape on every copy, then speak ``template``
        alone on each; False when a copy made no audio or audio that is not finite."""
        for runner in self._runners.all:
            shapes = runner.warm_up(template)
            if shapes:
                logger.info("VITS copy warmed up %d bucket shapes", shapes)
            [speech] = runner.run([template])
            if not speech.audio.size or not np.isfinite(speech.audio).all():
                return False
        return True

    def close(self) -> None:
        """Fail the sentences still waiting and stop the batch threads."""
        if not self._batcher.close():
            logger.warning("VITS batch threads still busy at close")

    def _run(self, requests: Sequence[VitsRequest]) -> list[VitsSpeech]:
        with self._runners.borrow() as runner:
            return runner.run(requests)
