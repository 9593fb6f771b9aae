import asyncio
import threading

import pytest

from services.tts.engine_scheduler import EngineScheduler
from tests.support.waiting import WAIT_S, wait_until


async def test_lower_priority_numbers_run_first_then_arrival_order() -> None:
    scheduler = EngineScheduler(1)
    busy = threading.Event()
    gate = threading.Event()
    order: list[str] = []

    def hold_the_worker() -> None:
        busy.set()
        # Bounded, so that a failing test cannot leave the worker blocked for good.
        if not gate.wait(WAIT_S):
            raise TimeoutError("the test never released the worker")

    try:
        blocker = asyncio.create_task(scheduler.run(0, hold_the_worker))
        await wait_until(busy.is_set, "the one worker to be busy")
        jobs = [
            asyncio.create_task(scheduler.run(priority, order.append, name))
            for priority, name in [(3, "third sentence"), (1, "a"), (0, "first"), (1, "b")]
        ]
        # Every call must be queued before the worker is free to choose among them.
        await wait_until(lambda: scheduler.queued == len(jobs), "all four calls queued")
        gate.set()
        await asyncio.gather(blocker, *jobs)
        assert order == ["first", "a", "b", "third sentence"]
    finally:
        gate.set()
        scheduler.shutdown()


async def test_results_and_errors_reach_the_caller() -> None:
    scheduler = EngineScheduler(2)
    try:
        assert await scheduler.run(0, pow, 2, 10) == 1024
        with pytest.raises(ZeroDivisionError):
            await scheduler.run(0, lambda: 1 / 0)
    finally:
        scheduler.shutdown()


async def test_shutdown_stops_the_threads() -> None:
    # Only this scheduler's own threads are watched: other tests' threads, or threads
    # that end late, are no business of this one.
    scheduler = EngineScheduler(2)
    threads = scheduler.threads
    assert len(threads) == 2
    assert all(thread.is_alive() for thread in threads)
    scheduler.shutdown()
    await wait_until(
        lambda: not any(thread.is_alive() for thread in threads),
        "the scheduler's threads to end after shutdown",
    )
