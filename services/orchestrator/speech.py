"""Speech through the inner services: tts for the audio, prosody for the mood.

Audio travels between services as raw 16-bit PCM (no WAV headers to parse per sentence);
every call carries what is left of the caller's deadline (``remaining_s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc

from services.common.abandoned_futures import abandon
from services.common.audio_codecs import EncodedChunk, Encoding
from services.common.audio_proto import encoding_proto
from services.common.errors import InvalidArgument
from services.common.pcm import SampleFormat
from services.orchestrator.upstreams import Upstream

SAMPLE_RATE = 22050
RequestT = TypeVar("RequestT")
ENCODING = audio_pb2.AUDIO_ENCODING_PCM_S16LE


@dataclass(frozen=True)
class Adjusted:
    """A sentence's audio after prosody, and how far prosody trusted it."""

    pcm: bytes
    confidence: prosody_pb2.ConfidenceReport
    fallback: bool
    fallback_reason: str


class SpeechClient:
    """The tts and prosody calls the orchestrator's RPCs are made of."""

    def __init__(self, tts: Upstream, prosody: Upstream) -> None:
        self.tts = tts
        self.prosody = prosody

    @property
    def _tts(self) -> tts_pb2_grpc.TextToSpeechAsyncStub:
        return self.tts.stub(tts_pb2_grpc.TextToSpeechStub)

    @property
    def _prosody(self) -> prosody_pb2_grpc.ProsodyAsyncStub:
        return self.prosody.stub(prosody_pb2_grpc.ProsodyStub)

    async def stream(
        self,
        text: str,
        voice: str,
        language: str,
        sample_rate: int,
        remaining_s: float | None,
        encoding: Encoding = SampleFormat.S16LE,
        speaking_rate: float = 0.0,
    ) -> AsyncGenerator[EncodedChunk, None]:
        """tts audio for ``text`` as it is made, at ``sample_rate`` in ``encoding`` (16-bit
        PCM unless told) and ``speaking_rate`` (tts's: 0 is the voice's normal rate), each
        chunk with the PCM samples it covers."""
        request = _synthesize_request(
            text, voice, language, sample_rate, encoding, False, speaking_rate
        )
        async for item in self._synthesized(request, remaining_s):
            if isinstance(item, EncodedChunk):
                yield item

    def stream_with_words(
        self,
        text: str,
        voice: str,
        language: str,
        sample_rate: int,
        remaining_s: float | None,
        encoding: Encoding = SampleFormat.S16LE,
        speaking_rate: float = 0.0,
    ) -> AsyncGenerator[EncodedChunk | tts_pb2.WordTiming, None]:
        """``stream`` with tts's word timings, as tts sends them: each word before the
        chunk its start is in (none from an engine without timings)."""
        request = _synthesize_request(
            text, voice, language, sample_rate, encoding, True, speaking_rate
        )
        return self._synthesized(request, remaining_s)

    async def _synthesized(
        self, request: tts_pb2.SynthesizeRequest, remaining_s: float | None
    ) -> AsyncGenerator[EncodedChunk | tts_pb2.WordTiming, None]:
        try:
            async for response in self._tts.Synthesize(request, timeout=remaining_s):
                kind = response.WhichOneof("content")
                if kind == "chunk":
                    yield EncodedChunk(response.chunk.audio, response.chunk.sample_count)
                elif kind == "word":
                    yield response.word
        except grpc.aio.AioRpcError as error:
            raise self.tts.error(error) from None

    async def synthesize_with_words(
        self,
        text: str,
        voice: str,
        language: str,
        sample_rate: int,
        remaining_s: float | None,
        speaking_rate: float = 0.0,
    ) -> tuple[bytes, list[tts_pb2.WordTiming]]:
        """tts audio for ``text`` whole (16-bit PCM at ``sample_rate``), with its words."""
        audio: list[bytes] = []
        words: list[tts_pb2.WordTiming] = []
        timed = self.stream_with_words(
            text, voice, language, sample_rate, remaining_s, speaking_rate=speaking_rate
        )
        async for item in timed:
            if isinstance(item, EncodedChunk):
                audio.append(item.data)
            else:
                words.append(item)
        return b"".join(audio), words

    async def synthesize(
        self,
        text: str,
        voice: str,
        language: str,
        sample_rate: int,
        remaining_s: float | None,
        speaking_rate: float = 0.0,
    ) -> bytes:
        """tts audio for ``text``, whole."""
        pieces = self.stream(
            text, voice, language, sample_rate, remaining_s, speaking_rate=speaking_rate
        )
        return b"".join([chunk.data async for chunk in pieces])

    async def adjust(
        self, pcm: bytes, sample_rate: int, preset: str, remaining_s: float | None
    ) -> Adjusted:
        """``pcm`` reshaped by prosody's ``preset`` (the original when prosody is unsure)."""
        request = prosody_pb2.AdjustRequest(
            audio=prosody_pb2.Audio(
                raw=prosody_pb2.RawAudio(
                    pcm=pcm,
                    format=audio_pb2.AudioFormat(
                        sample_rate_hz=sample_rate, encoding=ENCODING, channels=1
                    ),
                )
            ),
            preset=preset,
        )
        try:
            response = await self._prosody.Adjust(request, timeout=remaining_s)
        except grpc.aio.AioRpcError as error:
            failure = self.prosody.error(error)
            if isinstance(failure, InvalidArgument) and failure.field.startswith("audio"):
                # The audio is tts's, not the caller's: text with nothing to say ("...",
                # an emoji a voice has no word for) makes none, or silence, which prosody
                # cannot reshape. The speech goes out as it is, reported as a fallback.
                reason = f"prosody left the speech as it was: {failure.message}"
                return Adjusted(pcm, prosody_pb2.ConfidenceReport(), True, reason)
            raise failure from None
        return Adjusted(
            response.audio.raw.pcm, response.confidence, response.fallback, response.fallback_reason
        )

    async def synthesize_stream(
        self, requests: AsyncIterator[tts_pb2.SynthesizeStreamRequest], remaining_s: float | None
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        """tts's SynthesizeStream over ``requests``: its responses as they come. Owned by
        the current call scope like every upstream call, so it ends with its caller's.

        An error raised while reading ``requests`` (a caller's message that does not
        parse) is caught before gRPC's request consumer sees it, which would swallow it and
        leave this stream waiting for its deadline: it ends the stream, as it is. (Writing
        the messages here instead races tts's own status: a write after tts has answered
        turns its status into INTERNAL.)
        """
        failure: Exception | None = None
        call: (
            grpc.aio.StreamStreamCall[tts_pb2.SynthesizeStreamRequest, tts_pb2.SynthesizeResponse]
            | None
        ) = None
        finished = asyncio.Event()

        async def forwarded() -> AsyncGenerator[tts_pb2.SynthesizeStreamRequest, None]:
            nonlocal failure
            try:
                async for request in _until(requests, finished):
                    yield request
            except asyncio.CancelledError:
                raise
            except Exception as error:  # reading the caller's stream failed: end tts's too
                failure = error
                if call is not None:
                    call.cancel()

        call = self._tts.SynthesizeStream(forwarded(), timeout=remaining_s)
        try:
            async for response in call:
                yield response
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as error:
            if failure is not None:
                raise failure from None
            if isinstance(error, grpc.aio.AioRpcError):
                raise self.tts.error(error) from None
            raise
        finally:
            # tts may end first (an error, a deadline) while gRPC's request consumer still
            # waits on the caller's stream: stop that wait, or the consumer, and the
            # caller's stream with it, would stay suspended for good.
            finished.set()
        if failure is not None:
            raise failure


async def _until(
    items: AsyncIterator[RequestT], finished: asyncio.Event
) -> AsyncGenerator[RequestT, None]:
    """``items`` until they end or ``finished`` is set, whichever comes first; a wait for
    the next item that ``finished`` cuts short is cancelled (the iterator sees it)."""
    stop = asyncio.ensure_future(finished.wait())
    item: asyncio.Future[RequestT] | None = None
    try:
        while True:
            item = asyncio.ensure_future(anext(items))
            await asyncio.wait((item, stop), return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                return
            try:
                yield item.result()
            except StopAsyncIteration:
                return
    finally:
        # Also when this generator is itself cancelled or closed mid-wait (gRPC's request
        # consumer stopped): a read left behind would end with the caller's call, in an
        # error no one retrieves.
        if item is not None:
            abandon(item)
        abandon(stop)


def _synthesize_request(
    text: str,
    voice: str,
    language: str,
    sample_rate: int,
    encoding: Encoding,
    word_timings: bool,
    speaking_rate: float,
) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(
        text=text,
        voice=voice,
        language=language,
        sample_rate_hz=sample_rate,
        encoding=encoding_proto(encoding),
        speaking_rate=speaking_rate,
        word_timings=word_timings,
    )
