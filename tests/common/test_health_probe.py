"""The exec health probe against a real tts server (espeak) on loopback, in plaintext and
with mutual TLS, as the Kubernetes TLS component runs it."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from services.common import health_probe
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.certificates import CertAuthority, install
from tests.support.service_harness import ServerUnderTest, server_starter


async def probe(*argv: str) -> int:
    """The probe's exit status (it blocks: run it off the loop the server runs on)."""
    return await asyncio.to_thread(health_probe.main, list(argv))


async def test_plaintext_probe_says_serving_only_once_loaded() -> None:
    async with server_starter(ServerUnderTest) as start:
        settings = dataclasses.replace(TtsSettings(host="127.0.0.1", port=0), engine="espeak")
        server = await start(lambda telemetry: TtsService(settings, telemetry), settings, False)
        port = str(server.running.port)
        assert await probe("--port", port) == 1  # up, but NOT_SERVING until loaded
        assert await server.running.load_service()
        assert await probe("--port", port) == 0
        assert await probe("--port", port, "--service", "no.such.Service") == 1


async def test_probe_over_mutual_tls_presents_the_servers_own_certificate(
    tmp_path: Path,
) -> None:
    ca = CertAuthority.create(tmp_path / "pki")
    server_tls, own_client = tmp_path / "server", tmp_path / "client"
    install(ca.issue("server"), ca, server_tls)
    install(ca.issue("tts-probe", "client"), ca, own_client)
    stranger = CertAuthority.create(tmp_path / "stranger")
    async with server_starter(ServerUnderTest) as start:
        settings = dataclasses.replace(
            TtsSettings(host="127.0.0.1", port=0),
            engine="espeak",
            tls_cert_file=str(server_tls / "tls.crt"),
            tls_key_file=str(server_tls / "tls.key"),
            tls_ca_file=str(server_tls / "ca.crt"),
            tls_require_client_cert=True,
        )
        server = await start(lambda telemetry: TtsService(settings, telemetry), settings, True)
        port = str(server.running.port)
        tls = ["--ca-file", str(own_client / "ca.crt")]
        client = [
            "--cert-file",
            str(own_client / "tls.crt"),
            "--key-file",
            str(own_client / "tls.key"),
        ]
        assert await probe("--port", port, *tls, *client) == 0
        # No client certificate: refused at the handshake. Plaintext: no answer either.
        assert await probe("--port", port, *tls) == 1
        assert await probe("--port", port) == 1
        # A server certificate from another CA is not trusted.
        assert await probe("--port", port, "--ca-file", str(stranger.cert), *client) == 1


def test_a_failed_check_names_its_status() -> None:
    # Nothing listens on port 1: the check's own status is what the probe prints.
    assert health_probe.check("localhost:1", "", 2.0) == "UNAVAILABLE"
