"""Request bodies read within their limits: refused as soon as they pass them.

A declared Content-Length over the limit is refused before a byte is read; a body sent
without one (chunked) is counted as it arrives, so a client can never make the gateway
hold more than the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from services.gateway.errors import ApiError, too_large
from services.gateway.json_fields import JsonObject


async def limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body of ``request`` chunk by chunk; 413 naming ``body`` once past ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large("body", f"{declared} bytes is over the limit of {limit}")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large("body", f"is over the limit of {limit} bytes")
        yield chunk


async def read_json_object(request: Request, limit: int) -> JsonObject:
    """The JSON object in the body of ``request``: 415 unless it is sent as
    application/json, 413 past ``limit`` bytes, 400 naming ``body`` when it is not a JSON
    object."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415, "body: must be application/json", param="body", code="unsupported_media_type"
        )
    body = bytearray()
    async for chunk in limited_stream(request, limit):
        body += chunk
    return JsonObject.parse(bytes(body), "body")
