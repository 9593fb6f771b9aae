"""The prosody pipelines: what one request does, transport-free.

Adjust is one worker job, ``adjust_job``: adjust, measure the pitch tracks, check the
confidence and decide whether the caller gets the result or its own audio back. The whole
sequence runs in one worker process (Praat and the check's numpy work hold the GIL, so
none of it runs on the event loop), and the in-process benchmark baseline calls the same
function. ``ProsodyPipeline`` is the service's side: it runs the jobs in the worker pool
under the request's time budget and records the stages the worker timed as spans.

Job functions are top-level and their arguments and results picklable, so that a
ProcessPool can run them.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from services.common.pcm import Samples
from services.common.process_pool import ProcessPool
from services.prosody.adjustment import AdjustParams, adjust
from services.prosody.analysis import ProsodyAnalysis, analyze
from services.prosody.confidence import ConfidenceReport, assess
from services.prosody.pitch import pitch_track
from services.prosody.stages import Stage, record_spans, timed


@dataclass(frozen=True)
class AdjustSpec:
    """A validated Adjust request: what to change, and how to judge the result."""

    params: AdjustParams
    check_confidence: bool
    min_confidence: float  # below this score the caller gets its own audio back
    keep_low_confidence: bool = False  # ... unless it asked for the result anyway


@dataclass(frozen=True)
class AdjustOutcome:
    """What an Adjust request came to.

    ``samples`` is the adjusted audio, or None when the caller gets its own audio back
    (``fallback_reason`` says why). ``confidence`` is None when the check was skipped or
    never ran. ``timed_out`` marks an answer given because the time budget ran out: the
    work was not done, so the answer says nothing about the request and is not cached.
    """

    samples: Samples | None
    limiter_gain_db: float
    confidence: ConfidenceReport | None
    fallback_reason: str = ""
    timed_out: bool = False
    stages: tuple[Stage, ...] = ()
    worker_pid: int = 0


@dataclass(frozen=True)
class AnalyzeOutcome:
    """What Analyze measured in the worker."""

    analysis: ProsodyAnalysis
    stages: tuple[Stage, ...]
    worker_pid: int


def adjust_job(samples: Samples, sample_rate: int, spec: AdjustSpec) -> AdjustOutcome:
    """Adjust ``samples``, check the result (unless skipped) and decide the fallback.

    The original's pitch track comes free with the Manipulation; the result's is measured
    here (stage ``prosody.pitch_track``), then the check (``prosody.confidence``). A score
    below ``spec.min_confidence`` gives the caller its own audio back, unless it asked to
    keep low-confidence results. Raises ValueError for an empty array.
    """
    result = adjust(samples, sample_rate, spec.params)
    stages = list(result.stages)
    confidence = None
    if spec.check_confidence:
        with timed("prosody.pitch_track", stages):
            before = result.original_pitch_track
            if before is None:
                before = pitch_track(samples, sample_rate)
            after = pitch_track(result.samples, sample_rate)
        with timed("prosody.confidence", stages):
            confidence = assess(samples, result.samples, sample_rate, spec.params, before, after)
    adjusted: Samples | None = result.samples
    reason = ""
    if (
        confidence is not None
        and confidence.score < spec.min_confidence
        and not spec.keep_low_confidence
    ):
        adjusted, reason = None, _low_confidence_reason(confidence, spec.min_confidence)
    return AdjustOutcome(
        samples=adjusted,
        limiter_gain_db=result.limiter_gain_db,
        confidence=confidence,
        fallback_reason=reason,
        stages=tuple(stages),
        worker_pid=os.getpid(),
    )


def analyze_job(samples: Samples, sample_rate: int) -> AnalyzeOutcome:
    """Measure pitch, voicing, intensity and speaking rate (stage ``prosody.analyze``)."""
    stages: list[Stage] = []
    with timed("prosody.analyze", stages):
        analysis = analyze(samples, sample_rate)
    return AnalyzeOutcome(analysis, tuple(stages), os.getpid())


def warm_up() -> None:
    """Run every Praat path once on a synthetic vowel, so no request pays for first use."""
    rate = 22050
    t = np.arange(rate // 2, dtype=np.float32) / rate
    # A 150 Hz tone with harmonics and a slow vibrato: voiced enough for Praat's pitch.
    phase = 2 * np.pi * (150 * t + 2 * np.sin(2 * np.pi * 3 * t))
    vowel = (0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.05 * np.sin(3 * phase)).astype(
        np.float32
    )
    analyze_job(vowel, rate)
    params = AdjustParams(pitch_shift_semitones=1.0, tempo=1.1)
    adjust_job(vowel, rate, AdjustSpec(params, check_confidence=True, min_confidence=0.0))


class ProsodyPipeline:
    """Runs the prosody jobs in the worker pool, for the servicer."""

    def __init__(self, pool: ProcessPool, tracer: trace.Tracer) -> None:
        self._pool = pool
        self._tracer = tracer

    async def analyze(self, samples: Samples, sample_rate: int) -> ProsodyAnalysis:
        """Measure ``samples`` in a worker; its stages become spans."""
        outcome = await self._pool.run(analyze_job, samples, sample_rate)
        record_spans(self._tracer, outcome.stages, outcome.worker_pid)
        return outcome.analysis

    async def adjust(
        self, samples: Samples, sample_rate: int, spec: AdjustSpec, budget_s: float
    ) -> AdjustOutcome:
        """``adjust_job`` in a worker; past ``budget_s`` the fallback, at once."""
        try:
            outcome = await asyncio.wait_for(
                self._pool.run(adjust_job, samples, sample_rate, spec), budget_s
            )
        except TimeoutError:
            # The worker finishes in the background; the caller gets its audio back now.
            return AdjustOutcome(
                samples=None,
                limiter_gain_db=0.0,
                confidence=None,
                fallback_reason=f"time budget of {budget_s:.2f} s exceeded",
                timed_out=True,
            )
        record_spans(self._tracer, outcome.stages, outcome.worker_pid)
        return outcome


def _low_confidence_reason(confidence: ConfidenceReport, threshold: float) -> str:
    weakest = confidence.weakest
    return (
        f"confidence {confidence.score:.2f} is below {threshold:.2f}; "
        f"weakest: {weakest.name} ({weakest.detail})"
    )
