"""Settings of the orchestrator (CHORUS_* variables and flags; see services.common.settings)."""

from __future__ import annotations

import dataclasses

from services.common.settings import ServerSettings


@dataclasses.dataclass(frozen=True)
class OrchestratorSettings(ServerSettings):
    """Chorus orchestrator."""

    port: int = dataclasses.field(default=50051, metadata={"help": "port to listen on"})
    metrics_port: int = dataclasses.field(
        default=9451, metadata={"help": "Prometheus /metrics port, on host; 0 turns it off"}
    )
    trust_caller_metadata: bool = dataclasses.field(
        default=False,
        metadata={"help": "the edge: callers are told apart by address, never by what they say"},
    )
    tts_address: str = dataclasses.field(
        default="localhost:50052",
        metadata={"help": "tts: host:port, a comma list, or dns:///name:port for replicas"},
    )
    prosody_address: str = dataclasses.field(
        default="localhost:50053", metadata={"help": "prosody, as tts_address"}
    )
    vision_address: str = dataclasses.field(
        default="localhost:50054", metadata={"help": "vision, as tts_address"}
    )
    batch_concurrency: int = dataclasses.field(
        default=8, metadata={"help": "segments of one SynthesizeBatch in flight at once"}
    )
    max_text_chars: int = dataclasses.field(
        default=5000, metadata={"help": "longest text accepted, in characters"}
    )
    max_batch_segments: int = dataclasses.field(
        default=1000, metadata={"help": "most segments in one SynthesizeBatch"}
    )
