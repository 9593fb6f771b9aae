"""Settings of the prosody server (CHORUS_* variables and flags; see services.common.settings)."""

from __future__ import annotations

import dataclasses
import os

from services.common.settings import ServerSettings


@dataclasses.dataclass(frozen=True)
class ProsodySettings(ServerSettings):
    """Chorus prosody server."""

    port: int = dataclasses.field(default=50053, metadata={"help": "port to listen on"})
    metrics_port: int = dataclasses.field(
        default=9453, metadata={"help": "Prometheus /metrics port, on host; 0 turns it off"}
    )
    workers: int = dataclasses.field(
        default=os.cpu_count() or 1,
        metadata={"help": "worker processes running Praat (it holds the GIL)"},
    )
    max_audio_s: float = dataclasses.field(
        default=60.0, metadata={"help": "longest audio accepted, in seconds"}
    )
    min_confidence: float = dataclasses.field(
        default=0.7, metadata={"help": "below this confidence Adjust returns the original"}
    )
    time_budget_s: float = dataclasses.field(
        default=5.0, metadata={"help": "per-request budget; past it the original comes back"}
    )
