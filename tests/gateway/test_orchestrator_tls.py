"""The gateway's channel over mutual TLS: an orchestrator that requires client
certificates signed by the internal CA, over the package's real inner services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from services.orchestrator.server import OrchestratorService
from services.orchestrator.settings import OrchestratorSettings
from tests.gateway.harness import running_gateway
from tests.orchestrator.real_suite import Server, Suite, loopback
from tests.support.certificates import CertAuthority, install

pytestmark = pytest.mark.asyncio(loop_scope="package")

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Over TLS.", "response_format": "pcm"}


@pytest_asyncio.fixture(loop_scope="package")
async def pki(tmp_path: Path) -> dict[str, Path]:
    """The orchestrator's server files and the gateway's client files, from one CA."""
    ca = CertAuthority.create(tmp_path / "ca")
    folders = {}
    for name, kind in (("orchestrator", "server"), ("gateway", "client")):
        folders[name] = tmp_path / name
        install(ca.issue(name, kind), ca, folders[name])
    return folders


@pytest_asyncio.fixture(loop_scope="package")
async def tls_orchestrator(suite: Suite, pki: dict[str, Path]) -> AsyncIterator[str]:
    """An orchestrator over the suite's inner services that takes mutual TLS only."""
    files = pki["orchestrator"]
    server: Server[OrchestratorSettings] = Server(
        OrchestratorService,
        loopback(
            OrchestratorSettings(),
            tts_address=suite.tts.address,
            prosody_address=suite.prosody.address,
            vision_address=suite.vision.address,
            tls_cert_file=str(files / "tls.crt"),
            tls_key_file=str(files / "tls.key"),
            tls_ca_file=str(files / "ca.crt"),
            tls_require_client_cert=True,
        ),
    )
    await server.start()
    try:
        yield f"localhost:{server.settings.port}"
    finally:
        await server.stop()


async def test_the_gateway_speaks_to_an_orchestrator_over_mutual_tls(
    tls_orchestrator: str, pki: dict[str, Path]
) -> None:
    client = pki["gateway"]
    async with (
        running_gateway(
            tls_orchestrator,
            orchestrator_ca_file=str(client / "ca.crt"),
            orchestrator_cert_file=str(client / "tls.crt"),
            orchestrator_key_file=str(client / "tls.key"),
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.post("/v1/audio/speech", json=SPEECH)
        ready = await http.get("/readyz")
    assert response.status_code == 200
    assert len(response.content) > 0
    assert ready.status_code == 200


async def test_without_its_client_certificate_it_is_turned_away(
    tls_orchestrator: str, pki: dict[str, Path]
) -> None:
    async with (
        running_gateway(
            tls_orchestrator, orchestrator_ca_file=str(pki["gateway"] / "ca.crt")
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.post("/v1/audio/speech", json=SPEECH)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
