"""Fixtures: real TTS servers on loopback ports, stopped after each test."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.tts.engine import SpeechEngine
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.service_harness import server_starter
from tests.tts.harness import StartTts, TtsServer


@pytest.fixture
async def start_tts() -> AsyncIterator[StartTts]:
    """Start TTS servers with given settings overrides (and optionally an engine)."""
    async with server_starter(TtsServer) as start_server:

        async def start(
            engine: SpeechEngine | None = None, load: bool = True, **overrides: Any
        ) -> TtsServer:
            settings = dataclasses.replace(TtsSettings(host="127.0.0.1", port=0), **overrides)
            return await start_server(
                lambda telemetry: TtsService(settings, telemetry, engine), settings, load
            )

        yield start


@pytest.fixture
async def tts(start_tts: StartTts) -> TtsServer:
    """One TTS server with default settings and the espeak engine, ready to serve."""
    return await start_tts()
