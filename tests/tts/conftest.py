"""Fixtures: real TTS servers on loopback ports, stopped after each test, and models built
in code for the coqui and piper engines (built once per session, on first use)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.tts.engines.base import SpeechEngine
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.service_harness import server_starter
from tests.tts.harness import StartTts, TtsServer


@pytest.fixture
async def start_tts() -> AsyncIterator[StartTts]:
    """Start TTS servers with given settings overrides and optionally an engine: an
    engine object to serve, or the name of one for the server to build from its settings.
    Without either, the server runs espeak: most tests here are about the service's
    plumbing, which the engine that loads in milliseconds shows best."""
    async with server_starter(TtsServer) as start_server:

        async def start(
            engine: SpeechEngine | str | None = None, load: bool = True, **overrides: Any
        ) -> TtsServer:
            if isinstance(engine, str):
                overrides["engine"] = engine
            engine_object = engine if isinstance(engine, SpeechEngine) else None
            settings = dataclasses.replace(
                TtsSettings(host="127.0.0.1", port=0, engine="espeak"), **overrides
            )
            return await start_server(
                lambda telemetry: TtsService(settings, telemetry, engine_object), settings, load
            )

        yield start


@pytest.fixture
async def tts(start_tts: StartTts) -> TtsServer:
    """One TTS server with default settings and the espeak engine, ready to serve."""
    return await start_tts()


@pytest.fixture(scope="session")
def tiny_vits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny single-speaker VITS (model.pth and config.json)."""
    from devtools.builders.tiny_vits import build_vits

    return build_vits(tmp_path_factory.mktemp("tiny-vits"))


@pytest.fixture(scope="session")
def two_speaker_vits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VITS with two speakers, ``alice`` and ``bob``, and other weights."""
    from devtools.builders.tiny_vits import build_vits

    return build_vits(
        tmp_path_factory.mktemp("two-speaker-vits"), seed=1, speakers=("alice", "bob")
    )


@pytest.fixture(scope="session")
def tiny_xtts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a small XTTS with two built-in speakers, in English and German."""
    from devtools.builders.tiny_xtts import build_xtts

    return build_xtts(tmp_path_factory.mktemp("tiny-xtts"))


@pytest.fixture(scope="session")
def tiny_piper_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single-speaker Piper voice with a tiny tone model: its .onnx file."""
    from devtools.builders.tiny_piper import build_piper_voice

    return build_piper_voice(tmp_path_factory.mktemp("tiny-piper"))


@pytest.fixture(scope="session")
def two_speaker_piper_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Piper voice with two speakers, ``alice`` and ``bob``: its .onnx file."""
    from devtools.builders.tiny_piper import build_piper_voice

    return build_piper_voice(
        tmp_path_factory.mktemp("two-speaker-piper"), "xx_XX-duo-low", ("alice", "bob")
    )
