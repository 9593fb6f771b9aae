"""Jobs for worker processes that tests send to a ProcessPool (importable by reference,
as a spawned worker needs)."""

from __future__ import annotations

import time
from pathlib import Path


def hold_until_exists(path: str, timeout_s: float) -> bool:
    """Keep a worker busy until ``path`` exists; False if it did not within ``timeout_s``.

    Lets a test know a pool's only worker is taken, for as long as the test needs, without
    guessing how long a real job would take.
    """
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
