import asyncio
import threading

import pytest

from services.tts.engine_scheduler import EngineScheduler


async def test_lower_priority_numbers_run_first_then_arrival_order() -> None:
    scheduler = EngineScheduler(1)
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = asyncio.create_task(scheduler.run(0, gate.wait, 5))
        await asyncio.sleep(0.05)  # the one worker is now busy
        jobs = [
            asyncio.create_task(scheduler.run(priority, order.append, name))
            for priority, name in [(3, "third sentence"), (1, "a"), (0, "first"), (1, "b")]
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, *jobs)
        assert order == ["first", "a", "b", "third sentence"]
    finally:
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
    before = threading.active_count()
    scheduler = EngineScheduler(2)
    assert threading.active_count() == before + 2
    scheduler.shutdown()
    for _ in range(100):
        if threading.active_count() == before:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() == before
