"""The five Chorus images and a Redis, run as production runs them, on a Docker network.

Every container is hardened the same way (read-only root filesystem, a tmpfs at /tmp, all
capabilities dropped, no privilege escalation, the image's own non-root user), and every
hop is TLS: the host to the orchestrator (which wants an API key), the orchestrator to
the inner services (mutual TLS: they refuse a client without a certificate), and the
services to Redis (``rediss://``, with its password), and the HTTP gateway to the
orchestrator (TLS, its certificate checked against the test's CA). Only the orchestrator's
gRPC port and the gateway's HTTP port are published, on the host's loopback.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.api_keys import key_digest
from services.common.tls import channel_credentials
from services.orchestrator.server import HEALTH_PREFIX
from tests.images.certificates import certificate_folders
from tests.images.docker import Docker

PORTS = {"orchestrator": 50051, "tts": 50052, "prosody": 50053, "vision": 50054}
"""Each service's gRPC port: its default, which its image exposes."""

INNER = ("tts", "prosody", "vision")
"""The services only the orchestrator reaches."""

GATEWAY_PORT = 8080
"""The gateway's HTTP port: its default, which its image exposes."""

IMAGES = (*PORTS, "gateway")
"""The Chorus images the stack runs, by service name: the gRPC services and the gateway."""

READY_WAIT_S = 300.0
"""How long the stack may take to be healthy: generous, for a loaded two-core machine;
it bounds the wait only, nothing is asserted about it."""

REDIS_IMAGE = "chorus-test/redis:bookworm"
REDIS_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
    && apt-get install --yes --no-install-recommends redis-server \\
    && rm -rf /var/lib/apt/lists/*
USER redis
ENTRYPOINT ["redis-server"]
"""
"""Redis for the test (no registry to pull redis:7 from): Debian's, on the images' base."""

HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL")
"""What every container runs with, as the Kubernetes manifests' securityContext asks:
the user is the image's own (USER 10001 in the Chorus images), never given here."""

ENGINES = {
    "tts": {"CHORUS_ENGINE": "piper", "CHORUS_DEVICE": "cpu", "CHORUS_PIPER_THREADS": "1"},
    "prosody": {"CHORUS_WORKERS": "1"},
    "vision": {"CHORUS_DEVICE": "cpu", "CHORUS_WORKERS": "1"},
}
"""The weight-free engines of the cpu overlay (the images' defaults), one worker each on
a small machine."""


def build_redis_image(docker: Docker, base: str) -> str:
    """The Redis image, built from ``base`` (a Debian bookworm image) unless it is there."""
    if docker.attempt("image", "inspect", REDIS_IMAGE).returncode != 0:
        docker.output("build", "-t", REDIS_IMAGE, "-", stdin=REDIS_DOCKERFILE.format(base=base))
    return REDIS_IMAGE


@dataclass
class Stack:
    """The running containers, by service name ("redis" too), on one network."""

    docker: Docker
    network: str
    certificates: dict[str, Path]
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redis_password: str = field(default_factory=lambda: secrets.token_hex(16))
    containers: dict[str, str] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        """The CA every certificate of the stack is checked against."""
        return self.certificates["orchestrator"] / "server" / "ca.crt"

    def address(self) -> str:
        """``127.0.0.1:port``: where the orchestrator's gRPC port is published."""
        port = f"{PORTS['orchestrator']}/tcp"
        mapping = self.docker.output("port", self.containers["orchestrator"], port)
        return mapping.splitlines()[0]

    def gateway_url(self) -> str:
        """``http://127.0.0.1:port``: where the gateway's HTTP port is published."""
        port = f"{GATEWAY_PORT}/tcp"
        mapping = self.docker.output("port", self.containers["gateway"], port)
        return f"http://{mapping.splitlines()[0]}"

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS to the orchestrator (its certificate checked against the stack's CA), with
        the API key sent as ``authorization: Bearer <key>`` on every call."""
        return grpc.composite_channel_credentials(
            channel_credentials(str(self.ca_file)),
            grpc.access_token_call_credentials(self.api_key),
        )

    def logs(self, name: str) -> str:
        """The last lines a container wrote."""
        result = self.docker.attempt("logs", "--tail", "40", self.containers[name])
        return result.stdout + result.stderr

    def fail_if_any_exited(self) -> None:
        """Fail the test, with their logs, when containers have stopped."""
        stopped = [
            name
            for name, container in self.containers.items()
            if self.docker.output("inspect", "--format", "{{.State.Running}}", container) != "true"
        ]
        if stopped:
            logs = "\n".join(f"--- {name}:\n{self.logs(name)}" for name in stopped)
            pytest.fail(f"containers exited: {', '.join(stopped)}\n{logs}")

    def redis_cli(self, *args: str) -> str:
        """redis-cli in the Redis container, over TLS, with the password."""
        return self.docker.output(
            "exec", "--env", f"REDISCLI_AUTH={self.redis_password}", self.containers["redis"],
            "redis-cli", "--tls", "--cacert", "/certs/server/ca.crt", *args,
        )  # fmt: skip

    def remove(self) -> None:
        """Remove every container and the network, whatever state they are in."""
        for container in self.containers.values():
            self.docker.attempt("rm", "--force", "--volumes", container)
        self.docker.attempt("network", "rm", self.network)


def _run(
    stack: Stack,
    name: str,
    image: str,
    env: Mapping[str, str],
    options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> None:
    """Start ``name`` on the stack's network under its own host name, hardened."""
    container = f"{stack.network}-{name}"
    stack.containers[name] = container
    environment = [word for key, value in env.items() for word in ("--env", f"{key}={value}")]
    stack.docker.output(
        "run", "--detach", "--name", container, "--hostname", name,
        "--network", stack.network, "--network-alias", name, *HARDENED,
        "--volume", f"{stack.certificates[name]}:/certs:ro", *environment, *options,
        image, *command,
    )  # fmt: skip


def _server_tls(require_client_cert: bool) -> dict[str, str]:
    return {
        "CHORUS_TLS_CERT_FILE": "/certs/server/tls.crt",
        "CHORUS_TLS_KEY_FILE": "/certs/server/tls.key",
        "CHORUS_TLS_CA_FILE": "/certs/server/ca.crt",
        "CHORUS_TLS_REQUIRE_CLIENT_CERT": str(require_client_cert).lower(),
    }


def _inner_env(stack: Stack, name: str) -> dict[str, str]:
    return {
        **_server_tls(require_client_cert=True),
        # rediss: TLS, Redis's certificate checked against the CA for the name "redis".
        "CHORUS_REDIS_URL": (
            f"rediss://:{stack.redis_password}@redis:6379/0?ssl_ca_certs=/certs/server/ca.crt"
        ),
        # A TLS handshake on a busy machine outlasts the 50 ms default, and a timed-out
        # call only skips the cache, which the test then could not see used.
        "CHORUS_REDIS_TIMEOUT_S": "5",
        **ENGINES[name],
    }


def _orchestrator_env(stack: Stack) -> dict[str, str]:
    return {
        **_server_tls(require_client_cert=False),
        "CHORUS_API_KEYS": f"images-test:{key_digest(stack.api_key)}",
        **{f"CHORUS_{name.upper()}_ADDRESS": f"{name}:{PORTS[name]}" for name in INNER},
        "CHORUS_UPSTREAM_CA_FILE": "/certs/client/ca.crt",
        "CHORUS_UPSTREAM_CERT_FILE": "/certs/client/tls.crt",
        "CHORUS_UPSTREAM_KEY_FILE": "/certs/client/tls.key",
    }


def _gateway_env() -> dict[str, str]:
    # TLS to the orchestrator by its name on the network, which its certificate is for;
    # no keys of its own: the caller's key is forwarded, and the orchestrator's count.
    return {
        "CHORUS_ORCHESTRATOR_ADDRESS": f"orchestrator:{PORTS['orchestrator']}",
        "CHORUS_ORCHESTRATOR_CA_FILE": "/certs/server/ca.crt",
        "CHORUS_ORCHESTRATOR_SERVER_NAME": "orchestrator",
    }


def _wait(ready: Callable[[], bool], stack: Stack, what: str) -> None:
    """Return once ``ready()``; fail as soon as a container exits, or after READY_WAIT_S."""
    deadline = time.monotonic() + READY_WAIT_S
    while not ready():
        stack.fail_if_any_exited()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}:\n{stack.logs(name)}" for name in stack.containers)
            pytest.fail(f"{what}: not within {READY_WAIT_S:g} s\n{logs}")
        time.sleep(0.5)


def _redis_answers(stack: Stack) -> bool:
    result = stack.docker.attempt(
        "exec", "--env", f"REDISCLI_AUTH={stack.redis_password}", stack.containers["redis"],
        "redis-cli", "--tls", "--cacert", "/certs/server/ca.crt", "ping",
    )  # fmt: skip
    return result.stdout.strip() == "PONG"


HEALTH_NAMES = ("", *(HEALTH_PREFIX + name for name in INNER))
"""The orchestrator's own health and each inner service's, as the orchestrator sees it:
SERVING once its mutual-TLS channel to the service is READY, which with client-side
health checking means the service's own health says SERVING."""


def healthy(stack: Stack) -> bool:
    """Whether every name of HEALTH_NAMES is SERVING, asked over TLS from the host."""
    with grpc.secure_channel(stack.address(), channel_credentials(str(stack.ca_file))) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        try:
            statuses = [
                health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                for name in HEALTH_NAMES
            ]
        except grpc.RpcError:
            return False
    return all(status == health_pb2.HealthCheckResponse.SERVING for status in statuses)


def gateway_ready(stack: Stack) -> bool:
    """Whether the gateway's ``/readyz`` answers 200 from the host: the orchestrator's
    health is SERVING, asked by the gateway over TLS."""
    try:
        return httpx.get(f"{stack.gateway_url()}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def start_stack(docker: Docker, images: Mapping[str, str], redis_image: str, folder: Path) -> Stack:
    """Start Redis, the four services and the gateway, and wait until all are healthy and
    the gateway ready; on failure everything started is removed."""
    network = f"chorus-images-{secrets.token_hex(4)}"
    stack = Stack(docker, network, certificate_folders(folder, [*IMAGES, "redis"]))
    docker.output("network", "create", network)
    try:
        _run(
            stack, "redis", redis_image, {},
            command=[
                "--port", "0", "--tls-port", "6379",
                "--tls-cert-file", "/certs/server/tls.crt",
                "--tls-key-file", "/certs/server/tls.key",
                "--tls-ca-cert-file", "/certs/server/ca.crt", "--tls-auth-clients", "no",
                "--requirepass", stack.redis_password, "--save", "", "--appendonly", "no",
            ],
        )  # fmt: skip
        _wait(lambda: _redis_answers(stack), stack, "Redis answering PING over TLS")
        for name in INNER:
            _run(stack, name, images[name], _inner_env(stack, name))
        _run(
            stack, "orchestrator", images["orchestrator"], _orchestrator_env(stack),
            options=["--publish", f"127.0.0.1::{PORTS['orchestrator']}"],
        )  # fmt: skip
        _wait(lambda: healthy(stack), stack, "every service healthy")
        _run(
            stack, "gateway", images["gateway"], _gateway_env(),
            options=["--publish", f"127.0.0.1::{GATEWAY_PORT}"],
        )  # fmt: skip
        _wait(lambda: gateway_ready(stack), stack, "the gateway ready")
    except BaseException:
        stack.remove()
        raise
    return stack
