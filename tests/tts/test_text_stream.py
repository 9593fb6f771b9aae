"""SynthesizeStream: text in as it is written, speech out clause by clause, barge-in."""

from __future__ import annotations

import grpc
import pytest
from chorus.tts.v1 import tts_pb2
from grpc import aio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.support.waiting import WAIT_S, wait_until
from tests.tts.harness import StartTts, TtsServer, synthesize

Stream = aio.StreamStreamCall[tts_pb2.SynthesizeStreamRequest, tts_pb2.SynthesizeResponse]

CONFIG = tts_pb2.SynthesizeStreamRequest(config=tts_pb2.SynthesisConfig())
END = tts_pb2.SynthesizeStreamRequest(end=tts_pb2.End())
INTERRUPT = tts_pb2.SynthesizeStreamRequest(interrupt=tts_pb2.Interrupt())
LONG_CLAUSE = "This clause goes on and on " + "and on " * 60 + "until it ends."


def text(fragment: str) -> tts_pb2.SynthesizeStreamRequest:
    return tts_pb2.SynthesizeStreamRequest(text=fragment)


def open_stream(tts: TtsServer) -> Stream:
    return tts.stub.SynthesizeStream(timeout=WAIT_S)


async def read_to_end(call: Stream) -> None:
    while await call.read() is not aio.EOF:
        pass


async def read_until(call: Stream, kind: str) -> list[tts_pb2.SynthesizeResponse]:
    """Every response up to and including the first of ``kind``."""
    responses = []
    while True:
        response = await call.read()
        assert response is not aio.EOF, f"the stream ended before a {kind}"
        assert isinstance(response, tts_pb2.SynthesizeResponse)
        responses.append(response)
        if response.WhichOneof("content") == kind:
            return responses


def audio(responses: list[tts_pb2.SynthesizeResponse]) -> bytes:
    return b"".join(r.chunk.audio for r in responses if r.HasField("chunk"))


async def test_fragments_are_spoken_clause_by_clause_as_whole_requests_would_be(
    tts: TtsServer,
) -> None:
    whole = "Hello there, my friend. How are you today?"
    call = open_stream(tts)
    await call.write(
        tts_pb2.SynthesizeStreamRequest(config=tts_pb2.SynthesisConfig(word_timings=True))
    )
    for start in range(0, len(whole), 3):
        await call.write(text(whole[start : start + 3]))
    await call.write(END)
    await call.done_writing()
    responses = await read_until(call, "summary")
    clauses = [
        await synthesize(tts.stub, text=clause)
        for clause in ("Hello there,", "my friend.", "How are you today?")
    ]
    # espeak's audio differs by a few samples from one synthesis to the next.
    expected = sum(len(clause.audio) for clause in clauses)
    assert abs(len(audio(responses)) - expected) < 0.01 * expected
    chunks = [r.chunk for r in responses if r.HasField("chunk")]
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].sample_offset + chunks[-1].sample_count == responses[-1].summary.sample_count
    words = [r.word for r in responses if r.HasField("word")]
    assert [w.word for w in words] == [
        "Hello",
        "there",
        "my",
        "friend",
        "How",
        "are",
        "you",
        "today",
    ]
    assert all(whole[w.char_start : w.char_end] == w.word for w in words)
    starts = [w.start_sample for w in words]
    assert starts == sorted(starts)
    assert all(w.end_sample <= responses[-1].summary.sample_count for w in words)
    assert await call.code() == grpc.StatusCode.OK


async def test_a_clause_is_spoken_before_the_text_after_it_is_written(tts: TtsServer) -> None:
    call = open_stream(tts)
    await call.write(CONFIG)
    await call.write(text("The first clause is complete, "))
    # Nothing more is sent until speech has come back: the server spoke without it.
    first = await read_until(call, "chunk")
    assert first[0].HasField("format")
    await call.write(text("and the second comes later."))
    await call.write(END)
    await call.done_writing()
    rest = await read_until(call, "summary")
    assert rest[-1].summary.sample_count > first[-1].chunk.sample_count


async def test_an_interrupt_cuts_the_speech_and_the_stream_goes_on(tts: TtsServer) -> None:
    whole = (await synthesize(tts.stub, text=LONG_CLAUSE, chunk_duration_ms=20)).audio
    call = tts.stub.SynthesizeStream(timeout=WAIT_S)
    await call.write(
        tts_pb2.SynthesizeStreamRequest(config=tts_pb2.SynthesisConfig(chunk_duration_ms=20))
    )
    await call.write(text(LONG_CLAUSE + " And then some text still pending"))
    await read_until(call, "chunk")
    await call.write(INTERRUPT)
    before_cut = await read_until(call, "interrupted")
    marker = before_cut[-1].interrupted
    await call.write(text("Goodbye."))
    await call.write(END)
    await call.done_writing()
    after_cut = await read_until(call, "summary")
    spoken_before = audio(before_cut)
    assert len(spoken_before) < len(whole)  # cut, not finished
    assert (
        marker.sample_offset * 2 + len(audio(after_cut)) == after_cut[-1].summary.sample_count * 2
    )
    assert marker.dropped_chars >= len(" And then some text still pending")
    goodbye = len((await synthesize(tts.stub, text="Goodbye.")).audio)
    assert abs(len(audio(after_cut)) - goodbye) < 0.01 * goodbye


@pytest.mark.parametrize(
    ("messages", "code", "named"),
    [
        ([text("Hello.")], grpc.StatusCode.INVALID_ARGUMENT, "config: must be the stream's"),
        ([CONFIG, CONFIG], grpc.StatusCode.INVALID_ARGUMENT, "config: only the stream's first"),
        ([CONFIG, END, text("More.")], grpc.StatusCode.INVALID_ARGUMENT, "end: "),
        ([CONFIG, tts_pb2.SynthesizeStreamRequest()], grpc.StatusCode.INVALID_ARGUMENT, "content:"),
        ([CONFIG, text("x" * 6000)], grpc.StatusCode.INVALID_ARGUMENT, "text: a fragment"),
        ([CONFIG] + [text("word " * 900)] * 2, grpc.StatusCode.RESOURCE_EXHAUSTED, "text: "),
        (
            [tts_pb2.SynthesizeStreamRequest(config=tts_pb2.SynthesisConfig(voice="nobody"))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "voice: unknown voice",
        ),
    ],
)
async def test_bad_streams_end_with_a_status_naming_the_problem_and_free_their_slot(
    start_tts: StartTts,
    messages: list[tts_pb2.SynthesizeStreamRequest],
    code: grpc.StatusCode,
    named: str,
) -> None:
    tts = await start_tts(max_text_chars=5000)
    call = open_stream(tts)
    for message in messages:
        await call.write(message)
    with pytest.raises(aio.AioRpcError) as raised:
        await read_to_end(call)
    assert raised.value.code() == code
    assert (raised.value.details() or "").startswith(named)
    await wait_until(lambda: tts.service.admission.in_flight == 0, "the stream's slot freed")


async def test_a_stream_is_one_server_span_in_the_callers_trace(tts: TtsServer) -> None:
    call = open_stream(tts)
    await call.write(CONFIG)
    await call.write(text("Traced."))
    await call.write(END)
    await call.done_writing()
    await read_until(call, "summary")
    assert await call.read() is aio.EOF  # the client's span ends with its stream

    def spans() -> list[ReadableSpan]:
        return tts.finished_spans("/chorus.tts.v1.TextToSpeech/SynthesizeStream")

    await wait_until(lambda: len(spans()) == 2, "the client's and the server's span")
    by_kind = {span.kind: span for span in spans()}
    client, server = by_kind[SpanKind.CLIENT], by_kind[SpanKind.SERVER]
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id


async def test_a_client_that_goes_away_frees_the_stream_s_slot(
    tts: TtsServer,
) -> None:
    call = open_stream(tts)
    await call.write(CONFIG)
    await call.write(text(LONG_CLAUSE + " " + LONG_CLAUSE))
    await read_until(call, "chunk")
    call.cancel()
    await wait_until(lambda: tts.service.admission.in_flight == 0, "the stream's slot freed")
