"""The one mapping of gRPC statuses to HTTP statuses and OpenAI's error types."""

from __future__ import annotations

import grpc
import pytest

from services.gateway.errors import HTTP_STATUS, ApiError, from_status


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
        (grpc.StatusCode.UNAVAILABLE, 503, "server_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "server_error"),
        (grpc.StatusCode.INTERNAL, 500, "server_error"),
        (grpc.StatusCode.UNKNOWN, 500, "server_error"),
    ],
)
def test_each_status_has_its_http_status_and_type(
    code: grpc.StatusCode, status: int, kind: str
) -> None:
    error = from_status(code, "text: is empty", {"text": "input"})
    assert (error.status, error.type, error.code) == (status, kind, code.name.lower())
    # Only a 400's message names a field, renamed as the endpoint names it.
    assert error.param == ("input" if status == 400 else None)
    if status == 500:
        assert error.message == "internal error"  # whatever an UNKNOWN said stays in the log


def test_every_mapped_status_is_a_4xx_or_5xx() -> None:
    assert all(400 <= status < 600 for status in HTTP_STATUS.values())


def test_a_close_reason_fits_a_close_frame() -> None:
    error = ApiError(400, "text: " + "é" * 200, param="text", code="invalid_argument")
    assert error.close_code == 4400
    assert len(error.close_reason.encode()) <= 123
    assert error.close_reason.startswith("text: ")
