"""Prosody servicer: validates, serves from cache or the Praat workers, decides fallbacks."""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from grpc import aio
from opentelemetry import trace

from services.common.admission import AdmissionController
from services.common.cache import ResultCache, cache_key
from services.common.errors import InvalidArgument
from services.common.pcm import Samples
from services.common.process_pool import ProcessPool
from services.prosody.audio_messages import AudioForm, decode_audio, encode_audio
from services.prosody.jobs import adjust_job, analyze_job
from services.prosody.praat import AdjustParams, ConfidenceReport, Stage, assess
from services.prosody.presets import DEFAULT_PRESET, PRESETS

Context = aio.ServicerContext[Any, Any]

PITCH_SHIFT_LIMIT = 12.0
PITCH_RANGE_LIMITS = (0.0, 3.0)
TEMPO_LIMITS = (0.5, 2.0)
ENERGY_LIMIT_DB = 24.0
# Keep this much of the caller's deadline for encoding and sending the answer.
_DEADLINE_MARGIN_S = 0.05


class ProsodyServicer(prosody_pb2_grpc.ProsodyServicer):
    """Serves chorus.prosody.v1.Prosody with Praat in a pool of worker processes."""

    def __init__(
        self,
        *,
        pool: ProcessPool,
        cache: ResultCache,
        admission: AdmissionController,
        tracer: trace.Tracer,
        max_audio_s: float,
        min_confidence: float,
        time_budget_s: float,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._admission = admission
        self._tracer = tracer
        self._max_audio_s = max_audio_s
        self._min_confidence = min_confidence
        self._time_budget_s = time_budget_s

    async def Analyze(
        self, request: prosody_pb2.AnalyzeRequest, context: Context
    ) -> prosody_pb2.AnalyzeResponse:
        """Measure pitch, voicing, intensity and speaking rate."""
        # Only valid requests are ever cached, so a hit needs no decoding.
        key = cache_key("analyze", _audio_digest(request.audio))
        cached = await self._cache.get_message(key, prosody_pb2.AnalyzeResponse)
        if cached is not None:
            cached.cache_hit = True
            return cached
        async with self._admission.slot("Analyze"):
            samples, form = await self._decode(request.audio)
            outcome = await self._pool.run(analyze_job, samples, form.sample_rate)
        self._record_stages(outcome.stages, outcome.worker_pid)
        analysis = outcome.analysis
        response = prosody_pb2.AnalyzeResponse(
            duration_seconds=analysis.duration_s,
            f0_median_hz=analysis.f0_median_hz,
            f0_min_hz=analysis.f0_min_hz,
            f0_max_hz=analysis.f0_max_hz,
            f0_range_semitones=analysis.f0_range_semitones,
            f0_contour_semitones=analysis.f0_contour_semitones,
            voiced_fraction=analysis.voiced_fraction,
            intensity_mean_db=analysis.intensity_mean_db,
            speaking_rate_syllables_per_second=analysis.speaking_rate_syllables_per_s,
        )
        await self._cache.put_message(key, response)
        return response

    async def Adjust(
        self, request: prosody_pb2.AdjustRequest, context: Context
    ) -> prosody_pb2.AdjustResponse:
        """Adjust pitch, range, tempo and energy; fall back to the original when unsure."""
        preset, params = _requested_params(request)
        if request.confidence_mode not in prosody_pb2.ConfidenceMode.values():
            raise InvalidArgument(
                "confidence_mode", f"{request.confidence_mode} is not a ConfidenceMode"
            )
        check = request.confidence_mode != prosody_pb2.CONFIDENCE_MODE_SKIP
        threshold = request.min_confidence or self._min_confidence
        if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
            raise InvalidArgument("min_confidence", f"{threshold:g} is outside 0 to 1")
        adjustment = prosody_pb2.Adjustment(
            preset=preset,
            pitch_shift_semitones=params.pitch_shift_semitones,
            pitch_range_scale=params.pitch_range_scale,
            tempo=params.tempo,
            energy_db=params.energy_db,
        )
        key = cache_key(
            "adjust",
            _audio_digest(request.audio),
            adjustment.SerializeToString(deterministic=True).hex(),
            check,
            threshold,
            request.keep_low_confidence,
        )
        cached = await self._cache.get_message(key, prosody_pb2.AdjustResponse)
        if cached is not None:
            cached.cache_hit = True
            return cached
        budget = self._budget(context)
        async with self._admission.slot("Adjust"):
            samples, form = await self._decode(request.audio)
            try:
                outcome = await asyncio.wait_for(
                    self._pool.run(adjust_job, samples, form.sample_rate, params, check), budget
                )
            except TimeoutError:
                # Workers finish in the background; the caller gets its audio back now.
                return _fallback(
                    request, adjustment, None, threshold, f"time budget of {budget:.2f} s exceeded"
                )
        self._record_stages(outcome.stages, outcome.worker_pid)
        adjustment.limiter_gain_db = outcome.limiter_gain_db
        confidence = None
        if check:
            with self._tracer.start_as_current_span("prosody.confidence"):
                confidence = assess(
                    samples,
                    outcome.samples,
                    form.sample_rate,
                    params,
                    outcome.original_pitch_track,
                    outcome.pitch_track,
                )
        if (
            confidence is not None
            and confidence.score < threshold
            and not request.keep_low_confidence
        ):
            response = _fallback(
                request, adjustment, confidence, threshold, _low_reason(confidence, threshold)
            )
        else:
            with self._tracer.start_as_current_span("prosody.encode"):
                audio = encode_audio(outcome.samples, form)
            response = prosody_pb2.AdjustResponse(
                audio=audio,
                adjustment=adjustment,
                confidence=_report(confidence, threshold),
            )
        await self._cache.put_message(key, response)
        return response

    async def _decode(self, audio: prosody_pb2.Audio) -> tuple[Samples, AudioForm]:
        """The request's audio, decoded in a thread while the caller holds an admission
        slot: compressed WAV takes real time to decode, and no more requests decode at once
        than admission lets run, so memory stays bounded (the header checks come first)."""
        with self._tracer.start_as_current_span("prosody.decode"):
            return await asyncio.to_thread(decode_audio, audio, self._max_audio_s)

    def _budget(self, context: Context) -> float:
        """The per-request budget, cut short by the caller's own deadline."""
        remaining = context.time_remaining()
        if remaining is None:
            return self._time_budget_s
        return max(0.0, min(self._time_budget_s, remaining - _DEADLINE_MARGIN_S))

    def _record_stages(self, stages: tuple[Stage, ...], worker_pid: int) -> None:
        """Spans for the stages that ran in a worker, in this process's trace."""
        for stage in stages:
            span = self._tracer.start_span(
                stage.name,
                start_time=stage.start_ns,
                attributes={"chorus.prosody.worker_pid": worker_pid},
            )
            span.end(end_time=stage.end_ns)


def _requested_params(request: prosody_pb2.AdjustRequest) -> tuple[str, AdjustParams]:
    """The preset's values overridden by the fields set; InvalidArgument names bad ones."""
    preset = request.preset.strip().lower() or DEFAULT_PRESET
    if preset not in PRESETS:
        raise InvalidArgument(
            "preset", f"unknown preset {request.preset!r}; known: {', '.join(PRESETS)}"
        )
    base = PRESETS[preset]

    def field(name: str, default: float, low: float, high: float) -> float:
        if not request.HasField(name):  # type: ignore[arg-type]
            return default
        value: float = getattr(request, name)
        if math.isnan(value) or not low <= value <= high:
            raise InvalidArgument(name, f"{value:g} is outside {low:g} to {high:g}")
        return value

    return preset, AdjustParams(
        pitch_shift_semitones=field(
            "pitch_shift_semitones",
            base.pitch_shift_semitones,
            -PITCH_SHIFT_LIMIT,
            PITCH_SHIFT_LIMIT,
        ),
        pitch_range_scale=field("pitch_range_scale", base.pitch_range_scale, *PITCH_RANGE_LIMITS),
        tempo=field("tempo", base.tempo, *TEMPO_LIMITS),
        energy_db=field("energy_db", base.energy_db, -ENERGY_LIMIT_DB, ENERGY_LIMIT_DB),
    )


def _audio_digest(audio: prosody_pb2.Audio) -> str:
    return hashlib.sha256(audio.SerializeToString(deterministic=True)).hexdigest()


def _report(confidence: ConfidenceReport | None, threshold: float) -> prosody_pb2.ConfidenceReport:
    if confidence is None:
        return prosody_pb2.ConfidenceReport(measured=False, threshold=threshold)
    return prosody_pb2.ConfidenceReport(
        measured=True,
        score=confidence.score,
        threshold=threshold,
        parts=[
            prosody_pb2.ConfidencePart(
                name=part.name,
                score=part.score,
                expected=part.expected,
                measured=part.measured,
                detail=part.detail,
            )
            for part in confidence.parts
        ],
    )


def _low_reason(confidence: ConfidenceReport, threshold: float) -> str:
    weakest = min(confidence.parts, key=lambda part: part.score)
    return (
        f"confidence {confidence.score:.2f} is below {threshold:.2f}; "
        f"weakest: {weakest.name} ({weakest.detail})"
    )


def _fallback(
    request: prosody_pb2.AdjustRequest,
    adjustment: prosody_pb2.Adjustment,
    confidence: ConfidenceReport | None,
    threshold: float,
    reason: str,
) -> prosody_pb2.AdjustResponse:
    """The caller's own audio back, untouched, with why."""
    return prosody_pb2.AdjustResponse(
        audio=request.audio,
        adjustment=adjustment,
        confidence=_report(confidence, threshold),
        fallback=True,
        fallback_reason=reason,
    )
