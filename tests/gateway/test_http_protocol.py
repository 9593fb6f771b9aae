"""Connections whose request headers never come in full are closed at the deadline: one
that sends nothing, one that trickles part of its headers (slowloris). uvicorn alone
would hold both for good. Over raw sockets, as such a client would send."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.harness import running_gateway
from tests.orchestrator.real_suite import Suite
from tests.support.waiting import WAIT_S

pytestmark = pytest.mark.asyncio(loop_scope="package")


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n", b"POST /v1/audio/speech HTTP/1.1\r\n"],
    ids=["nothing", "part-of-the-headers", "a-request-line-alone"],
)
async def test_a_connection_whose_headers_do_not_come_is_closed(suite: Suite, sent: bytes) -> None:
    async with running_gateway(suite.orchestrator.address, header_timeout_s=0.2) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(sent)
            await writer.drain()
            # Nothing answers; the gateway closes the connection (end of stream).
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
        finally:
            writer.close()
