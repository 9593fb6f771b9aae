"""A client that goes away mid-stream cancels the orchestrator call beneath it: the
orchestrator's admission slot and the inner services' work are freed, and the call ends
CANCELLED (not finished, not timed out).

Each call is long enough that it cannot end by itself before the client leaves: a text
of many sentences spoken with a preset goes through prosody a sentence at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.gateway.harness import AUTHORIZATION, Gateway
from tests.gateway.test_messages_sse import portrait_jpeg
from tests.orchestrator.real_suite import Suite
from tests.support.metrics import metric_points
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="package")

LONG_TEXT = " ".join(f"This is sentence {i} of a long speech." for i in range(60))


def cancelled_calls(suite: Suite, method: str) -> Callable[[], int]:
    """How many ``method`` calls the orchestrator has seen end CANCELLED, when asked."""

    def count() -> int:
        return sum(
            int(point.value)
            for point in metric_points(suite.orchestrator._metrics, "chorus.rpc.server.requests")
            if point.attributes.get("rpc.method") == method
            and point.attributes.get("rpc.grpc.status_code") == "CANCELLED"
        )

    return count


async def freed(suite: Suite, method: str, cancelled_before: int) -> None:
    """Wait until the orchestrator and tts hold no slot, and the call ended cancelled."""
    orchestrator = suite.orchestrator.running.service.admission  # type: ignore[attr-defined]
    tts = suite.tts.running.service.admission  # type: ignore[attr-defined]
    await wait_until(lambda: orchestrator.in_flight == 0, "the orchestrator's slot freed")
    await wait_until(lambda: tts.in_flight == 0, "tts's stream ended")
    count = cancelled_calls(suite, method)
    await wait_until(lambda: count() == cancelled_before + 1, f"{method} recorded cancelled")


def holding(suite: Suite) -> bool:
    return suite.orchestrator.running.service.admission.in_flight == 1  # type: ignore[attr-defined, no-any-return]


async def test_leaving_the_speech_stream_cancels_speak(
    suite: Suite, http: httpx.AsyncClient
) -> None:
    before = cancelled_calls(suite, "Speak")()
    request = {
        "model": "tts-1",
        "voice": "alloy",
        "input": LONG_TEXT,
        "response_format": "pcm",
        "preset": "calm",
    }
    async with http.stream("POST", "/v1/audio/speech", json=request) as response:
        assert response.status_code == 200
        async for _chunk in response.aiter_bytes():
            break
        assert holding(suite)
    # Leaving the block closed the connection with the body unread.
    await freed(suite, "Speak", before)


async def test_leaving_the_event_stream_cancels_compose(
    suite: Suite, http: httpx.AsyncClient
) -> None:
    before = cancelled_calls(suite, "ComposeMessage")()
    files: list[tuple[str, Any]] = [
        ("text", (None, LONG_TEXT)),
        ("preset", (None, "calm")),
        ("photo", ("me.jpg", portrait_jpeg(), "image/jpeg")),
    ]
    async with http.stream("POST", "/v1/messages", files=files) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event: progress"):
                break
        assert holding(suite)
    await freed(suite, "ComposeMessage", before)


async def test_leaving_the_conversation_cancels_speak_stream(
    suite: Suite, gateway: Gateway
) -> None:
    before = cancelled_calls(suite, "SpeakStream")()
    async with connect(
        gateway.ws_url("/v1/realtime/speech"), additional_headers=AUTHORIZATION
    ) as ws:
        await ws.send(json.dumps({"type": "config"}))
        # No end: the conversation cannot end by itself, only by the client leaving.
        await ws.send(
            json.dumps({"type": "text", "text": "A long text, " + "on and " * 100 + "on. "})
        )
        while not isinstance(await ws.recv(), bytes):
            pass
        assert holding(suite)
    await freed(suite, "SpeakStream", before)
