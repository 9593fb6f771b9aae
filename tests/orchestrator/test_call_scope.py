"""CallScope on its own: what it cancels when its RPC ends, and what it leaves alone.

(tests/orchestrator/test_cancellation.py checks the same through real servers.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from services.common.grpc_context import Context
from services.orchestrator.call_scope import CallScope


class EndingContext:
    """The one part of a servicer context a CallScope uses: the done callbacks."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], None]] = []

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._callbacks.append(callback)

    def end(self) -> None:
        """End the RPC, as gRPC does: every done callback, once."""
        for callback in self._callbacks:
            callback(self)


def open_scope() -> tuple[CallScope, EndingContext]:
    context = EndingContext()
    return CallScope.open(cast(Context, context)), context


async def test_the_end_of_the_rpc_cancels_its_running_tasks_and_leaves_finished_ones() -> None:
    scope, context = open_scope()
    finished = scope.task(asyncio.sleep(0, result="done"))
    running = scope.task(asyncio.Event().wait())
    await finished
    context.end()
    await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()
    assert finished.result() == "done"


async def test_work_started_after_the_rpc_ended_is_cancelled_at_once() -> None:
    scope, context = open_scope()
    context.end()
    late = scope.task(asyncio.Event().wait())
    await asyncio.gather(late, return_exceptions=True)
    assert late.cancelled()


async def test_the_scope_is_current_where_it_was_opened_and_in_tasks_started_there() -> None:
    assert CallScope.current() is None
    scope, _context = open_scope()
    assert CallScope.current() is scope

    async def current_in_task() -> CallScope | None:
        return CallScope.current()

    assert await scope.task(current_in_task()) is scope
