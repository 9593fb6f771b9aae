"""Content fingerprints of model files, so that cached results never cross model versions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_HASH_BLOCK = 1 << 20


def fingerprint_files(paths: Iterable[Path]) -> str:
    """SHA-256 hex digest over each file's name and content, in the order given.

    By content rather than by path or modification time, so replicas that hold the same
    model agree on it (and share cached audio) and a changed model never does.
    """
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as stream:
            while block := stream.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()
