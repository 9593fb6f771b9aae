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
    upstream_ca_file: str = dataclasses.field(
        default="",
        metadata={
            "help": "TLS to tts, prosody and vision: the CA their certificates are checked "
            "against, PEM (ca.crt). Empty: plaintext"
        },
    )
    upstream_cert_file: str = dataclasses.field(
        default="",
        metadata={
            "help": "client certificate chain presented to the inner services (mutual TLS), "
            "PEM (tls.crt); read when the channels are made"
        },
    )
    upstream_key_file: str = dataclasses.field(
        default="", metadata={"help": "the client certificate's private key, PEM (tls.key)"}
    )
    upstream_server_name: str = dataclasses.field(
        default="",
        metadata={
            "help": "name the inner services' certificates are checked for, instead of the "
            "host in each address (for IP addresses, or one certificate for all three)"
        },
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
