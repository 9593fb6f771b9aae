"""Errors as HTTP clients see them: gRPC statuses mapped to HTTP statuses, one JSON shape.

Every endpoint answers an error with OpenAI's error object (services/gateway/README.md):
``{"error": {"message", "type", "param", "code"}}``. ``param`` names the request field at
fault as the endpoint's API names it: the orchestrator's messages start with its own field
name (``text: is empty``), which each endpoint maps to its own (``input`` for OpenAI's
speech API). Only what the orchestrator chose to tell its caller reaches the client; an
unexpected exception in the gateway is a generic 500 with its details in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
from starlette.responses import JSONResponse

from services.common.errors import MAX_MESSAGE_CHARS

logger = logging.getLogger(__name__)

# How a gRPC status reads over HTTP. 499 is the de facto "client closed request".
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_INTERNAL = 500

# OpenAI's error types, by HTTP status; every other status is a server_error.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}

# Statuses whose messages start with the field at fault ("text: is empty").
_NAMES_A_FIELD = {400}

_WS_CLOSE_BASE = 4000
"""WebSocket close codes 4000-4999 are the application's: 4000 + the HTTP status."""
_MAX_CLOSE_REASON_BYTES = 120
"""A close frame's reason is at most 123 bytes of UTF-8."""


class ApiError(Exception):
    """An error to answer a client with: its HTTP status and the error object's fields."""

    def __init__(self, status: int, message: str, *, param: str | None, code: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @property
    def type(self) -> str:
        """OpenAI's error type for the status (``invalid_request_error``, ...)."""
        return _TYPES.get(self.status, "server_error")

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        """The error as an HTTP response."""
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    @property
    def close_code(self) -> int:
        """The WebSocket close code that ends a conversation with this error."""
        return _WS_CLOSE_BASE + self.status

    @property
    def close_reason(self) -> str:
        """The message, cut to fit a WebSocket close frame."""
        reason = self.message.encode()[:_MAX_CLOSE_REASON_BYTES]
        return reason.decode(errors="ignore")


def invalid(param: str, problem: str) -> ApiError:
    """A request the gateway refuses before any RPC: 400 naming ``param``."""
    return ApiError(400, f"{param}: {problem}", param=param, code="invalid_argument")


def too_large(param: str, problem: str) -> ApiError:
    """A body or part over its limit: 413 naming ``param``."""
    return ApiError(413, f"{param}: {problem}", param=param, code="payload_too_large")


def too_late(param: str, problem: str) -> ApiError:
    """A body or message that did not come in time: 408 naming ``param``."""
    return ApiError(408, f"{param}: {problem}", param=param, code="timeout")


def from_rpc_error(error: grpc.aio.AioRpcError, fields: Mapping[str, str]) -> ApiError:
    """What the client sees for a failed orchestrator call.

    ``fields`` maps the orchestrator's field names to the endpoint's where they differ
    (``{"text": "input"}``); the message keeps the orchestrator's words with the field
    renamed. The gateway adds nothing the orchestrator did not say: its messages are
    already safe for callers (no inner address, no traceback).
    """
    return from_status(error.code(), error.details() or "", fields)


def from_status(code: grpc.StatusCode, details: str, fields: Mapping[str, str]) -> ApiError:
    """The ApiError for a gRPC status ``code`` with its ``details``."""
    status = HTTP_STATUS.get(code, _INTERNAL)
    name = code.name.lower()
    if status == _INTERNAL:
        # An UNKNOWN status may carry whatever an exception said: the log gets it.
        logger.warning("orchestrator call failed: %s: %s", code.name, details)
        return ApiError(status, "internal error", param=None, code=name)
    param = None
    if status in _NAMES_A_FIELD:
        field, separator, problem = details.partition(": ")
        if separator and field and " " not in field:
            param = fields.get(field, field)
            details = f"{param}: {problem}"
    return ApiError(status, details or name.replace("_", " "), param=param, code=name)
