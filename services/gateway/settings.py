"""Settings of the gateway (CHORUS_* variables and flags; see services.common.settings).

The gateway serves HTTP, not gRPC, so it does not take ServerSettings' gRPC server
fields (admission, caches, stall timeouts); what it shares with the other services keeps
their names: host, port, metrics_port, grace_s, log_level, api_keys, api_keys_file.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """Chorus HTTP and WebSocket gateway."""

    host: str = dataclasses.field(default="[::]", metadata={"help": "address to listen on"})
    port: int = dataclasses.field(default=8080, metadata={"help": "HTTP port to listen on"})
    metrics_port: int = dataclasses.field(
        default=9450, metadata={"help": "Prometheus /metrics port, on host; 0 turns it off"}
    )
    grace_s: float = dataclasses.field(
        default=10.0,
        metadata={"help": "seconds requests and WebSockets in flight get to finish on SIGTERM"},
    )
    log_level: str = dataclasses.field(default="INFO", metadata={"help": "logging level"})
    orchestrator_address: str = dataclasses.field(
        default="localhost:50051",
        metadata={"help": "orchestrator: host:port, a comma list, or dns:///name:port"},
    )
    orchestrator_ca_file: str = dataclasses.field(
        default="",
        metadata={
            "help": "TLS to the orchestrator: the CA its certificate is checked against, "
            "PEM (ca.crt). Empty: plaintext"
        },
    )
    orchestrator_cert_file: str = dataclasses.field(
        default="",
        metadata={"help": "client certificate chain presented to the orchestrator, PEM"},
    )
    orchestrator_key_file: str = dataclasses.field(
        default="", metadata={"help": "the client certificate's private key, PEM"}
    )
    orchestrator_server_name: str = dataclasses.field(
        default="",
        metadata={"help": "name the orchestrator's certificate is checked for, if not the host"},
    )
    api_keys: str = dataclasses.field(
        default="",
        metadata={
            "help": "API keys checked here too, as the orchestrator's (name:sha256hex, comma "
            "separated); none: the key is only forwarded to the orchestrator"
        },
    )
    api_keys_file: str = dataclasses.field(
        default="",
        metadata={"help": "a file of more name:sha256hex entries, one a line (a mounted Secret)"},
    )
    request_timeout_s: float = dataclasses.field(
        default=120.0, metadata={"help": "deadline of each Speak and ComposeMessage call"}
    )
    realtime_timeout_s: float = dataclasses.field(
        default=3600.0, metadata={"help": "deadline of a WebSocket's SpeakStream call"}
    )
    realtime_config_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "help": "a WebSocket whose first message (its config) has not come within this "
            "is closed (4408)"
        },
    )
    header_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "help": "longest wait for a request's headers, from the connection opening or "
            "the request's first byte; beyond, the connection is closed"
        },
    )
    body_timeout_s: float = dataclasses.field(
        default=30.0,
        metadata={
            "help": "longest wait for the next piece of a request body; beyond, 408 naming body"
        },
    )
    max_json_bytes: int = dataclasses.field(
        default=64 * 1024, metadata={"help": "largest JSON request body"}
    )
    max_field_bytes: int = dataclasses.field(
        default=64 * 1024, metadata={"help": "largest text part of a multipart request"}
    )
    max_photo_bytes: int = dataclasses.field(
        default=10 * 1024 * 1024, metadata={"help": "largest photo of a multipart request"}
    )
    max_ws_message_bytes: int = dataclasses.field(
        default=1024 * 1024,
        metadata={"help": "largest WebSocket message; beyond, the protocol closes with 1009"},
    )
    voice_map: str = dataclasses.field(
        default="",
        metadata={
            "help": "OpenAI voice names to suite voices, name=voice comma separated "
            "(alloy=en_US-joe-medium); an OpenAI voice not listed speaks with the default voice"
        },
    )
