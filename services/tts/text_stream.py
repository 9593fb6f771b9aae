"""SynthesizeStream's work, free of gRPC: text fragments in, speech out, clause by clause.

Two activities share one stream. The reader takes the client's messages as they come:
fragments go to a ClauseAssembler, and each clause it completes joins a queue; a flush
queues what is pending; an interrupt (barge-in) stops the clause being spoken, forgets what
is queued and pending, and marks the cut; the end queues the rest. The speaker takes the
clauses in order and speaks each as soon as it can. Events leave through one queue of a few
places, so a reader of the responses that falls behind holds the speaker back, never the
text reader (an interrupt gets through whatever the speaker is doing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.text_inputs import FlushIn, InterruptIn, TextIn, TextInput
from services.tts.clauses import Clause, ClauseAssembler


@dataclass(frozen=True)
class ClauseStarted:
    """The speaker begins ``clause``, which was complete at ``ready_at``
    (``time.perf_counter()``)."""

    clause: Clause
    ready_at: float


@dataclass(frozen=True)
class Spoken:
    """The next piece of the speech, as the speak function made it."""

    piece: Any


@dataclass(frozen=True)
class Interrupted:
    """The audio was cut here; ``dropped_chars`` of the text went unspoken."""

    dropped_chars: int


StreamEvent = ClauseStarted | Spoken | Interrupted

SpeakClause = Callable[[Clause], AsyncGenerator[Any, None]]
"""Speaks one clause: its pieces (chunks, word timings) in order; closing it stops it."""

# Events waiting for the responses' reader: enough to ride out a slow write, few enough
# that the speaker never runs far ahead of what has been sent.
_EVENTS_AHEAD = 8


async def speak_text_stream(
    inputs: AsyncIterator[TextInput], speak: SpeakClause, max_pending_chars: int
) -> AsyncGenerator[StreamEvent, None]:
    """The speech of the text that ``inputs`` brings, as events, until its end.

    InvalidArgument names what is wrong with the inputs (``text`` after the end);
    ResourceExhausted names ``text`` when more would be waiting to be spoken than
    ``max_pending_chars``.
    """
    session = _Session(speak, ClauseAssembler(max_pending_chars))
    async with session.running(inputs):
        while True:
            event = await session.events.get()
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, _End):
                return
            yield event


class _End:
    """The speaker has spoken the last clause."""


_END = _End()


class _Session:
    def __init__(self, speak: SpeakClause, assembler: ClauseAssembler) -> None:
        self._speak = speak
        self._assembler = assembler
        self.events: asyncio.Queue[StreamEvent | _End | BaseException] = asyncio.Queue(
            _EVENTS_AHEAD
        )
        self._clauses: asyncio.Queue[tuple[Clause, float] | None] = asyncio.Queue()
        self._speaking: Clause | None = None
        self._speaker: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def running(self, inputs: AsyncIterator[TextInput]) -> AsyncIterator[None]:
        self._start_speaker()
        reader = asyncio.create_task(self._read(inputs))
        try:
            yield
        finally:
            for task in (reader, self._speaker):
                if task is not None:
                    task.cancel()
            await asyncio.gather(reader, *([self._speaker] if self._speaker else []),
                                 return_exceptions=True)  # fmt: skip

    def _start_speaker(self) -> None:
        self._speaker = asyncio.create_task(self._speak_clauses())

    async def _speak_clauses(self) -> None:
        try:
            while (queued := await self._clauses.get()) is not None:
                clause, ready_at = queued
                self._speaking = clause
                await self.events.put(ClauseStarted(clause, ready_at))
                async with contextlib.aclosing(self._speak(clause)) as pieces:
                    async for piece in pieces:
                        await self.events.put(Spoken(piece))
                self._speaking = None
            await self.events.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the engine failed: the stream ends with its error
            await self.events.put(error)

    async def _read(self, inputs: AsyncIterator[TextInput]) -> None:
        ended = False
        try:
            async for item in inputs:
                if ended:
                    raise InvalidArgument("end", "the stream sent more after its End")
                if isinstance(item, TextIn):
                    try:
                        clauses = self._assembler.add(item.text)
                    except OverflowError as error:
                        raise ResourceExhausted(f"text: {error}") from None
                    for clause in clauses:
                        self._queue(clause)
                elif isinstance(item, FlushIn):
                    self._queue(self._assembler.flush())
                elif isinstance(item, InterruptIn):
                    await self._interrupt()
                else:
                    self._queue(self._assembler.flush())
                    ended = True
            # The stream ends once the client has closed its side, after an End or without
            # one: only then is it known that no text comes after the End.
            self._queue(self._assembler.flush())
            self._clauses.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if self._speaker is not None:
                self._speaker.cancel()
            await self.events.put(error)

    def _queue(self, clause: Clause | None) -> None:
        if clause is not None:
            self._clauses.put_nowait((clause, time.perf_counter()))

    async def _interrupt(self) -> None:
        """Stop the clause being spoken (its engine within a chunk), forget the rest."""
        dropped = self._assembler.drop()
        while not self._clauses.empty():
            queued = self._clauses.get_nowait()
            if queued is not None:
                dropped += len(queued[0].text)
        if self._speaker is not None:
            self._speaker.cancel()
            await asyncio.gather(self._speaker, return_exceptions=True)
        if self._speaking is not None:
            dropped += len(self._speaking.text)
            self._speaking = None
        # Speech made but not yet sent goes too: the audio stops now, not a queue later.
        kept = [event for event in _drain(self.events) if not isinstance(event, Spoken)]
        for event in kept:
            self.events.put_nowait(event)
        await self.events.put(Interrupted(dropped))
        self._start_speaker()


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
