"""The orchestrator's pipelines, free of gRPC: each RPC's work as plain async code that
yields domain events, which the servicer maps to messages.

Each pipeline gets what ties it to its call from outside: ``tasks``, which owns the tasks
it starts (a CallScope cancels them when the call ends), and ``remaining``, the seconds
left before the caller's deadline (None without one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Remaining = Callable[[], float | None]
"""Seconds left before the caller's deadline, None when it set none."""


class TaskOwner(Protocol):
    """Starts tasks that end, at the latest, when the call they serve ends."""

    def task(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """``work`` in a task owned until it is done."""
        ...
