"""Fixtures: one prosody server (with its Praat worker processes) per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from services.prosody.server import ProsodyService
from services.prosody.settings import ProsodySettings
from tests.prosody.harness import ProsodyServer
from tests.support.service_harness import server_starter


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def prosody() -> AsyncIterator[ProsodyServer]:
    """A prosody server with two Praat workers, shared by a module's tests (workers take
    a second or two to spawn).

    Its time budget is longer than any request's deadline, so that only the deadline cuts
    it: a busy machine must not turn a correct adjustment into a budget fallback.
    """
    settings = ProsodySettings(host="127.0.0.1", port=0, workers=2, time_budget_s=3600)
    async with server_starter(ProsodyServer) as start:
        yield await start(lambda telemetry: ProsodyService(settings, telemetry), settings, True)
