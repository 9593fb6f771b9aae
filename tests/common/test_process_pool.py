import os

import pytest

from services.common.errors import Unavailable
from services.common.process_pool import ProcessPool


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
