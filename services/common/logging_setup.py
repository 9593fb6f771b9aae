"""Process-wide logging configuration, done once by each server's entry point."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps, at ``level`` (a name such as INFO)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
