"""TLS on the common bootstrap: settings, handshakes, mutual TLS, rotation without restart.

Real grpc.aio servers on loopback with certificates made for the test (tests.support.
certificates); a health Check is the call, as it needs nothing loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import RunningServer, start_server
from services.common.settings import ServerSettings, load_settings
from services.common.telemetry import configure_telemetry
from services.common.tls import (
    ReloadingServerCertificates,
    ServerTlsFiles,
    channel_credentials,
    server_tls_files,
)
from tests.support.certificates import CertAuthority, install


class NothingService:
    """A service with no RPCs of its own: the server has health and reflection only."""

    @property
    def service_names(self) -> Sequence[str]:
        return ()

    def add_to_server(self, server: aio.Server) -> None:
        pass

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        pass


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start() -> AsyncIterator[StartServer]:
    """``start(**settings)``: a server on loopback with those settings, stopped after."""
    async with AsyncExitStack() as stack:

        async def start_one(**fields: object) -> RunningServer:
            settings = ServerSettings(host="127.0.0.1", port=0, **fields)  # type: ignore[arg-type]
            telemetry = configure_telemetry("chorus-test", environ={})
            stack.callback(telemetry.shutdown)
            running = await start_server(NothingService(), settings, telemetry)
            stack.push_async_callback(running.stop, 0)
            return running

        yield start_one


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return CertAuthority.create(tmp_path / "pki")


def server_fields(folder: Path, **extra: object) -> dict[str, object]:
    return {
        "tls_cert_file": str(folder / "tls.crt"),
        "tls_key_file": str(folder / "tls.key"),
        "tls_ca_file": str(folder / "ca.crt"),
        **extra,
    }


async def check(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """OK when a health Check over a new channel with ``credentials`` is answered, else the
    call's status (UNAVAILABLE when the handshake fails)."""
    target = f"localhost:{port}"
    channel = (
        aio.insecure_channel(target)
        if credentials is None
        else aio.secure_channel(target, credentials)
    )
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        except aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_plaintext_is_the_default_and_half_settings_are_refused() -> None:
    settings = ServerSettings()
    assert (settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file) == ("", "", "")
    assert server_tls_files("", "", "", False) is None
    with pytest.raises(ValueError, match="tls_key_file"):
        server_tls_files("tls.crt", "", "", False)
    with pytest.raises(ValueError, match="tls_ca_file"):
        server_tls_files("tls.crt", "tls.key", "", True)
    loaded = load_settings(
        ServerSettings,
        [],
        {"CHORUS_TLS_CERT_FILE": "/tls/tls.crt", "CHORUS_TLS_REQUIRE_CLIENT_CERT": "true"},
    )
    assert loaded.tls_cert_file == "/tls/tls.crt"
    assert loaded.tls_require_client_cert


async def test_the_right_ca_completes_the_handshake_and_a_wrong_one_does_not(
    start: StartServer, ca: CertAuthority, tmp_path: Path
) -> None:
    server_tls = tmp_path / "server-tls"
    install(ca.issue("server"), ca, server_tls)
    running = await start(**server_fields(server_tls))
    other_ca = CertAuthority.create(tmp_path / "other", "other-ca")

    assert await check(running.port, channel_credentials(str(ca.cert))) == grpc.StatusCode.OK
    wrong = await check(running.port, channel_credentials(str(other_ca.cert)))
    assert wrong == grpc.StatusCode.UNAVAILABLE
    assert await check(running.port, None) == grpc.StatusCode.UNAVAILABLE


async def test_a_server_requiring_client_certificates_refuses_clients_without_one(
    start: StartServer, ca: CertAuthority, tmp_path: Path
) -> None:
    server_tls = tmp_path / "server-tls"
    install(ca.issue("server"), ca, server_tls)
    running = await start(**server_fields(server_tls, tls_require_client_cert=True))
    client = ca.issue("orchestrator", "client")
    other_ca = CertAuthority.create(tmp_path / "other", "other-ca")
    stranger = other_ca.issue("stranger", "client")

    def credentials(cert: Path | str = "", key: Path | str = "") -> grpc.ChannelCredentials:
        return channel_credentials(str(ca.cert), str(cert), str(key))

    assert await check(running.port, credentials()) == grpc.StatusCode.UNAVAILABLE
    assert (
        await check(running.port, credentials(stranger.cert, stranger.key))
        == grpc.StatusCode.UNAVAILABLE
    )
    assert await check(running.port, credentials(client.cert, client.key)) == grpc.StatusCode.OK


async def test_a_rotated_certificate_is_served_to_new_connections_without_a_restart(
    start: StartServer, ca: CertAuthority, tmp_path: Path
) -> None:
    server_tls = tmp_path / "server-tls"
    first = ca.issue("server-1")
    install(first, ca, server_tls)
    running = await start(**server_fields(server_tls))
    trusts_first = channel_credentials(str(ca.cert))
    # The next certificate comes from another CA: only a client trusting that CA accepts
    # it, so which certificate the server presents is plain from outside.
    next_ca = CertAuthority.create(tmp_path / "next", "next-ca")
    trusts_next = channel_credentials(str(next_ca.cert))
    assert await check(running.port, trusts_first) == grpc.StatusCode.OK
    assert await check(running.port, trusts_next) == grpc.StatusCode.UNAVAILABLE

    async with aio.secure_channel(f"localhost:{running.port}", trusts_first) as open_channel:
        stub = health_pb2_grpc.HealthStub(open_channel)
        await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)

        second = next_ca.issue("server-2")
        assert second.serial != first.serial
        install(second, next_ca, server_tls)

        assert await check(running.port, trusts_next) == grpc.StatusCode.OK
        assert await check(running.port, trusts_first) == grpc.StatusCode.UNAVAILABLE
        # A connection made before the rotation keeps its certificate until it ends.
        await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)


def test_the_fetcher_answers_only_changes_and_keeps_the_certificate_while_files_are_missing(
    ca: CertAuthority, tmp_path: Path
) -> None:
    folder = tmp_path / "tls"
    install(ca.issue("server-1"), ca, folder)
    certificates = ReloadingServerCertificates(
        ServerTlsFiles(str(folder / "tls.crt"), str(folder / "tls.key"), str(folder / "ca.crt"))
    )
    assert certificates.fetch() is None

    (folder / "tls.key").unlink()  # half way through a rotation
    assert certificates.fetch() is None
    install(ca.issue("server-2"), ca, folder)
    assert certificates.fetch() is not None
    assert certificates.reloads == 1
    assert certificates.fetch() is None

    # Same contents rewritten: a new stamp but nothing new to serve.
    for name in ("tls.crt", "tls.key"):
        staged = folder / "staged"
        staged.write_bytes((folder / name).read_bytes())
        staged.replace(folder / name)
    assert certificates.fetch() is None
    assert certificates.reloads == 1
