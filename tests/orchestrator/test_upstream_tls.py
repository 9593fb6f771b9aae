"""Mutual TLS between the orchestrator and an inner service: a real tts (espeak) that
requires client certificates signed by the internal CA, and the orchestrator over it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from grpc import aio

from services.orchestrator.server import OrchestratorService
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.upstreams import UpstreamTls
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.orchestrator.real_suite import Server, loopback
from tests.support.certificates import CertAuthority, install
from tests.support.waiting import poll


@pytest.fixture
def pki(tmp_path: Path) -> Callable[[str], Path]:
    """``folder(name)``: a TLS Secret's files for ``name`` (server or client) from one CA."""
    ca = CertAuthority.create(tmp_path / "ca")

    def folder(name: str) -> Path:
        target = tmp_path / name
        install(ca.issue(name, "client" if name == "orchestrator" else "server"), ca, target)
        return target

    return folder


@asynccontextmanager
async def orchestrator_over_mtls_tts(
    tts_tls: Path, **upstream: str
) -> AsyncIterator[orchestrator_pb2_grpc.OrchestratorAsyncStub]:
    """A tts requiring client certificates from ``tts_tls``'s CA, and an orchestrator
    (plaintext at its edge) with ``upstream`` settings."""
    async with AsyncExitStack() as stack:
        tts: Server[TtsSettings] = Server(
            lambda s, t: TtsService(s, t),
            loopback(
                TtsSettings(),
                engine="espeak",
                tls_cert_file=str(tts_tls / "tls.crt"),
                tls_key_file=str(tts_tls / "tls.key"),
                tls_ca_file=str(tts_tls / "ca.crt"),
                tls_require_client_cert=True,
            ),
        )
        await tts.start()
        stack.push_async_callback(tts.stop)
        # The certificate names localhost; prosody and vision are not needed by Speak.
        address = f"localhost:{tts.settings.port}"
        orchestrator: Server[OrchestratorSettings] = Server(
            OrchestratorService,
            loopback(
                OrchestratorSettings(),
                tts_address=address,
                prosody_address="localhost:1",
                vision_address="localhost:1",
                **upstream,
            ),
        )
        await orchestrator.start()
        stack.push_async_callback(orchestrator.stop)
        channel = await stack.enter_async_context(aio.insecure_channel(orchestrator.address))
        yield orchestrator_pb2_grpc.OrchestratorStub(channel)


async def speak(stub: orchestrator_pb2_grpc.OrchestratorAsyncStub) -> list[Any]:
    return [
        response async for response in stub.Speak(pb.SpeakRequest(text="Hello there."), timeout=20)
    ]


def test_upstream_tls_is_off_by_default_and_made_from_the_upstream_settings() -> None:
    assert UpstreamTls.from_settings(OrchestratorSettings()) is None
    tls = UpstreamTls.from_settings(
        OrchestratorSettings(
            upstream_ca_file="/ca.crt",
            upstream_cert_file="/tls.crt",
            upstream_key_file="/tls.key",
            upstream_server_name="chorus-internal",
        )
    )
    assert tls == UpstreamTls("/ca.crt", "/tls.crt", "/tls.key", "chorus-internal")
    assert tls.options() == [("grpc.ssl_target_name_override", "chorus-internal")]


async def test_the_orchestrator_with_the_client_certificate_reaches_tts(
    pki: Callable[[str], Path],
) -> None:
    tts_tls, client = pki("tts"), pki("orchestrator")
    async with orchestrator_over_mtls_tts(
        tts_tls,
        upstream_ca_file=str(client / "ca.crt"),
        upstream_cert_file=str(client / "tls.crt"),
        upstream_key_file=str(client / "tls.key"),
    ) as stub:
        responses = await speak(stub)
    assert any(response.audio for response in responses)


async def test_an_orchestrator_without_the_client_certificate_is_refused(
    pki: Callable[[str], Path],
) -> None:
    tts_tls, client = pki("tts"), pki("orchestrator")
    async with orchestrator_over_mtls_tts(tts_tls, upstream_ca_file=str(client / "ca.crt")) as stub:
        with pytest.raises(aio.AioRpcError) as raised:
            await speak(stub)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "tts unavailable" in (raised.value.details() or "")


async def test_a_rotated_client_certificate_is_used_without_a_restart(
    tmp_path: Path, pki: Callable[[str], Path]
) -> None:
    # The orchestrator starts with a client certificate from a CA tts does not trust, as
    # after an expiry; cert-manager then writes one from the right CA into the same files.
    tts_tls = pki("tts")
    stranger = CertAuthority.create(tmp_path / "stranger")
    client = tmp_path / "orchestrator-client"
    install(stranger.issue("orchestrator", "client"), stranger, client)
    (client / "ca.crt").write_bytes((tts_tls / "ca.crt").read_bytes())
    async with orchestrator_over_mtls_tts(
        tts_tls,
        upstream_ca_file=str(client / "ca.crt"),
        upstream_cert_file=str(client / "tls.crt"),
        upstream_key_file=str(client / "tls.key"),
    ) as stub:
        with pytest.raises(aio.AioRpcError) as raised:
            await speak(stub)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

        rotated = pki("orchestrator")
        for name in ("tls.crt", "tls.key"):
            staged = client / f".{name}.new"
            staged.write_bytes((rotated / name).read_bytes())
            os.replace(staged, client / name)

        # The files are looked at again at most once a second: the first calls after the
        # rotation may still go out on the old channel.
        async def speak_or_refused() -> list[Any]:
            try:
                return await speak(stub)
            except aio.AioRpcError:
                return []

        responses = await poll(speak_or_refused, bool)
    assert any(response.audio for response in responses)
