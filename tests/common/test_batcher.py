"""The generic batcher: batch composition, windows, errors, cancellation, closing.

Batches are made deterministic without timing: a window far longer than any test (so a
batch leaves only when full), or a batch held open by a real Event in ``run_batch`` while
the test queues more.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from typing import Any

import pytest

from services.common.batcher import Batcher, BatcherClosed, RunBatch
from tests.support.waiting import WAIT_S

NEVER_S = 3600.0  # a window no test waits out: batches leave when full


def doubled(items: Sequence[int]) -> list[int | BaseException]:
    return [2 * item for item in items]


@pytest.fixture
def batches() -> list[list[int]]:
    return []


MakeBatcher = Callable[..., Batcher[int, int]]
"""Builds a Batcher that records its batches, closed after the test."""


@pytest.fixture
def make(batches: list[list[int]]) -> Iterator[MakeBatcher]:
    made: list[Batcher[int, int]] = []

    def build(run: RunBatch[int, int], **options: Any) -> Batcher[int, int]:
        batcher = Batcher(run, on_batch=lambda items: batches.append(list(items)), **options)
        made.append(batcher)
        return batcher

    yield build
    for batcher in made:
        batcher.close()


def test_items_that_fill_a_batch_run_together_in_arrival_order(
    make: MakeBatcher, batches: list[list[int]]
) -> None:
    batcher = make(doubled, max_batch=3, window_s=NEVER_S)
    futures = [batcher.submit(item) for item in (1, 2, 3, 4, 5, 6)]
    assert [future.result(WAIT_S) for future in futures] == [2, 4, 6, 8, 10, 12]
    assert batches == [[1, 2, 3], [4, 5, 6]]


def test_a_lone_item_runs_once_its_window_has_passed(
    make: MakeBatcher, batches: list[list[int]]
) -> None:
    batcher = make(doubled, max_batch=8, window_s=0.01)
    assert batcher.submit(21).result(WAIT_S) == 42
    assert batches == [[21]]


def test_max_batch_one_runs_each_item_at_once(make: MakeBatcher, batches: list[list[int]]) -> None:
    batcher = make(doubled, max_batch=1, window_s=NEVER_S)
    assert [batcher.submit(item).result(WAIT_S) for item in (1, 2)] == [2, 4]
    assert batches == [[1], [2]]


def test_items_queued_while_every_worker_is_busy_skip_the_window(
    make: MakeBatcher, batches: list[list[int]]
) -> None:
    started, release = threading.Event(), threading.Event()

    def held(items: Sequence[int]) -> list[int | BaseException]:
        if items[0] == 1:
            started.set()
            release.wait(WAIT_S)
        return doubled(items)

    # A window no test waits out: only a full batch or a busy worker lets items go.
    batcher = make(held, max_batch=2, window_s=NEVER_S)
    first = [batcher.submit(item) for item in (1, 2)]
    assert started.wait(WAIT_S)
    later = [batcher.submit(item) for item in (3, 4, 5)]
    release.set()
    assert [future.result(WAIT_S) for future in first + later] == [2, 4, 6, 8, 10]
    # Queued while the one worker was busy: due at once, oldest first, the last alone.
    assert batches == [[1, 2], [3, 4], [5]]


def test_an_item_answered_with_an_error_fails_alone(make: MakeBatcher) -> None:
    def picky(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"odd {item}") if item % 2 else item for item in items]

    batcher = make(picky, max_batch=2, window_s=NEVER_S)
    odd, even = batcher.submit(1), batcher.submit(2)
    assert even.result(WAIT_S) == 2
    with pytest.raises(ValueError, match="odd 1"):
        odd.result(WAIT_S)


def test_a_failing_batch_is_run_again_item_by_item(
    make: MakeBatcher, batches: list[list[int]]
) -> None:
    def breaks_on_13(items: Sequence[int]) -> list[int | BaseException]:
        if 13 in items:
            raise RuntimeError("13 breaks the batch")
        return doubled(items)

    batcher = make(breaks_on_13, max_batch=3, window_s=NEVER_S)
    futures = [batcher.submit(item) for item in (1, 13, 3)]
    assert futures[0].result(WAIT_S) == 2
    assert futures[2].result(WAIT_S) == 6
    with pytest.raises(RuntimeError, match="13 breaks the batch"):
        futures[1].result(WAIT_S)
    assert batches == [[1, 13, 3], [1], [13], [3]]


def test_a_wrong_number_of_results_fails_each_item_on_its_own(
    make: MakeBatcher,
) -> None:
    batcher = make(lambda items: [0], max_batch=2, window_s=NEVER_S)
    one, two = batcher.submit(1), batcher.submit(2)
    # Alone, each item gets the one result the function gives.
    assert (one.result(WAIT_S), two.result(WAIT_S)) == (0, 0)


def test_an_item_cancelled_before_its_batch_gives_its_place_to_the_next(
    make: MakeBatcher, batches: list[list[int]]
) -> None:
    batcher = make(doubled, max_batch=3, window_s=NEVER_S)
    cancelled = batcher.submit(1)
    assert cancelled.cancel()
    rest = [batcher.submit(item) for item in (2, 3, 4)]
    assert [future.result(WAIT_S) for future in rest] == [4, 6, 8]
    assert batches == [[2, 3, 4]]
    with pytest.raises(CancelledError):
        cancelled.result(0)


def test_several_workers_run_batches_at_once(make: MakeBatcher) -> None:
    both_running = threading.Barrier(2, timeout=WAIT_S)

    def meets_the_other(items: Sequence[int]) -> list[int | BaseException]:
        both_running.wait()  # only passes when two batches run at the same time
        return doubled(items)

    batcher = make(meets_the_other, max_batch=1, window_s=0.0, workers=2)
    futures = [batcher.submit(item) for item in (1, 2)]
    assert [future.result(WAIT_S) for future in futures] == [2, 4]


async def test_a_coroutine_awaits_its_item_without_holding_a_thread(
    make: MakeBatcher,
) -> None:
    batcher = make(doubled, max_batch=2, window_s=NEVER_S)
    results = await asyncio.gather(*(asyncio.wrap_future(batcher.submit(item)) for item in (5, 6)))
    assert results == [10, 12]


def test_close_fails_waiting_items_and_refuses_new_ones(batches: list[list[int]]) -> None:
    batcher: Batcher[int, int] = Batcher(doubled, max_batch=2, window_s=NEVER_S)
    waiting = batcher.submit(1)
    assert batcher.close()
    with pytest.raises(BatcherClosed):
        waiting.result(WAIT_S)
    with pytest.raises(BatcherClosed):
        batcher.submit(2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0, "window_s": 0.0}, "max_batch must be at least 1"),
        ({"max_batch": 1, "window_s": -1.0}, "window_s must be 0 or more"),
        ({"max_batch": 1, "window_s": float("nan")}, "window_s must be 0 or more"),
        ({"max_batch": 1, "window_s": 0.0, "workers": 0}, "workers must be at least 1"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Batcher(doubled, **options)  # type: ignore[arg-type]
