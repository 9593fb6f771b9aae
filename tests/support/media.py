"""Test media: the shared speech recordings beside the checkout (../shared/data)."""

from __future__ import annotations

from pathlib import Path

from services.common.launcher import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def speech_recordings() -> list[Path]:
    """The shared recordings of human speech (16-bit mono 44.1 kHz WAV files)."""
    paths = sorted((SHARED_DATA / "speech").glob("*.wav"))
    if not paths:
        raise FileNotFoundError(f"no speech recordings under {SHARED_DATA}: is ../shared there?")
    return paths
