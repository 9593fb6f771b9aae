"""Domain errors that every service raises, each carrying the gRPC status it maps to.

Engines and servicers raise these; one server interceptor (services.common.error_mapping)
turns them into status codes, so no layer below the transport needs to know about gRPC
contexts.
"""

from __future__ import annotations

import grpc

MAX_MESSAGE_CHARS = 300
"""Longest message a caller is sent. Messages echo what the caller sent (a voice name, a
preset): uncut, an 8 KB value overflows gRPC's metadata limit on the way back, and the
caller sees RESOURCE_EXHAUSTED (overload, which clients retry) instead of its mistake."""


class ChorusError(Exception):
    """Base of the errors a caller may see; the message is safe to send to the caller,
    and cut to MAX_MESSAGE_CHARS (it starts with what matters: the field, the problem)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)
        self.message = message


class InvalidArgument(ChorusError):
    """The request is malformed; the message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class ResourceExhausted(ChorusError):
    """The service is at capacity; the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ChorusError):
    """The service, or something it depends on, cannot serve right now."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ChorusError):
    """The caller's deadline passed before the work was done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class EngineError(ChorusError):
    """The model failed on an input it accepted; details go to the log, not the caller."""

    code = grpc.StatusCode.INTERNAL
