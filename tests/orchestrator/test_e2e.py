"""The whole suite end to end: four services in separate processes, started as `make run`
starts them, with a real Redis and an OTLP receiver standing in for the collector."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from PIL import Image as PilImage
from skimage import data

from devtools.launcher import REPO_ROOT, ServiceProcess, free_port
from devtools.local_redis import RedisServer
from devtools.suite import SERVICES, running_suite, suite_processes
from services.common.wav import read_wav
from tests.support.otlp_collector import OtlpCollector, ReceivedSpan
from tests.support.waiting import WAIT_S, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

GREETING = "Congratulations on the new job! We are all so proud of you. Let us celebrate soon."


@dataclass
class Suite:
    processes: dict[str, ServiceProcess]
    redis: RedisServer
    collector: OtlpCollector
    stub: orchestrator_pb2_grpc.OrchestratorAsyncStub


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    folder = tmp_path_factory.mktemp("suite")
    collector = OtlpCollector()
    await collector.start()
    redis = RedisServer(folder)
    redis.start()
    processes = suite_processes(
        {name: free_port() for name in SERVICES},
        redis.url,
        folder,
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "CHORUS_WORKERS": "1",
            # The suite's plumbing, on the speech engine that makes audio in milliseconds.
            "CHORUS_ENGINE": "espeak",
            # Prosody's budget beyond any request's deadline: a busy machine must not
            # turn an adjustment into a budget fallback.
            "CHORUS_TIME_BUDGET_S": "3600",
        },
    )
    try:
        async with (
            running_suite(processes, healthy_within_s=90),
            grpc.aio.insecure_channel(processes["orchestrator"].address) as channel,
        ):
            yield Suite(
                processes, redis, collector, orchestrator_pb2_grpc.OrchestratorStub(channel)
            )
    finally:
        redis.stop()
        await collector.stop()


def portrait_jpeg(mirrored: bool = False) -> bytes:
    """The astronaut; mirrored, a photo no cache has seen yet."""
    image = data.astronaut()
    buffer = io.BytesIO()
    PilImage.fromarray(image[:, ::-1].copy() if mirrored else image).save(buffer, format="JPEG")
    return buffer.getvalue()


async def speak(suite: Suite, **fields: object) -> list[pb.SpeakResponse]:
    return [
        response
        async for response in suite.stub.Speak(pb.SpeakRequest(**fields), timeout=30)  # type: ignore[arg-type]
    ]


async def test_speak_streams_audio(suite: Suite) -> None:
    responses = await speak(suite, text=GREETING)
    assert responses[0].HasField("format")
    assert responses[-1].HasField("summary")
    audio = b"".join(r.audio for r in responses if r.HasField("audio"))
    assert len(audio) // 2 / 22050 == pytest.approx(responses[-1].summary.audio_seconds)
    assert responses[-1].summary.audio_seconds > 2


async def test_speak_with_a_preset_reshapes_each_sentence(suite: Suite) -> None:
    responses = await speak(suite, text=GREETING, preset="celebration")
    summary = responses[-1].summary
    assert summary.preset == "celebration"
    assert len(summary.sentences) == 3
    assert all(s.confidence >= 0.7 and not s.fallback for s in summary.sentences)
    assert sum(r.HasField("audio") for r in responses) == 3


async def test_compose_runs_speech_and_vision_in_parallel(suite: Suite) -> None:
    events, result = [], None
    async for response in suite.stub.ComposeMessage(
        pb.ComposeMessageRequest(text=GREETING, preset="calm", photo=portrait_jpeg()), timeout=60
    ):
        if response.HasField("progress"):
            events.append(response.progress)
        else:
            result = response.result
    assert result is not None
    assert not result.partial
    assert read_wav(result.audio_wav).samples.size > 22050
    assert result.cutout_png.startswith(b"\x89PNG")
    assert result.detections
    stages = {timing.stage: timing.seconds for timing in result.timings}
    assert set(stages) == {pb.STAGE_SPEECH, pb.STAGE_PROSODY, pb.STAGE_VISION}
    # Progress comes in the order things happened: where each stage started and finished.
    started = {e.stage: i for i, e in enumerate(events) if not e.finished}
    finished = {e.stage: i for i, e in enumerate(events) if e.finished}
    assert set(started) == set(finished) == set(stages)
    # In parallel: each branch (speech then prosody; vision) started before the other
    # finished. Compared by order, not by elapsed seconds: on a busy machine either branch
    # may dwarf the other, and done one after the other, one would start after the other
    # had finished.
    assert started[pb.STAGE_VISION] < finished[pb.STAGE_PROSODY]
    assert started[pb.STAGE_SPEECH] < finished[pb.STAGE_VISION]


async def test_one_trace_spans_every_service(suite: Suite) -> None:
    result = None
    async for response in suite.stub.ComposeMessage(
        pb.ComposeMessageRequest(
            text="One trace for all.", preset="calm", photo=portrait_jpeg(mirrored=True)
        )
    ):
        if response.HasField("result"):
            result = response.result
    assert result is not None
    assert len(result.trace_id) == 32
    wanted = {"chorus-orchestrator", "chorus-tts", "chorus-prosody", "chorus-vision"}
    # The inner services' work nests under the orchestrator's stage spans.
    nesting = {
        "tts.synthesize": "orchestrator.speech",
        "prosody.pitch": "orchestrator.prosody",
        "vision.detect": "orchestrator.vision",
    }

    def missing() -> list[str]:
        spans = suite.collector.in_trace(result.trace_id)
        gaps = [f"no spans from {service}" for service in wanted - {s.service for s in spans}]
        if "cache.get" not in {span.name for span in spans}:
            gaps.append("no cache.get span")
        for inner, stage in nesting.items():
            if stage not in ancestors(spans, inner):
                gaps.append(f"{inner} not under {stage}")
        return gaps

    # Each service exports in batches, so the trace arrives piece by piece.
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: not missing(), "the whole trace")
    assert missing() == []


def ancestors(spans: list[ReceivedSpan], name: str) -> list[str]:
    """The names of the spans above the (first) span called ``name``, nearest first."""
    by_id = {span.span_id: span for span in spans}
    span = next((span for span in spans if span.name == name), None)
    names = []
    while span is not None and (span := by_id.get(span.parent_span_id)) is not None:
        names.append(span.name)
    return names


async def test_synthesize_batch_returns_every_segment_once(suite: Suite) -> None:
    segments = [f"Segment {i} of the dubbing job." for i in range(30)]
    indices = []
    async for response in suite.stub.SynthesizeBatch(
        pb.SynthesizeBatchRequest(segments=segments, max_concurrency=4), timeout=60
    ):
        assert not response.error, response.error
        assert read_wav(response.audio_wav).samples.size > 0
        indices.append(response.index)
    assert sorted(indices) == list(range(30))


@pytest.mark.parametrize(
    ("call", "request_message", "field_named"),
    [
        ("Speak", pb.SpeakRequest(text="  "), "text"),
        ("Speak", pb.SpeakRequest(text="Hi.", preset="party"), "preset"),
        ("ComposeMessage", pb.ComposeMessageRequest(text="Hi."), "photo"),
        ("SynthesizeBatch", pb.SynthesizeBatchRequest(), "segments"),
        ("SynthesizeBatch", pb.SynthesizeBatchRequest(segments=["ok", ""]), "segments[1]"),
    ],
)
async def test_bad_input_is_invalid_argument(
    suite: Suite, call: str, request_message: object, field_named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in getattr(suite.stub, call)(request_message, timeout=30):
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field_named}:")


async def test_a_passed_deadline_is_deadline_exceeded(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in suite.stub.SynthesizeBatch(
            pb.SynthesizeBatchRequest(segments=[GREETING] * 200), timeout=0.2
        ):
            pass
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_cancelling_speak_cancels_the_tts_stream(suite: Suite) -> None:
    text = " ".join(f"This is sentence {i} of a long speech." for i in range(60)) + " Unique."
    # A deadline far beyond the wait below: only the cancel can end the tts stream in time.
    call = suite.stub.Speak(pb.SpeakRequest(text=text), timeout=4 * WAIT_S)
    async for response in call:
        if response.HasField("audio"):
            break
    call.cancel()

    def this_stream() -> list[ReceivedSpan]:
        # This request's tts stream only (known by its length: the text is sent whole):
        # earlier tests cancel tts streams of their own.
        return [
            s
            for s in suite.collector.spans
            if s.name == "tts.synthesize" and s.attributes.get("chorus.tts.chars") == len(text)
        ]

    def cancelled() -> bool:
        return any(s.attributes.get("chorus.tts.cancelled") for s in this_stream())

    with contextlib.suppress(AssertionError):
        await wait_until(cancelled, "the tts stream's cancelled span")
    ended = [s.attributes for s in this_stream()]
    assert cancelled(), f"tts stream not cancelled; its span: {ended or 'none yet'}"


async def test_the_client_speaks_and_composes(suite: Suite, tmp_path: Path) -> None:
    address = suite.processes["orchestrator"].address
    photo = tmp_path / "me.jpg"
    photo.write_bytes(portrait_jpeg())
    commands = [
        ["speak", "Congratulations!", "--preset", "celebration", "--out", str(tmp_path / "m.wav")],
        ["compose", "--text", "See you soon.", "--photo", str(photo), "--out-dir", str(tmp_path)],
    ]
    for command in commands:
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.orchestrator.client", "--address", address, *command],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        assert "trace" in completed.stdout
    assert read_wav((tmp_path / "m.wav").read_bytes()).samples.size > 0
    assert (tmp_path / "cutout.png").read_bytes().startswith(b"\x89PNG")
    assert read_wav((tmp_path / "message.wav").read_bytes()).samples.size > 0


async def test_redis_killed_does_not_fail_requests(suite: Suite) -> None:
    suite.redis.stop()
    try:
        responses = await speak(suite, text="Redis is gone, speech is not.")
        assert responses[-1].HasField("summary")
    finally:
        suite.redis.start()


async def test_vision_down_gives_a_partial_message_and_tts_killed_unavailable(
    suite: Suite,
) -> None:
    # Last in this module: it stops services for good.
    suite.processes["vision"].stop()
    result = None
    async for response in suite.stub.ComposeMessage(
        pb.ComposeMessageRequest(text="Vision is down.", photo=portrait_jpeg()), timeout=30
    ):
        if response.HasField("result"):
            result = response.result
    assert result is not None
    assert result.partial
    assert list(result.missing) == ["vision"]
    assert read_wav(result.audio_wav).samples.size > 0

    # tts killed in the middle of a stream: the caller learns which service failed.
    long_text = " ".join(f"Sentence {i} of a speech cut short." for i in range(120))

    async def listen_and_kill_tts() -> None:
        async for response in suite.stub.Speak(pb.SpeakRequest(text=long_text), timeout=30):
            if response.HasField("audio"):
                suite.processes["tts"].kill()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await listen_and_kill_tts()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "tts unavailable" in (raised.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await speak(suite, text="Nobody to speak.")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "tts unavailable" in (raised.value.details() or "")
