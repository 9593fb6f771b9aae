"""Process-wide logging configuration, done once by each server's entry point."""

from __future__ import annotations

import logging

_GRPC_AIO_SERVER_LOGGER = "grpc._cython.cygrpc"
_FAILED_SEND = "ExecuteBatchError raised in core by servicer method"


class FailedSendAfterCancel(logging.Filter):
    """Demotes gRPC's report of a response that could not be sent to a one-line DEBUG.

    gRPC's asyncio server logs it at ERROR, with a traceback, when a send fails before its
    core has marked the call cancelled: what a client that resets its stream mid-response
    causes (Node's HTTP/2 clients cancel that way; Python's gRPC client is noticed first).
    A send fails only on a call that has already ended, so there is nothing to act on, and
    an SRE should not see an error for every client that hung up.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; the failed-send one as DEBUG, without its traceback."""
        if record.levelno > logging.DEBUG and record.getMessage().startswith(_FAILED_SEND):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps, at ``level`` (a name such as INFO)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger(_GRPC_AIO_SERVER_LOGGER).addFilter(FailedSendAfterCancel())
