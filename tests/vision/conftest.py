"""Fixtures: a vision server with the weight-free engines, per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from services.vision.server import VisionService
from services.vision.settings import VisionSettings
from tests.support.service_harness import server_starter
from tests.vision.harness import VisionServer


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def vision() -> AsyncIterator[VisionServer]:
    """A vision server with the default engines (the mediapipe detector and the selfie
    matte, on the models `make` extracts), as on a fresh machine."""
    settings = VisionSettings(host="127.0.0.1", port=0, max_pixels=20_000_000)
    async with server_starter(VisionServer) as start:
        yield await start(lambda telemetry: VisionService(settings, telemetry), settings, True)
