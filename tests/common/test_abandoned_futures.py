"""Abandoned futures: kept until they end, and whatever they end in is taken quietly."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest

from services.common.abandoned_futures import abandon
from tests.support.waiting import wait_until


async def stubborn_wait(release: asyncio.Event, waiting: asyncio.Event) -> None:
    """A wait that outlives cancellation, as gRPC's channel watch does, then fails."""
    waiting.set()
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            continue
    raise RuntimeError("the channel closed")


async def test_an_abandoned_wait_is_kept_until_it_ends_and_its_error_taken(
    loop_reports: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    release, waiting = asyncio.Event(), asyncio.Event()
    wait = asyncio.ensure_future(stubborn_wait(release, waiting))
    await waiting.wait()
    abandon(wait)
    still_there = weakref.ref(wait)
    del wait
    gc.collect()
    assert still_there() is not None, "the loop holds tasks only weakly: abandon must not"

    with caplog.at_level(logging.DEBUG, logger="services.common.abandoned_futures"):
        release.set()
        await wait_until(lambda: still_there() is None, "the ended wait let go")
        gc.collect()
    assert loop_reports == []
    assert "RuntimeError('the channel closed')" in caplog.text


async def test_a_wait_abandoned_after_it_failed_is_taken_too(
    loop_reports: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    async def failing() -> None:
        raise RuntimeError("failed before anyone looked")

    wait = asyncio.ensure_future(failing())
    await asyncio.wait((wait,))
    with caplog.at_level(logging.DEBUG, logger="services.common.abandoned_futures"):
        abandon(wait)
    del wait
    await asyncio.sleep(0)  # the loop's last reference (a done callback's) goes
    gc.collect()
    assert loop_reports == []
    assert "RuntimeError('failed before anyone looked')" in caplog.text


async def test_an_abandoned_wait_that_honours_cancellation_is_cancelled(
    loop_reports: list[dict[str, Any]],
) -> None:
    wait = asyncio.ensure_future(asyncio.Event().wait())
    await asyncio.sleep(0)
    abandon(wait)
    with pytest.raises(asyncio.CancelledError):
        await wait
    assert loop_reports == []
