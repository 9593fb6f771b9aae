"""Every RPC of the suite, fuzzed: valid requests mutated field by field and byte by byte
(Hypothesis, a bounded and reproducible set of examples) against the four services
running as `make run` runs them. Whatever a client sends, the answer is OK,
INVALID_ARGUMENT or RESOURCE_EXHAUSTED, and every service stays SERVING."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import pytest_asyncio
from chorus.orchestrator.v1 import orchestrator_pb2
from chorus.prosody.v1 import prosody_pb2
from chorus.tts.v1 import tts_pb2
from chorus.vision.v1 import vision_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PilImage
from skimage import data

from devtools.launcher import ServiceProcess, free_port
from devtools.local_redis import RedisServer
from devtools.suite import SERVICES, running_suite, suite_processes
from tests.fuzz.mutations import request_mutants
from tests.support.media import compressed_wav, speech_recordings

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCEPTABLE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
# Overload is an acceptable answer too: a fuzzer is a client that sends a lot.
ACCEPTABLE |= {grpc.StatusCode.RESOURCE_EXHAUSTED}
EXAMPLES = 20


def png(image: np.ndarray, side: int) -> bytes:
    """``image`` scaled to ``side`` pixels wide, as PNG."""
    picture = PilImage.fromarray(image)
    picture = picture.resize((side, side * picture.height // picture.width))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


PORTRAIT = png(data.astronaut(), 160)
SPEECH = speech_recordings()[0].read_bytes()
MEDIA = [PORTRAIT, png(data.camera(), 64), SPEECH, compressed_wav("GSM610", seconds=1)]


@dataclass(frozen=True)
class Rpc:
    """One RPC: the service it belongs to, its path, and a valid request to mutate."""

    service: str
    path: str
    streaming: bool
    valid: Message


RPCS = [
    Rpc("tts", "/chorus.tts.v1.TextToSpeech/Synthesize", True,
        tts_pb2.SynthesizeRequest(text="Hello there. How are you?", sample_rate_hz=16000)),
    Rpc("tts", "/chorus.tts.v1.TextToSpeech/ListVoices", False,
        tts_pb2.ListVoicesRequest(language="en")),
    Rpc("prosody", "/chorus.prosody.v1.Prosody/Analyze", False,
        prosody_pb2.AnalyzeRequest(audio=prosody_pb2.Audio(wav=SPEECH))),
    Rpc("prosody", "/chorus.prosody.v1.Prosody/Adjust", False,
        prosody_pb2.AdjustRequest(audio=prosody_pb2.Audio(wav=SPEECH), preset="celebration")),
    Rpc("vision", "/chorus.vision.v1.Vision/DetectPersons", False,
        vision_pb2.DetectPersonsRequest(image=PORTRAIT, score_threshold=0.3)),
    Rpc("vision", "/chorus.vision.v1.Vision/RemoveBackground", False,
        vision_pb2.RemoveBackgroundRequest(image=PORTRAIT)),
    Rpc("vision", "/chorus.vision.v1.Vision/Portrait", False,
        vision_pb2.PortraitRequest(image=PORTRAIT)),
    Rpc("orchestrator", "/chorus.orchestrator.v1.Orchestrator/Speak", True,
        orchestrator_pb2.SpeakRequest(text="See you soon. Take care!", preset="calm")),
    Rpc("orchestrator", "/chorus.orchestrator.v1.Orchestrator/ComposeMessage", True,
        orchestrator_pb2.ComposeMessageRequest(text="Well done!", preset="celebration",
                                               photo=PORTRAIT)),
    Rpc("orchestrator", "/chorus.orchestrator.v1.Orchestrator/SynthesizeBatch", True,
        orchestrator_pb2.SynthesizeBatchRequest(segments=["Hi.", "Bye."], max_concurrency=2)),
]  # fmt: skip


@dataclass
class Suite:
    """The running services and a channel to each."""

    processes: dict[str, ServiceProcess]
    channels: dict[str, grpc.aio.Channel]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    folder = tmp_path_factory.mktemp("fuzzed-suite")
    with RedisServer(folder) as redis:
        processes = suite_processes(
            {name: free_port() for name in SERVICES},
            redis.url,
            folder,
            # One Praat worker and a budget beyond any deadline: a busy machine must not
            # make the answers depend on timing.
            {"CHORUS_WORKERS": "1", "CHORUS_TIME_BUDGET_S": "3600"},
        )
        async with running_suite(processes, healthy_within_s=180):
            channels = {
                name: grpc.aio.insecure_channel(process.address)
                for name, process in processes.items()
            }
            try:
                yield Suite(processes, channels)
            finally:
                for channel in channels.values():
                    await channel.close()


async def send(channel: grpc.aio.Channel, rpc: Rpc, request: bytes) -> grpc.StatusCode:
    """The status ``request``'s bytes end with, every response read."""
    try:
        if rpc.streaming:
            stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(rpc.path)
            async for _ in stream(request, timeout=120):
                pass
        else:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(rpc.path)
            await unary(request, timeout=120)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def serving(suite: Suite) -> dict[str, str]:
    """Each service's overall health."""
    statuses = {}
    for name, channel in suite.channels.items():
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30
        )
        statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return statuses


IDS = [rpc.path.rsplit("/", 1)[1] for rpc in RPCS]


@pytest.mark.parametrize("rpc", RPCS, ids=IDS)
async def test_the_valid_requests_are_answered(suite: Suite, rpc: Rpc) -> None:
    """The requests the fuzzer mutates are valid, so it explores past the first check."""
    assert await send(suite.channels[rpc.service], rpc, rpc.valid.SerializeToString()) == (
        grpc.StatusCode.OK
    )


@pytest.mark.parametrize("rpc", RPCS, ids=IDS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(draw=st.data())
async def test_any_request_gets_a_clear_answer(suite: Suite, rpc: Rpc, draw: st.DataObject) -> None:
    request = draw.draw(request_mutants(rpc.valid, MEDIA), label="request")
    code = await send(suite.channels[rpc.service], rpc, request)
    assert code in ACCEPTABLE, f"{rpc.path} answered {code.name}"
    assert await serving(suite) == {name: "SERVING" for name in SERVICES}


@dataclass(frozen=True)
class Conversation:
    """A bidirectional RPC and a valid run of messages to mutate, reorder and cut."""

    service: str
    path: str
    valid: list[Message]


def _tts_stream(**content: Message | str) -> tts_pb2.SynthesizeStreamRequest:
    return tts_pb2.SynthesizeStreamRequest(**content)  # type: ignore[arg-type]


def _speak_stream(**content: Message | str) -> orchestrator_pb2.SpeakStreamRequest:
    return orchestrator_pb2.SpeakStreamRequest(**content)  # type: ignore[arg-type]


CONVERSATIONS = [
    Conversation("tts", "/chorus.tts.v1.TextToSpeech/SynthesizeStream", [
        _tts_stream(config=tts_pb2.SynthesisConfig(sample_rate_hz=16000, word_timings=True)),
        _tts_stream(text="Hello there, "), _tts_stream(text="how are you? "),
        _tts_stream(flush=tts_pb2.Flush()), _tts_stream(text="Never mind"),
        _tts_stream(interrupt=tts_pb2.Interrupt()), _tts_stream(text="Bye."),
        _tts_stream(end=tts_pb2.End()),
    ]),
    Conversation("orchestrator", "/chorus.orchestrator.v1.Orchestrator/SpeakStream", [
        _speak_stream(config=orchestrator_pb2.SpeakStreamConfig(word_timings=True)),
        _speak_stream(text="See you soon, "), _speak_stream(text="take care. "),
        _speak_stream(interrupt=tts_pb2.Interrupt()), _speak_stream(text="Bye."),
        _speak_stream(end=tts_pb2.End()),
    ]),
]  # fmt: skip
CONVERSATION_IDS = [conversation.path.rsplit("/", 1)[1] for conversation in CONVERSATIONS]


async def converse(channel: grpc.aio.Channel, path: str, messages: list[bytes]) -> grpc.StatusCode:
    """The status a stream of ``messages`` ends with, every response read."""

    async def written() -> AsyncIterator[bytes]:
        for message in messages:
            yield message

    stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
    try:
        async for _ in stream(written(), timeout=120):
            pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=CONVERSATION_IDS)
async def test_the_valid_conversations_are_answered(
    suite: Suite, conversation: Conversation
) -> None:
    messages = [message.SerializeToString() for message in conversation.valid]
    code = await converse(suite.channels[conversation.service], conversation.path, messages)
    assert code == grpc.StatusCode.OK


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=CONVERSATION_IDS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(draw=st.data())
async def test_any_conversation_gets_a_clear_answer(
    suite: Suite, conversation: Conversation, draw: st.DataObject
) -> None:
    """Messages valid or mutated, in any order, any number, cut anywhere."""
    message = st.one_of(
        st.sampled_from([m.SerializeToString() for m in conversation.valid]),
        *(request_mutants(valid, MEDIA) for valid in conversation.valid),
    )
    messages = draw.draw(st.lists(message, max_size=8), label="messages")
    code = await converse(suite.channels[conversation.service], conversation.path, messages)
    assert code in ACCEPTABLE, f"{conversation.path} answered {code.name}"
    assert await serving(suite) == {name: "SERVING" for name in SERVICES}
