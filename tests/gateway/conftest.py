"""Fixtures of the gateway tests: one real suite (tests.orchestrator.real_suite) and one
gateway in front of it, for the whole package, on the package's event loop.

The orchestrator requires an API key (so that the key's way through the gateway is
tested everywhere) and has few slots and no queue (so that a test can fill them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from tests.gateway.harness import AUTHORIZATION, KEY_ENTRY, Gateway, running_gateway
from tests.orchestrator.real_suite import Suite, real_suite

ORCHESTRATOR_SLOTS = 4


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def suite() -> AsyncIterator[Suite]:
    """tts (espeak), prosody, vision and the orchestrator, in this process."""
    async with real_suite(
        orchestrator={
            "api_keys": KEY_ENTRY,
            "max_in_flight": ORCHESTRATOR_SLOTS,
            "max_queue": 0,
            "caller_share": 1.0,
        }
    ) as started:
        yield started


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def gateway(suite: Suite) -> AsyncIterator[Gateway]:
    """The gateway over the suite's orchestrator, with default settings."""
    async with running_gateway(suite.orchestrator.address) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="package")
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the gateway that sends the API key."""
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTHORIZATION, timeout=60) as client:
        yield client
