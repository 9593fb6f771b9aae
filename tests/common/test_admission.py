import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.common.admission import AdmissionController
from services.common.callers import CALLER
from services.common.errors import ResourceExhausted
from tests.support.metrics import metric_points
from tests.support.waiting import wait_until


def controller(
    max_in_flight: int, max_queue: int, timeout_s: float = 1.0
) -> tuple[AdmissionController, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    return (
        AdmissionController(
            max_in_flight=max_in_flight,
            max_queue=max_queue,
            queue_timeout_s=timeout_s,
            meter=meter,
        ),
        reader,
    )


async def test_refuses_at_once_beyond_in_flight_and_queue() -> None:
    admission, reader = controller(max_in_flight=2, max_queue=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.slot("M"):
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(3)]
    await wait_until(lambda: (admission.in_flight, admission.queued) == (2, 1), "2 held, 1 queued")

    # At once: refused on the very first step of entering, before anything could wait.
    entering = admission.slot("M").__aenter__()
    try:
        with pytest.raises(ResourceExhausted, match="at capacity"):
            entering.send(None)
    finally:
        entering.close()
    assert [p.value for p in metric_points(reader, "chorus.admission.rejections")] == [1]
    assert [p.value for p in metric_points(reader, "chorus.admission.queue_depth")] == [1]

    release.set()
    await asyncio.gather(*holders)
    assert (admission.in_flight, admission.queued) == (0, 0)


async def test_queued_requests_are_served_in_arrival_order() -> None:
    admission, _ = controller(max_in_flight=1, max_queue=5)
    order: list[int] = []
    gate = asyncio.Event()

    async def request(i: int) -> None:
        async with admission.slot("M"):
            order.append(i)
            await gate.wait()

    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(request(i)))
        # Arrival order is what is promised: let each arrive before the next is made.
        await wait_until(lambda: admission.in_flight + admission.queued == len(tasks))
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]


async def test_waiting_past_the_queue_timeout_is_refused_and_leaves_no_trace() -> None:
    admission, _ = controller(max_in_flight=1, max_queue=1, timeout_s=0.05)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.slot("M"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await wait_until(lambda: admission.in_flight == 1, "the holder to take the slot")
    with pytest.raises(ResourceExhausted, match="no slot within"):
        async with admission.slot("M"):
            pass
    assert admission.queued == 0
    release.set()
    await holder
    assert admission.in_flight == 0


async def test_cancelled_waiter_gives_its_place_back() -> None:
    admission, _ = controller(max_in_flight=1, max_queue=2)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.slot("M"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await wait_until(lambda: admission.in_flight == 1, "the holder to take the slot")
    waiter = asyncio.create_task(hold())
    await wait_until(lambda: admission.queued == 1, "the waiter to queue")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.queued == 0
    release.set()
    await holder
    assert admission.in_flight == 0


async def test_one_caller_holds_at_most_its_share() -> None:
    reader = InMemoryMetricReader()
    admission = AdmissionController(
        max_in_flight=4,
        max_queue=4,
        queue_timeout_s=30.0,
        meter=MeterProvider(metric_readers=[reader]).get_meter("test"),
        caller_share=0.5,
    )
    release = asyncio.Event()

    async def hold(caller: str) -> None:
        CALLER.set(caller)  # each task runs in a copy of the context
        async with admission.slot("M"):
            await release.wait()

    greedy = [asyncio.create_task(hold("greedy")) for _ in range(2)]
    await wait_until(lambda: admission.held_by("greedy") == 2, "greedy's two slots")
    CALLER.set("greedy")
    with pytest.raises(ResourceExhausted, match="caller greedy holds 2 of the 4 slots"):
        async with admission.slot("M"):
            pass
    CALLER.set("polite")
    async with admission.slot("M"):
        assert admission.in_flight == 3
    release.set()
    await asyncio.gather(*greedy)
    assert admission.held_by("greedy") == 0
    assert admission.in_flight == 0


def test_the_share_is_a_fraction() -> None:
    meter = MeterProvider().get_meter("test")
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match="caller_share"):
            AdmissionController(
                max_in_flight=1, max_queue=0, queue_timeout_s=1, meter=meter, caller_share=share
            )
