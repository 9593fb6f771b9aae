"""The orchestrator's health follows its dependencies: ``orchestrator/tts``,
``orchestrator/prosody`` and ``orchestrator/vision`` each say whether that service can be
reached, the overall health ("", what readiness reads) goes NOT_SERVING only while tts, the
one it cannot work without, is down, and the Orchestrator service's own name (what
liveness reads) stays SERVING throughout.

Real servers on loopback (tests.orchestrator.real_suite), stopped and started again on
their ports; every wait polls with a bound, none is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from grpc_health.v1 import health_pb2

from services.common.health_dependencies import OVERALL_HEALTH
from services.orchestrator.server import HEALTH_PREFIX, SERVICE_NAME
from tests.orchestrator.real_suite import Suite, real_suite
from tests.support.waiting import poll

TTS, PROSODY, VISION = (HEALTH_PREFIX + name for name in ("tts", "prosody", "vision"))
NAMES = (OVERALL_HEALTH, SERVICE_NAME, TTS, PROSODY, VISION)
ALL_SERVING = dict.fromkeys(NAMES, "SERVING")


@pytest.fixture
async def suite() -> AsyncIterator[Suite]:
    async with real_suite() as started:
        yield started


async def health_becomes(suite: Suite, expected: dict[str, str]) -> None:
    """Wait until the orchestrator's health is ``expected`` (bounded; fails with the last)."""
    statuses = await poll(lambda: suite.health_of(*NAMES), lambda got: got == expected)
    assert statuses == expected


@contextlib.asynccontextmanager
async def overall_statuses(suite: Suite) -> AsyncIterator[list[str]]:
    """Every overall status the orchestrator announces (grpc.health.v1 Watch) meanwhile."""
    seen: list[str] = []
    watch = suite.health.Watch(health_pb2.HealthCheckRequest(service=OVERALL_HEALTH))

    async def record() -> None:
        async for response in watch:
            seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    recorder = asyncio.create_task(record())
    # The first message is the status at the time of the call: the watch has begun.
    await poll(lambda: asyncio.sleep(0, seen), lambda got: bool(got))
    try:
        yield seen
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder


async def test_tts_down_takes_the_orchestrator_out_of_rotation_until_it_returns(
    suite: Suite,
) -> None:
    await health_becomes(suite, ALL_SERVING)

    await suite.tts.stop()
    # The service's own name, which liveness reads, stays SERVING: nothing to restart.
    await health_becomes(suite, {**ALL_SERVING, OVERALL_HEALTH: "NOT_SERVING", TTS: "NOT_SERVING"})

    await suite.tts.start()
    await health_becomes(suite, ALL_SERVING)


@pytest.mark.parametrize("dependency", ["vision", "prosody"])
async def test_an_optional_dependency_down_changes_only_its_own_name(
    suite: Suite, dependency: str
) -> None:
    server = getattr(suite, dependency)
    name = HEALTH_PREFIX + dependency
    await health_becomes(suite, ALL_SERVING)

    async with overall_statuses(suite) as overall:
        await server.stop()
        await health_becomes(suite, {**ALL_SERVING, name: "NOT_SERVING"})
        await server.start()
        await health_becomes(suite, ALL_SERVING)
    assert set(overall) == {"SERVING"}
