"""Large images on a real vision server: every stage whose work grows with the pixels runs
in a worker thread, so the event loop keeps answering (health checks here) meanwhile, and
runs inside the request's admission slot, so a request beyond the limit queues or is
refused before its image is decoded.

The server and these tests share one event loop, whose default executor is a
StageHolder: it keeps one stage's work waiting in its worker thread until the test lets it
go. While it waits the stage is provably running off the loop and unfinished, so whatever
the server answers meanwhile it answered during that stage; nothing depends on how long
anything takes. A stage that ran on the event loop would never be held: its request
would finish first, and the tests fail saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
import pytest_asyncio
from chorus.vision.v1 import vision_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image as PilImage

from services.vision.server import SERVICE_NAME, VisionService
from services.vision.settings import VisionSettings
from tests.support.service_harness import server_starter
from tests.support.waiting import wait_until
from tests.vision.crafted import png_claiming
from tests.vision.harness import VisionServer, astronaut, jpeg
from tests.vision.held_stages import StageHolder

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIDE = 1600
# Larger than the models' working size (1280), so the matte is scaled back up and the
# portrait's crop gets its own working copy: every stage has its thread work to do.
LARGE = jpeg(np.asarray(PilImage.fromarray(astronaut()).resize((SIDE, SIDE))))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stages() -> AsyncIterator[StageHolder]:
    """The module's event loop's default executor, where ``asyncio.to_thread`` sends work."""
    holder = StageHolder()
    asyncio.get_running_loop().set_default_executor(holder)
    yield holder
    holder.shutdown(wait=True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def vision(stages: StageHolder) -> AsyncIterator[VisionServer]:
    """One request at a time, one more queued (for as long as a test needs), no cache (so
    each request does its work), no per-caller share (one test client sends everything)."""
    settings = VisionSettings(
        host="127.0.0.1",
        port=0,
        max_pixels=20_000_000,
        max_in_flight=1,
        max_queue=1,
        queue_timeout_s=600.0,
        caller_share=1.0,
        cache_max_bytes=0,
    )
    async with server_starter(VisionServer) as start:
        yield await start(lambda telemetry: VisionService(settings, telemetry), settings, True)


async def health_answers(vision: VisionServer, count: int) -> list[int]:
    stub = health_pb2_grpc.HealthStub(vision.channel)
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    return [(await stub.Check(request, timeout=60)).status for _ in range(count)]


@pytest.mark.parametrize(
    ("call", "stage"),
    [
        ("DetectPersons", "vision.decode"),
        ("RemoveBackground", "vision.decode"),
        ("RemoveBackground", "vision.matte"),  # the matte scaled to the original's size
        ("RemoveBackground", "vision.encode"),
        ("Portrait", "vision.decode"),
        ("Portrait", "vision.crop"),
        ("Portrait", "vision.matte"),
        ("Portrait", "vision.encode"),
    ],
)
async def test_health_is_answered_while_a_large_image_is_in_a_stage(
    vision: VisionServer, stages: StageHolder, call: str, stage: str
) -> None:
    request = getattr(vision_pb2, f"{call}Request")(image=LARGE)
    with stages.holding(stage):
        answer = asyncio.ensure_future(getattr(vision.stub, call)(request, timeout=600))
        await wait_until(
            lambda: stages.waiting == 1 or answer.done(), f"{stage} of {call} to reach a thread"
        )
        assert not answer.done(), f"{call} was answered without handing {stage} to a thread"
        assert await health_answers(vision, 3) == [health_pb2.HealthCheckResponse.SERVING] * 3
        assert stages.waiting == 1
        assert not answer.done()
    response = await answer
    assert (response.image_size.width, response.image_size.height) == (SIDE, SIDE)


async def test_a_request_waits_for_a_slot_before_its_image_is_decoded(
    vision: VisionServer, stages: StageHolder
) -> None:
    # Over the pixel limit: decoding this would refuse it at once, with INVALID_ARGUMENT.
    over = vision_pb2.DetectPersonsRequest(image=png_claiming(8000, 8000))
    admission = vision.service.admission
    with stages.holding("vision.decode"):
        first = asyncio.ensure_future(
            vision.stub.DetectPersons(vision_pb2.DetectPersonsRequest(image=LARGE), timeout=600)
        )
        await wait_until(
            lambda: stages.waiting == 1 or first.done(), "the first image's decoding to start"
        )
        assert not first.done(), "the first image was decoded on the event loop"
        assert admission.in_flight == 1
        # The only slot is taken: the next request queues, undecoded...
        queued = asyncio.ensure_future(vision.stub.DetectPersons(over, timeout=600))
        await wait_until(
            lambda: admission.queued == 1 or queued.done(), "the second request to queue"
        )
        assert not queued.done(), "the second request was decoded before it had a slot"
        # ...and the queue is full: the one after is refused, undecoded.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await vision.stub.DetectPersons(over, timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stages.submitted == 1  # only the first image went to be decoded
        assert not first.done()
        assert not queued.done()
    response = await first
    assert (response.image_size.width, response.image_size.height) == (SIDE, SIDE)
    # With the slot, the queued request's image was decoded, and refused.
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await queued
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (invalid.value.details() or "").startswith("image: 8000x8000 is over the limit")
    assert admission.in_flight == 0
    assert admission.queued == 0
