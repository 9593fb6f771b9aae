"""The cost of security: Speak TTFA and ComposeMessage latency with TLS on every hop and an
API key at the edge, against the same suite with both off, in one run.

Two suites run side by side (espeak, caches off): one in plaintext without keys, one with
TLS at the orchestrator's edge, mutual TLS between the orchestrator and tts, prosody and
vision (certificates from a throwaway CA), and API keys required. They are measured in
alternating rounds, so whatever else the machine does weighs on both alike. Each call opens
no new connection (one channel per suite, as a real client keeps), so the handshake's cost
is measured apart, as a new channel's first Speak. Printed as JSON.

    python -m bench.security [--rounds 10 --per-round 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc

from bench.e2e import TEXT, photo_jpeg
from bench.report import print_report
from bench.stats import percentiles_ms
from devtools.certificates import CertAuthority, install
from devtools.launcher import free_port
from devtools.suite import SERVICES, running_suite, suite_processes

SUITE_ENV = {
    "CHORUS_CACHE_MAX_BYTES": "0",
    "CHORUS_LOG_LEVEL": "WARNING",
    "CHORUS_ENGINE": "espeak",
}
INNER = ("tts", "prosody", "vision")
API_KEY = "bench-" + "0" * 58


@dataclass(frozen=True)
class Client:
    """How the benchmark reaches one suite's orchestrator."""

    address: str
    credentials: grpc.ChannelCredentials | None
    metadata: tuple[tuple[str, str], ...]

    def channel(self) -> grpc.aio.Channel:
        """A new channel to the orchestrator (TLS when the suite has it)."""
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.address)
        return grpc.aio.secure_channel(self.address, self.credentials)


def secure_settings(
    folder: Path,
) -> tuple[dict[str, dict[str, str]], dict[str, grpc.ChannelCredentials], grpc.ChannelCredentials]:
    """Per-service settings for TLS everywhere and keys at the edge, each service's health
    credentials, and the credentials an outside caller uses."""
    ca = CertAuthority.create(folder / "ca")
    for name in SERVICES:
        install(ca.issue(name), ca, folder / name)
    install(ca.issue("orchestrator-client", "client"), ca, folder / "orchestrator-client")

    def server_files(name: str) -> dict[str, str]:
        return {
            "CHORUS_TLS_CERT_FILE": str(folder / name / "tls.crt"),
            "CHORUS_TLS_KEY_FILE": str(folder / name / "tls.key"),
        }

    client = folder / "orchestrator-client"
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    env: dict[str, dict[str, str]] = {
        name: {
            **server_files(name),
            "CHORUS_TLS_CA_FILE": str(folder / name / "ca.crt"),
            "CHORUS_TLS_REQUIRE_CLIENT_CERT": "true",
        }
        for name in INNER
    }
    env["orchestrator"] = {
        **server_files("orchestrator"),
        "CHORUS_UPSTREAM_CA_FILE": str(client / "ca.crt"),
        "CHORUS_UPSTREAM_CERT_FILE": str(client / "tls.crt"),
        "CHORUS_UPSTREAM_KEY_FILE": str(client / "tls.key"),
        "CHORUS_UPSTREAM_SERVER_NAME": "localhost",
        "CHORUS_API_KEYS": f"bench:{digest}",
    }
    ca_pem = ca.cert.read_bytes()
    outside = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    # Health checks of an inner service need the internal client certificate too.
    inner = grpc.ssl_channel_credentials(
        ca_pem, (client / "tls.key").read_bytes(), (client / "tls.crt").read_bytes()
    )
    health = {name: inner if name in INNER else outside for name in SERVICES}
    return env, health, outside


@contextlib.asynccontextmanager
async def suites(folder: Path) -> AsyncIterator[dict[str, Client]]:
    """The plain and the secure suite, started; yields how to reach each orchestrator."""
    env, health, outside = secure_settings(folder / "pki")
    plain = suite_processes(
        {name: free_port() for name in SERVICES}, "", folder / "plain", SUITE_ENV
    )
    secure = suite_processes(
        {name: free_port() for name in SERVICES},
        "",
        folder / "secure",
        SUITE_ENV,
        service_env=env,
        health_credentials=health,
    )
    for logs in ("plain", "secure"):
        (folder / logs).mkdir()
    async with running_suite(plain) as plain_running, running_suite(secure) as secure_running:
        yield {
            "plain": Client(plain_running["orchestrator"].address, None, ()),
            "tls_and_keys": Client(
                # The certificate names localhost, not the loopback address.
                f"localhost:{secure_running['orchestrator'].port}",
                outside,
                (("authorization", f"Bearer {API_KEY}"),),
            ),
        }


async def speak_ttfa(stub: orchestrator_pb2_grpc.OrchestratorAsyncStub, client: Client) -> float:
    """One Speak's time to its first audio, in seconds."""
    started, first = time.perf_counter(), None
    async for response in stub.Speak(
        pb.SpeakRequest(text=TEXT), timeout=60, metadata=client.metadata
    ):
        if first is None and response.HasField("audio"):
            first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("Speak sent no audio")
    return first


async def compose_latency(
    stub: orchestrator_pb2_grpc.OrchestratorAsyncStub, client: Client, photo: bytes
) -> float:
    """One ComposeMessage, start to its last message, in seconds."""
    started = time.perf_counter()
    async for _ in stub.ComposeMessage(
        pb.ComposeMessageRequest(text=TEXT, preset="calm", photo=photo),
        timeout=120,
        metadata=client.metadata,
    ):
        pass
    return time.perf_counter() - started


async def first_call_on_new_channel(client: Client) -> float:
    """A Speak's TTFA on a channel made for it: the connection (and handshake) included."""
    async with client.channel() as channel:
        return await speak_ttfa(orchestrator_pb2_grpc.OrchestratorStub(channel), client)


async def run(rounds: int, per_round: int) -> dict[str, object]:
    """Alternating rounds on each suite; percentiles and secure-over-plain ratios."""
    photo = photo_jpeg()
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        async with suites(Path(folder)) as clients:
            channels = {name: client.channel() for name, client in clients.items()}
            stubs = {
                name: orchestrator_pb2_grpc.OrchestratorStub(channel)
                for name, channel in channels.items()
            }
            for name, client in clients.items():  # warm every path
                for _ in range(3):
                    await speak_ttfa(stubs[name], client)
                await compose_latency(stubs[name], client, photo)
                times[name] = {"speak_ttfa": [], "compose": [], "new_channel_speak_ttfa": []}
            for _ in range(rounds):
                for name, client in clients.items():
                    figures, stub = times[name], stubs[name]
                    for _ in range(per_round):
                        figures["speak_ttfa"].append(await speak_ttfa(stub, client))
                    for _ in range(max(1, per_round // 4)):
                        figures["compose"].append(await compose_latency(stub, client, photo))
                    figures["new_channel_speak_ttfa"].append(
                        await first_call_on_new_channel(client)
                    )
            for channel in channels.values():
                await channel.close()
    return {
        "engine": "espeak",
        "text_chars": len(TEXT),
        "rounds": rounds,
        "figures_ms": {
            name: {metric: percentiles_ms(values) for metric, values in figures.items()}
            for name, figures in times.items()
        },
        "tls_and_keys_over_plain_p50": {
            metric: round(
                statistics.median(times["tls_and_keys"][metric])
                / statistics.median(times["plain"][metric]),
                3,
            )
            for metric in times["plain"]
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the comparison and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    args = parser.parse_args(argv)
    print_report("security", asyncio.run(run(args.rounds, args.per_round)))


if __name__ == "__main__":
    main()
