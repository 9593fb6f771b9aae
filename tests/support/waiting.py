"""Waiting for what a test expects, with a deadline that only bounds the wait.

The tests run on a noisy shared machine, sometimes with every core busy, so they never
assert how long something took. Where a test must wait for something that happens on
another thread, process or connection, it polls for it; the deadline is generous and is
there only so that a broken behaviour fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

WAIT_S = 30.0
"""How long a test waits for a condition before failing: far beyond any honest wait."""

_POLL_S = 0.01


async def wait_until(
    condition: Callable[[], bool], what: str = "the condition", timeout_s: float = WAIT_S
) -> None:
    """Return once ``condition()`` is true; fail, naming ``what``, after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not met within {timeout_s:g} s")
        await asyncio.sleep(_POLL_S)


async def poll(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    timeout_s: float = WAIT_S,
) -> T:
    """Call ``probe`` until ``until`` accepts its answer; returns the last answer.

    When time runs out the last answer is returned anyway, so that the test's own
    assertions on it say what was missing.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await probe()
        if until(answer) or time.monotonic() >= deadline:
            return answer
        await asyncio.sleep(_POLL_S)
