import asyncio
import functools
import os
from pathlib import Path

import pytest

from services.common.errors import Unavailable
from services.common.process_pool import ProcessPool
from tests.support.waiting import WAIT_S, wait_until
from tests.support.worker_jobs import hold_until_exists


def square(x: int) -> int:
    return x * x


def worker_pid() -> int:
    return os.getpid()


def die() -> None:
    os._exit(3)


async def test_start_spawns_every_worker_before_any_request() -> None:
    pool = ProcessPool(2)
    try:
        pids = await pool.start()
        assert len(pids) == 2
        assert os.getpid() not in pids
        assert await pool.run(square, 7) == 49
        assert await pool.run(worker_pid) in pids
    finally:
        pool.close()


async def test_a_dead_worker_fails_its_request_and_the_pool_recovers() -> None:
    pool = ProcessPool(1)
    try:
        await pool.start()
        with pytest.raises(Unavailable, match="worker process died"):
            await pool.run(die)
        assert await pool.run(square, 3) == 9
    finally:
        pool.close()


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ProcessPool(0)


def record_warm_up(folder: str) -> None:
    """A warm-up that leaves a file named after its worker's pid."""
    (Path(folder) / str(os.getpid())).touch()


async def test_a_dead_worker_fails_only_its_own_request(tmp_path: Path) -> None:
    """Killing one of two workers fails the request it ran; the other's goes on, and the
    replacement is warmed up before it takes work."""
    release = tmp_path / "release"
    warmed = tmp_path / "warmed"
    warmed.mkdir()
    pool = ProcessPool(2, warm_up=functools.partial(record_warm_up, str(warmed)))
    try:
        first_pids = await pool.start()
        survivor = asyncio.create_task(pool.run(hold_until_exists, str(release), WAIT_S))
        await wait_until(lambda: pool.idle_workers == 1, "one worker busy")
        with pytest.raises(Unavailable, match="worker process died"):
            await pool.run(die)
        release.touch()
        assert await survivor is True
        await wait_until(lambda: pool.idle_workers == 2, "the replacement idle")
        assert len(pool.pids) == 2
        replacement = pool.pids - first_pids
        assert len(replacement) == 1
        assert {int(path.name) for path in warmed.iterdir()} == first_pids | replacement
    finally:
        pool.close()


async def test_a_caller_that_stops_waiting_does_not_free_the_worker(tmp_path: Path) -> None:
    release = tmp_path / "release"
    pool = ProcessPool(1)
    try:
        await pool.start()
        waiting = asyncio.create_task(pool.run(hold_until_exists, str(release), WAIT_S))
        await wait_until(lambda: pool.idle_workers == 0, "the worker busy")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.idle_workers == 0
        release.touch()
        await wait_until(lambda: pool.idle_workers == 1, "the worker idle again")
        assert await pool.run(square, 4) == 16
    finally:
        pool.close()
