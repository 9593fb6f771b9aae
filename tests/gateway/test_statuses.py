"""gRPC statuses as HTTP statuses: the keys (401), a full orchestrator (429), one that is
down (503) or too slow (504), and the probes that say so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from devtools.launcher import free_port
from tests.gateway.conftest import ORCHESTRATOR_SLOTS
from tests.gateway.harness import AUTHORIZATION, KEY_ENTRY, Gateway, running_gateway
from tests.orchestrator.real_suite import Suite
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="package")

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Status?", "response_format": "pcm"}


def admission_of(suite: Suite) -> Any:
    """The orchestrator's admission controller."""
    return suite.orchestrator.running.service.admission  # type: ignore[attr-defined]


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_a_request_without_the_key_is_401_from_the_orchestrator(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        response = await anonymous.post("/v1/audio/speech", json=SPEECH)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "unauthenticated"
    assert error["message"].startswith("missing API key")


async def test_the_sdk_with_a_wrong_key_gets_an_authentication_error(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert raised.value.status_code == 401
    assert raised.value.code == "unauthenticated"


async def test_a_gateway_with_keys_refuses_before_calling(suite: Suite) -> None:
    before = suite.orchestrator.rpc_count("Speak")
    async with (
        running_gateway(suite.orchestrator.address, api_keys=KEY_ENTRY) as keyed,
        httpx.AsyncClient(base_url=keyed.url) as anonymous,
        httpx.AsyncClient(base_url=keyed.url, headers=AUTHORIZATION) as keyholder,
    ):
        refused = await anonymous.post("/v1/audio/speech", json=SPEECH)
        wrong = await anonymous.post(
            "/v1/audio/speech", json=SPEECH, headers={"Authorization": "Bearer nope"}
        )
        accepted = await keyholder.post("/v1/audio/speech", json=SPEECH)
    assert refused.status_code == 401
    assert "header 'Authorization: Bearer <key>'" in refused.json()["error"]["message"]
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "unknown API key"
    assert accepted.status_code == 200
    assert suite.orchestrator.rpc_count("Speak") == before + 1


@pytest_asyncio.fixture(loop_scope="package")
async def full_orchestrator(suite: Suite, gateway: Gateway) -> AsyncIterator[None]:
    """Every orchestrator slot held by an open WebSocket conversation."""
    admission = admission_of(suite)
    conversations: list[ClientConnection] = []
    try:
        for _ in range(ORCHESTRATOR_SLOTS):
            ws = await connect(
                gateway.ws_url("/v1/realtime/speech"), additional_headers=AUTHORIZATION
            )
            conversations.append(ws)
            await ws.send(json.dumps({"type": "config"}))
        await wait_until(lambda: admission.in_flight == ORCHESTRATOR_SLOTS, "slots all held")
        yield
    finally:
        await asyncio.gather(*(ws.close() for ws in conversations))
        await wait_until(lambda: admission.in_flight == 0, "slots freed")


@pytest.mark.usefixtures("full_orchestrator")
async def test_a_full_orchestrator_is_429(http: httpx.AsyncClient, gateway: Gateway) -> None:
    response = await http.post("/v1/audio/speech", json=SPEECH)
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "resource_exhausted")
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key="k", max_retries=0, default_headers=AUTHORIZATION
    ) as client:
        with pytest.raises(openai.RateLimitError):
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    async with connect(
        gateway.ws_url("/v1/realtime/speech"), additional_headers=AUTHORIZATION
    ) as ws:
        await ws.send(json.dumps({"type": "config"}))
        error_message = json.loads(await ws.recv())
        await ws.wait_closed()
    assert error_message["error"]["code"] == "resource_exhausted"
    assert ws.close_code == 4429


async def test_an_orchestrator_that_is_down_is_503_and_not_ready() -> None:
    async with (
        running_gateway(f"127.0.0.1:{free_port()}") as orphan,
        httpx.AsyncClient(base_url=orphan.url) as http,
    ):
        speech = await http.post("/v1/audio/speech", json=SPEECH)
        ready = await http.get("/readyz")
        alive = await http.get("/healthz")
    assert speech.status_code == 503
    assert speech.json()["error"]["code"] == "unavailable"
    assert ready.status_code == 503
    assert ready.json()["error"]["message"].startswith("orchestrator unreachable")
    # Liveness asks nothing of the orchestrator: no restart for what a restart cannot fix.
    assert alive.status_code == 200


async def test_a_passed_deadline_is_504(suite: Suite) -> None:
    async with (
        running_gateway(suite.orchestrator.address, request_timeout_s=1e-6) as hasty,
        httpx.AsyncClient(base_url=hasty.url, headers=AUTHORIZATION) as http,
    ):
        response = await http.post("/v1/audio/speech", json=SPEECH)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
