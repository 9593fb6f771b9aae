"""Typed settings read once at start-up from CHORUS_* environment variables and flags.

Each service declares a frozen dataclass of its settings (extending ServerSettings); every
field becomes an environment variable ``CHORUS_<FIELD>`` and a flag ``--<field>``, and a
flag wins over the environment, which wins over the field's default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

ENV_PREFIX = "CHORUS_"

SettingsT = TypeVar("SettingsT")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every Chorus server needs, whatever it serves."""

    host: str = dataclasses.field(default="[::]", metadata={"help": "address to listen on"})
    port: int = dataclasses.field(default=0, metadata={"help": "port to listen on"})
    metrics_port: int = dataclasses.field(
        default=0, metadata={"help": "Prometheus /metrics port, on host; 0 turns it off"}
    )
    grace_s: float = dataclasses.field(
        default=10.0, metadata={"help": "seconds streams in flight get to finish on SIGTERM"}
    )
    max_message_bytes: int = dataclasses.field(
        default=16 * 1024 * 1024, metadata={"help": "largest gRPC message sent or received"}
    )
    max_connection_age_s: float = dataclasses.field(
        default=300.0,
        metadata={
            "help": "after this long a connection takes no new calls (clients open another, "
            "re-resolving replicas); 0 never"
        },
    )
    connection_age_grace_s: float = dataclasses.field(
        default=3600.0,
        metadata={
            "help": "how long calls still open on an aged connection may go on before it "
            "is closed under them (a realtime stream lasts as long as its conversation)"
        },
    )
    keepalive_s: float = dataclasses.field(
        default=30.0,
        metadata={
            "help": "a connection with calls open is pinged after this long without "
            "traffic; 0 never"
        },
    )
    keepalive_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "help": "a ping unanswered this long ends the connection and its calls: a "
            "client that vanished frees its slots"
        },
    )
    max_in_flight: int = dataclasses.field(
        default=64, metadata={"help": "requests served at once before queueing"}
    )
    max_queue: int = dataclasses.field(
        default=64, metadata={"help": "requests waiting beyond max_in_flight before refusal"}
    )
    queue_timeout_s: float = dataclasses.field(
        default=1.0, metadata={"help": "longest a queued request waits for a slot"}
    )
    caller_share: float = dataclasses.field(
        default=0.5,
        metadata={
            "help": "most of max_in_flight one caller may hold (held and queued), in (0, 1]; "
            "1 turns the per-caller limit off"
        },
    )
    trust_caller_metadata: bool = dataclasses.field(
        default=True,
        metadata={
            "help": "take the end caller from chorus-caller metadata (services that only the "
            "orchestrator reaches); off at the edge, where a client could name anyone"
        },
    )
    api_keys: str = dataclasses.field(
        default="",
        metadata={
            "help": "API keys callers must send (authorization: Bearer <key>), as "
            "name:sha256hex entries, comma separated (the key's SHA-256, never the key); "
            "none with api_keys_file empty: no key required"
        },
    )
    api_keys_file: str = dataclasses.field(
        default="",
        metadata={"help": "a file of more name:sha256hex entries, one a line (a mounted Secret)"},
    )
    reflection: bool = dataclasses.field(
        default=True,
        metadata={"help": "serve gRPC server reflection (the service's own API only)"},
    )
    stall_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "help": "a response stream whose reader takes nothing for this long is ended "
            "(DEADLINE_EXCEEDED) to free its slot; 0 never"
        },
    )
    cache_max_bytes: int = dataclasses.field(
        default=256 * 1024 * 1024, metadata={"help": "in-process result cache size; 0 disables"}
    )
    redis_url: str = dataclasses.field(
        default="", metadata={"help": "shared Redis cache, e.g. redis://host:6379/0"}
    )
    redis_timeout_s: float = dataclasses.field(
        default=0.05, metadata={"help": "longest any Redis call may take before it is skipped"}
    )
    cache_ttl_s: int = dataclasses.field(
        default=86400, metadata={"help": "lifetime of results stored in Redis"}
    )
    log_level: str = dataclasses.field(default="INFO", metadata={"help": "logging level"})
    tls_cert_file: str = dataclasses.field(
        default="",
        metadata={
            "help": "server certificate chain, PEM (a TLS Secret's tls.crt); with "
            "tls_key_file turns TLS on; re-read when it changes. Empty: plaintext"
        },
    )
    tls_key_file: str = dataclasses.field(
        default="", metadata={"help": "the server certificate's private key, PEM (tls.key)"}
    )
    tls_ca_file: str = dataclasses.field(
        default="",
        metadata={"help": "CA that signs client certificates, PEM (ca.crt)"},
    )
    tls_require_client_cert: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "mutual TLS: refuse clients without a certificate signed by tls_ca_file "
            "(the inner services, which only the orchestrator may reach)"
        },
    )


def load_settings(
    settings_type: type[SettingsT],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SettingsT:
    """Build ``settings_type`` from defaults, then ``environ``, then ``argv`` flags.

    Raises SystemExit with a usage message when a flag or variable does not parse, so a
    misconfigured server stops at start-up instead of failing requests later.
    """
    if not dataclasses.is_dataclass(settings_type):
        raise TypeError(f"{settings_type!r} is not a dataclass")
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(settings_type)
    parser = argparse.ArgumentParser(description=settings_type.__doc__)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings_type):
        convert = _converter(hints[field.name])
        env_name = ENV_PREFIX + field.name.upper()
        if env_name in environ:
            try:
                values[field.name] = convert(environ[env_name])
            except ValueError as error:
                parser.error(f"{env_name}={environ[env_name]!r}: {error}")
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=convert,
            default=argparse.SUPPRESS,
            help=f"{field.metadata.get('help', '')} (env {env_name})",
        )
    values.update(vars(parser.parse_args(argv)))
    return settings_type(**values)


def _converter(annotation: Any) -> Any:
    """The function that parses one setting's text into its declared type."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        non_none = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _converter(non_none[0])
    if annotation is bool:
        return _parse_bool
    if annotation in (int, float, str):
        return annotation
    raise TypeError(f"unsupported setting type {annotation!r}")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")
