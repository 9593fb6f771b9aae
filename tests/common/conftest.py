"""Fixtures for the shared mechanisms' tests: a real server to exercise them through."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.service_harness import ServerUnderTest, server_starter


@pytest.fixture
async def espeak_tts() -> AsyncIterator[ServerUnderTest[TtsService]]:
    """A real tts server with the espeak engine (no weights, fast), ready to serve."""
    async with server_starter(ServerUnderTest) as start:
        settings = dataclasses.replace(TtsSettings(host="127.0.0.1", port=0), engine="espeak")
        yield await start(lambda telemetry: TtsService(settings, telemetry), settings, True)


@pytest.fixture
def no_garbage_collection() -> Iterator[None]:
    """Without the collector, only the code under test can close an abandoned handler."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
