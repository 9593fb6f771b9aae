"""SpeakStream: text in as it is written, through tts's SynthesizeStream, on real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import grpc
import pytest
import pytest_asyncio
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.tts.v1 import tts_pb2
from grpc import aio

from services.common.errors import InvalidArgument
from services.common.telemetry import configure_telemetry
from services.orchestrator.speech import SpeechClient
from services.orchestrator.upstreams import Upstream
from tests.orchestrator.real_suite import Suite, real_suite
from tests.support.waiting import WAIT_S, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

Stream = aio.StreamStreamCall[pb.SpeakStreamRequest, pb.SpeakResponse]

CONFIG = pb.SpeakStreamRequest(config=pb.SpeakStreamConfig())
END = pb.SpeakStreamRequest(end=tts_pb2.End())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite() -> AsyncIterator[Suite]:
    async with real_suite() as started:
        yield started


def text(fragment: str) -> pb.SpeakStreamRequest:
    return pb.SpeakStreamRequest(text=fragment)


async def read_to_end(call: Stream) -> None:
    while await call.read() is not aio.EOF:
        pass


async def read_until(call: Stream, kind: str) -> list[pb.SpeakResponse]:
    responses = []
    while True:
        response = await call.read()
        assert response is not aio.EOF, f"the stream ended before a {kind}"
        assert isinstance(response, pb.SpeakResponse)
        responses.append(response)
        if response.WhichOneof("content") == kind:
            return responses


async def test_text_written_in_fragments_is_spoken_as_it_comes(suite: Suite) -> None:
    call = suite.stub.SpeakStream(timeout=WAIT_S)
    await call.write(CONFIG)
    await call.write(text("Hello there, "))
    first = await read_until(call, "audio")  # spoken before the rest is written
    assert first[0].format.sample_rate_hz > 0
    for fragment in ("how ", "are ", "you?"):
        await call.write(text(fragment))
    await call.write(END)
    await call.done_writing()
    rest = await read_until(call, "summary")
    audio = b"".join(r.audio for r in first + rest if r.HasField("audio"))
    summary = rest[-1].summary
    assert len(audio) // 2 == round(summary.audio_seconds * first[0].format.sample_rate_hz)
    assert len(summary.trace_id) == 32
    assert await call.code() == grpc.StatusCode.OK


async def test_an_interrupt_reaches_tts_and_its_marker_comes_back(suite: Suite) -> None:
    call = suite.stub.SpeakStream(timeout=WAIT_S)
    await call.write(CONFIG)
    await call.write(text("This goes on " + "and on " * 80 + "for ever. "))
    await read_until(call, "audio")
    await call.write(pb.SpeakStreamRequest(interrupt=tts_pb2.Interrupt()))
    marker = (await read_until(call, "interrupted"))[-1].interrupted
    assert marker.dropped_chars > 0
    await call.write(text("Bye."))
    await call.write(END)
    await call.done_writing()
    assert (await read_until(call, "summary"))[-1].summary.audio_seconds > 0


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        ([text("Hello.")], "config: must be the stream's first message"),
        ([CONFIG, pb.SpeakStreamRequest()], "content: "),
        ([pb.SpeakStreamRequest(config=pb.SpeakStreamConfig(voice="nobody"))], "voice: "),
    ],
)
async def test_bad_streams_are_invalid_argument_naming_the_field(
    suite: Suite, messages: list[pb.SpeakStreamRequest], named: str
) -> None:
    call = suite.stub.SpeakStream(timeout=WAIT_S)
    for message in messages:
        await call.write(message)
    with pytest.raises(aio.AioRpcError) as raised:
        await read_to_end(call)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(named)
    admission = suite.orchestrator.running.service.admission  # type: ignore[attr-defined]
    await wait_until(lambda: admission.in_flight == 0, "the stream's slot freed")


async def test_a_client_that_goes_away_ends_the_tts_stream(suite: Suite) -> None:
    call = suite.stub.SpeakStream(timeout=WAIT_S)
    await call.write(CONFIG)
    await call.write(text("A long text " + "that goes on " * 80 + "and on. "))
    await read_until(call, "audio")
    tts_admission = suite.tts.running.service.admission  # type: ignore[attr-defined]
    assert tts_admission.in_flight == 1
    call.cancel()
    await wait_until(lambda: tts_admission.in_flight == 0, "tts's stream ended")


async def test_a_message_that_does_not_parse_ends_the_stream_naming_it(suite: Suite) -> None:
    async def written() -> AsyncIterator[bytes]:
        yield CONFIG.SerializeToString()
        yield b"\xea\xc9\x8b\r\x9f"  # no SpeakStreamRequest parses from these bytes

    async with aio.insecure_channel(suite.orchestrator.address) as channel:
        stream: aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            "/chorus.orchestrator.v1.Orchestrator/SpeakStream"
        )
        with pytest.raises(aio.AioRpcError) as raised:
            await read_to_end_bytes(stream(written(), timeout=WAIT_S))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(
        "request: not a valid chorus.orchestrator.v1.SpeakStreamRequest"
    )


async def read_to_end_bytes(call: AsyncIterable[bytes]) -> None:
    async for _ in call:
        pass


async def test_the_callers_stream_is_let_go_when_tts_ends_first(suite: Suite) -> None:
    # tts refuses a second config and ends its stream while the caller, still connected,
    # writes nothing more: the wait on the caller's stream must end with tts's call.
    telemetry = configure_telemetry("test", environ={})
    tts = Upstream(
        "tts", suite.tts.address, "chorus.tts.v1.TextToSpeech", telemetry.tracer_provider
    )
    let_go = asyncio.Event()

    async def caller() -> AsyncIterator[tts_pb2.SynthesizeStreamRequest]:
        config = tts_pb2.SynthesizeStreamRequest(config=tts_pb2.SynthesisConfig())
        try:
            yield config
            yield config
            await asyncio.Event().wait()  # a caller that says nothing more
        finally:
            let_go.set()

    try:
        with pytest.raises(InvalidArgument):
            async for _ in SpeechClient(tts, tts).synthesize_stream(caller(), WAIT_S):
                pass
        await wait_until(let_go.is_set, "the caller's stream let go")
    finally:
        await tts.close()
        telemetry.shutdown()
