"""Request bodies that stop arriving: a client that sends part of a body and then nothing
gets 408 naming ``body`` once the idle timeout has passed, and its connection is closed,
rather than holding the request for ever. Sent over a raw socket: an HTTP client library
would not read the answer before it had sent the whole body."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.gateway.harness import API_KEY, running_gateway
from tests.orchestrator.real_suite import Suite
from tests.support.waiting import WAIT_S

pytestmark = pytest.mark.asyncio(loop_scope="package")

BOUNDARY = "chorus-boundary"


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/v1/audio/speech", "application/json", b'{"model": "tts-1", "input": "Hel'),
        (
            "/v1/messages",
            f"multipart/form-data; boundary={BOUNDARY}",
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\nHel'.encode(),
        ),
    ],
    ids=["speech", "messages"],
)
async def test_a_body_that_stops_arriving_is_408_naming_body(
    suite: Suite, path: str, content_type: str, start: bytes
) -> None:
    async with running_gateway(suite.orchestrator.address, body_timeout_s=0.2) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: gateway\r\n"
                f"Authorization: Bearer {API_KEY}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(start) + 1000}\r\n\r\n"
            )
            writer.write(head.encode() + start)
            await writer.drain()
            # Nothing more is sent: the gateway answers, then closes the connection.
            answer = await asyncio.wait_for(reader.read(), WAIT_S)
        finally:
            writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["param"] == "body"
    assert body["error"]["code"] == "timeout"
    assert body["error"]["message"] == "body: nothing more arrived for 0.2 s"
