"""gRPC's report of a response that could not be sent to a client gone is not an error."""

from __future__ import annotations

import logging

import pytest

from services.common.logging_setup import FailedSendAfterCancel


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(
        "grpc._cython.cygrpc", level, __file__, 1, message, (), (ValueError, ValueError(), None)
    )


@pytest.mark.parametrize("debug", [False, True])
def test_a_failed_send_is_demoted_to_debug_without_its_traceback(debug: bool) -> None:
    logger = logging.getLogger("grpc._cython.cygrpc")
    previous = logger.level
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        failed = record("ExecuteBatchError raised in core by servicer method [/a.B/C]")
        assert FailedSendAfterCancel().filter(failed) is debug
    finally:
        logger.setLevel(previous)
    assert (failed.levelno, failed.levelname, failed.exc_info) == (logging.DEBUG, "DEBUG", None)


def test_other_records_pass_unchanged() -> None:
    other = record("Unexpected [ValueError] raised by servicer method [/a.B/C]")
    assert FailedSendAfterCancel().filter(other)
    assert other.levelno == logging.ERROR
    assert other.exc_info is not None
