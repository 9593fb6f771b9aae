"""Prosody servicer: validates requests, converts them to the pipeline's calls and back.

What a request does (the worker job, its time budget, the confidence check and the
fallback decision) is in ``services.prosody.pipeline``; this module maps protobuf to it,
serves repeats from the cache, and holds an admission slot while the audio is decoded and
worked on.
"""

from __future__ import annotations

import asyncio
import hashlib
import math

from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from opentelemetry import trace

from services.common.admission import AdmissionController
from services.common.cache import ResultCache, cache_key
from services.common.errors import InvalidArgument
from services.common.grpc_context import Context
from services.common.pcm import Samples
from services.prosody.adjustment import AdjustParams
from services.prosody.analysis import ProsodyAnalysis
from services.prosody.audio_messages import AudioForm, decode_audio, encode_audio
from services.prosody.confidence import ConfidenceReport
from services.prosody.pipeline import AdjustOutcome, AdjustSpec, ProsodyPipeline
from services.prosody.presets import DEFAULT_PRESET, PRESETS

PITCH_SHIFT_LIMIT = 12.0
PITCH_RANGE_LIMITS = (0.0, 3.0)
TEMPO_LIMITS = (0.5, 2.0)
ENERGY_LIMIT_DB = 24.0
# Keep this much of the caller's deadline for encoding and sending the answer.
_DEADLINE_MARGIN_S = 0.05


class ProsodyServicer(prosody_pb2_grpc.ProsodyServicer):
    """Serves chorus.prosody.v1.Prosody through the prosody pipeline."""

    def __init__(
        self,
        *,
        pipeline: ProsodyPipeline,
        cache: ResultCache,
        admission: AdmissionController,
        tracer: trace.Tracer,
        max_audio_s: float,
        min_confidence: float,
        time_budget_s: float,
    ) -> None:
        self._pipeline = pipeline
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

        async def analyze() -> prosody_pb2.AnalyzeResponse:
            async with self._admission.slot("Analyze"):
                samples, form = await self._decode(request.audio)
                analysis = await self._pipeline.analyze(samples, form.sample_rate)
            return _analyze_response(analysis)

        # Only valid requests are ever cached, so a hit needs no decoding.
        key = cache_key("analyze", _audio_digest(request.audio))
        return await self._cache.response(key, prosody_pb2.AnalyzeResponse.FromString, analyze)

    async def Adjust(
        self, request: prosody_pb2.AdjustRequest, context: Context
    ) -> prosody_pb2.AdjustResponse:
        """Adjust pitch, range, tempo and energy; fall back to the original when unsure."""
        spec, adjustment = self._adjust_spec(request)
        timed_out = False

        async def adjust() -> prosody_pb2.AdjustResponse:
            nonlocal timed_out
            budget = self._budget(context)
            async with self._admission.slot("Adjust"):
                samples, form = await self._decode(request.audio)
                outcome = await self._pipeline.adjust(samples, form.sample_rate, spec, budget)
            timed_out = outcome.timed_out
            return self._adjust_response(request.audio, form, adjustment, outcome, spec)

        key = cache_key(
            "adjust",
            _audio_digest(request.audio),
            adjustment.SerializeToString(deterministic=True).hex(),
            spec.check_confidence,
            spec.min_confidence,
            spec.keep_low_confidence,
        )
        # A fallback forced by the time budget says nothing about the audio: not kept.
        return await self._cache.response(
            key, prosody_pb2.AdjustResponse.FromString, adjust, keep=lambda _: not timed_out
        )

    def _adjust_spec(
        self, request: prosody_pb2.AdjustRequest
    ) -> tuple[AdjustSpec, prosody_pb2.Adjustment]:
        """The pipeline's spec of a valid request, and the adjustment it reports back;
        InvalidArgument names the field that is wrong."""
        preset, params = _requested_params(request)
        if request.confidence_mode not in prosody_pb2.ConfidenceMode.values():
            raise InvalidArgument(
                "confidence_mode", f"{request.confidence_mode} is not a ConfidenceMode"
            )
        threshold = request.min_confidence or self._min_confidence
        if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
            raise InvalidArgument("min_confidence", f"{threshold:g} is outside 0 to 1")
        spec = AdjustSpec(
            params=params,
            check_confidence=request.confidence_mode != prosody_pb2.CONFIDENCE_MODE_SKIP,
            min_confidence=threshold,
            keep_low_confidence=request.keep_low_confidence,
        )
        adjustment = prosody_pb2.Adjustment(
            preset=preset,
            pitch_shift_semitones=params.pitch_shift_semitones,
            pitch_range_scale=params.pitch_range_scale,
            tempo=params.tempo,
            energy_db=params.energy_db,
        )
        return spec, adjustment

    def _adjust_response(
        self,
        original: prosody_pb2.Audio,
        form: AudioForm,
        adjustment: prosody_pb2.Adjustment,
        outcome: AdjustOutcome,
        spec: AdjustSpec,
    ) -> prosody_pb2.AdjustResponse:
        """The outcome as a response: the adjusted audio in the caller's form, or on a
        fallback the caller's own audio, untouched, with why."""
        adjustment.limiter_gain_db = outcome.limiter_gain_db
        confidence = _report(outcome.confidence, spec.min_confidence)
        if outcome.samples is None:
            return prosody_pb2.AdjustResponse(
                audio=original,
                adjustment=adjustment,
                confidence=confidence,
                fallback=True,
                fallback_reason=outcome.fallback_reason,
            )
        with self._tracer.start_as_current_span("prosody.encode"):
            audio = encode_audio(outcome.samples, form)
        return prosody_pb2.AdjustResponse(audio=audio, adjustment=adjustment, confidence=confidence)

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


def _analyze_response(analysis: ProsodyAnalysis) -> prosody_pb2.AnalyzeResponse:
    return prosody_pb2.AnalyzeResponse(
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
