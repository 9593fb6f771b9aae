"""Futures cancelled and left to end by themselves.

Some waits cannot be ended at once: gRPC's channel watch, or a read of a request stream,
ends only when the channel or the call does, however often it is cancelled. Awaiting one
would hold its caller till then; dropping it would leave the event loop, which holds tasks
only weakly, to collect it half way, and asyncio to log at ERROR whatever it ended in
("Task exception was never retrieved").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

_ending: set[asyncio.Future[Any]] = set()


def abandon(future: asyncio.Future[Any]) -> None:
    """Cancel ``future``, which nothing will await, keep it until it ends, and take its
    outcome then (an error it ends in is logged at DEBUG: no one is waiting for it)."""
    if future.done():
        _take_outcome(future)
        return
    future.cancel()
    _ending.add(future)
    future.add_done_callback(_ending.discard)
    future.add_done_callback(_take_outcome)


def _take_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (error := future.exception()) is not None:
        logger.debug("an abandoned wait ended with %r", error)
