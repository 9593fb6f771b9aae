"""Request bodies read within their limits: refused as soon as they pass them.

A declared Content-Length over the limit is refused before a byte is read; a body sent
without one (chunked) is counted as it arrives, so a client can never make the gateway
hold more than the limit. A body that stops arriving (a client trickling it, or gone
silent) is refused once nothing has come for the idle timeout, so no client holds a
request open for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request

from services.gateway.errors import ApiError, too_large, too_late
from services.gateway.json_fields import JsonObject


@dataclass(frozen=True)
class BodyLimits:
    """How much of a request body is read, and how long its pieces may take to come."""

    max_bytes: int
    idle_timeout_s: float
    """The longest wait for the body's next piece."""


async def limited_stream(request: Request, limits: BodyLimits) -> AsyncIterator[bytes]:
    """The body of ``request`` chunk by chunk: 413 naming ``body`` once past its size
    limit, 408 naming it when nothing more comes within the idle timeout."""
    limit = limits.max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large("body", f"{declared} bytes is over the limit of {limit}")
    received = 0
    async with contextlib.aclosing(request.stream()) as chunks:
        while True:
            try:
                async with asyncio.timeout(limits.idle_timeout_s):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                raise too_late(
                    "body", f"nothing more arrived for {limits.idle_timeout_s:g} s"
                ) from None
            if chunk is None:
                return
            received += len(chunk)
            if received > limit:
                raise too_large("body", f"is over the limit of {limit} bytes")
            yield chunk


async def read_json_object(request: Request, limits: BodyLimits) -> JsonObject:
    """The JSON object in the body of ``request``: 415 unless it is sent as
    application/json, 413 or 408 past ``limits``, 400 naming ``body`` when it is not a
    JSON object."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415, "body: must be application/json", param="body", code="unsupported_media_type"
        )
    body = bytearray()
    async for chunk in limited_stream(request, limits):
        body += chunk
    return JsonObject.parse(bytes(body), "body")
