"""The orchestrator's speech plumbing below its RPCs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from services.orchestrator.speech import _until


async def test_a_read_left_when_its_consumer_stops_ends_unreported(
    loop_reports: list[dict[str, Any]],
) -> None:
    # gRPC stops the consumer of a call's requests (tts ended, the call was cancelled)
    # while it waits on the caller's stream; the caller's stream ends later.
    reading, callers_end = asyncio.Event(), asyncio.Event()

    async def callers_stream() -> AsyncIterator[int]:
        yield 1
        reading.set()
        await callers_end.wait()

    async def consume() -> None:
        async for _ in _until(callers_stream(), asyncio.Event()):
            pass

    consumer = asyncio.ensure_future(consume())
    await reading.wait()
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    callers_end.set()
    for _ in range(3):  # the read left behind, if any, runs to its end
        await asyncio.sleep(0)
    gc.collect()
    assert loop_reports == []


async def test_items_pass_until_finished_is_set() -> None:
    finished = asyncio.Event()

    async def items() -> AsyncIterator[int]:
        yield 1
        yield 2
        finished.set()
        await asyncio.Event().wait()  # never a third: finished cuts the wait short
        yield 3

    assert [item async for item in _until(items(), finished)] == [1, 2]
