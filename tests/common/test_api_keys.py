"""API keys at the edge: a known key is let in under its name (on the span, the metrics and
the caller's admission share); a missing or unknown one is refused, and counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import SpanKind

from services.common.admission import AdmissionController
from services.common.api_keys import ApiKeys, api_key_interceptors, key_digest
from services.common.callers import CALLER
from services.common.settings import ServerSettings, load_settings
from services.common.telemetry import Telemetry
from tests.support.service_harness import ServerUnderTest, server_starter
from tests.support.waiting import wait_until

SERVICE = "chorus.test.Echo"
ALICE_KEY = "alice-secret-key-0123456789"
BOB_KEY = "bob-secret-key-9876543210"
KEYS = f"alice:{key_digest(ALICE_KEY)},bob:{key_digest(BOB_KEY)}"


class Echo:
    """A stand-in service: /Who answers its caller; /Hold holds an admission slot until
    released; /Stream streams its caller."""

    service_names = (SERVICE,)

    def __init__(self, settings: ServerSettings, telemetry: Telemetry) -> None:
        self.admission = AdmissionController.from_settings(settings, telemetry)
        self.release = asyncio.Event()

    def add_to_server(self, server: aio.Server) -> None:
        admission, release = self.admission, self.release

        async def who(_request: bytes, _context: Any) -> bytes:
            return CALLER.get().encode()

        async def hold(_request: bytes, _context: Any) -> bytes:
            async with admission.slot("Hold"):
                await release.wait()
            return b""

        async def stream(_request: bytes, _context: Any) -> AsyncIterator[bytes]:
            yield CALLER.get().encode()

        handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            "Who": grpc.unary_unary_rpc_method_handler(who),
            "Hold": grpc.unary_unary_rpc_method_handler(hold),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        self.release.set()


@pytest.fixture
async def echo() -> AsyncIterator[ServerUnderTest[Echo]]:
    """The stand-in with keys alice and bob; 2 slots, one for any one caller."""
    settings = ServerSettings(
        host="127.0.0.1", port=0, api_keys=KEYS, max_in_flight=2, max_queue=0, caller_share=0.5
    )
    async with server_starter(ServerUnderTest) as start:
        yield await start(lambda telemetry: Echo(settings, telemetry), settings, True)


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def unary(server: ServerUnderTest[Echo], method: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return server.channel.unary_unary(f"/{SERVICE}/{method}")


def span_attributes(server: ServerUnderTest[Echo], method: str) -> dict[str, Any]:
    """The attributes of the one finished server span of ``method``."""
    [span] = [
        span
        for span in server.finished_spans(f"/{SERVICE}/{method}")
        if span.kind == SpanKind.SERVER
    ]
    return dict(span.attributes or {})


def requests_by(server: ServerUnderTest[Echo], status: str) -> list[dict[str, Any]]:
    return [
        dict(point.attributes)
        for point in server.metric_points("chorus.rpc.server.requests")
        if point.attributes["rpc.grpc.status_code"] == status
        for _ in range(int(point.value))
    ]


# --- parsing ----------------------------------------------------------------------------


def test_entries_parse_by_digest_and_name() -> None:
    keys = ApiKeys.parse(f"# comment\n{KEYS}\n\ncarol:{key_digest('c').upper()}\n", "test")
    assert keys.names == ["alice", "bob", "carol"]
    assert keys.name_of(ALICE_KEY) == "alice"
    assert keys.name_of("c") == "carol"
    assert keys.name_of("nobody") is None
    assert not ApiKeys.parse("", "test")


@pytest.mark.parametrize(
    "text",
    [
        ALICE_KEY,  # a plain key pasted instead of its digest
        f"alice:{ALICE_KEY}",
        f"alice {key_digest(ALICE_KEY)}",
        f":{key_digest(ALICE_KEY)}",
        f"alice:{key_digest(ALICE_KEY)},alice:{key_digest(BOB_KEY)}",
        f"alice:{key_digest(ALICE_KEY)},bob:{key_digest(ALICE_KEY)}",
    ],
)
def test_malformed_entries_stop_the_server_without_echoing_them(text: str) -> None:
    with pytest.raises(ValueError, match="entry") as raised:
        ApiKeys.parse(text, "CHORUS_API_KEYS")
    assert ALICE_KEY not in str(raised.value)
    assert key_digest(ALICE_KEY) not in str(raised.value)


def test_keys_come_from_the_setting_and_the_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"bob:{key_digest(BOB_KEY)}\n")
    settings = load_settings(
        ServerSettings,
        argv=[],
        environ={
            "CHORUS_API_KEYS": f"alice:{key_digest(ALICE_KEY)}",
            "CHORUS_API_KEYS_FILE": str(keys_file),
        },
    )
    assert ApiKeys.from_settings(settings).names == ["alice", "bob"]


def test_no_keys_no_check_but_an_empty_file_refuses_everyone(tmp_path: Path) -> None:
    assert api_key_interceptors(ServerSettings(), [SERVICE]) == []
    empty = tmp_path / "keys"
    empty.write_text("# none yet\n")
    assert len(api_key_interceptors(ServerSettings(api_keys_file=str(empty)), [SERVICE])) == 1
    with pytest.raises(ValueError, match="cannot read"):
        api_key_interceptors(ServerSettings(api_keys_file=str(tmp_path / "missing")), [SERVICE])


# --- on a real server -------------------------------------------------------------------


async def test_a_known_key_is_the_caller_on_the_span_and_the_metrics(
    echo: ServerUnderTest[Echo],
) -> None:
    assert await unary(echo, "Who")(b"", metadata=bearer(ALICE_KEY)) == b"alice"
    stream: aio.UnaryStreamMultiCallable[bytes, bytes] = echo.channel.unary_stream(
        f"/{SERVICE}/Stream"
    )
    assert [reply async for reply in stream(b"", metadata=bearer(BOB_KEY))] == [b"bob"]

    await wait_until(lambda: len(echo.spans.get_finished_spans()) == 4, "the spans")
    assert span_attributes(echo, "Who")["chorus.api_key"] == "alice"
    assert span_attributes(echo, "Stream")["chorus.api_key"] == "bob"
    await wait_until(lambda: len(requests_by(echo, "OK")) == 2, "both calls counted")
    ok = requests_by(echo, "OK")
    assert sorted((p["rpc.method"], p["chorus.api_key"]) for p in ok) == [
        ("Stream", "bob"),
        ("Who", "alice"),
    ]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing API key"),
        (bearer("not-a-key-of-ours"), "unknown API key"),
        (bearer(""), "malformed authorization"),
        ((("authorization", f"Basic {ALICE_KEY}"),), "malformed authorization"),
    ],
)
async def test_a_missing_or_unknown_key_is_refused_and_counted(
    echo: ServerUnderTest[Echo], metadata: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await unary(echo, "Who")(b"", metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = raised.value.details() or ""
    assert message in details
    assert "not-a-key-of-ours" not in details
    assert ALICE_KEY not in details

    # The server counts the call once its status is out: the client may see it first.
    await wait_until(lambda: bool(requests_by(echo, "UNAUTHENTICATED")), "the refusal counted")
    refused = requests_by(echo, "UNAUTHENTICATED")
    assert [(p["rpc.method"], "chorus.api_key" in p) for p in refused] == [("Who", False)]
    await wait_until(lambda: len(echo.finished_spans(f"/{SERVICE}/Who")) == 2, "the spans")
    assert "chorus.api_key" not in span_attributes(echo, "Who")


async def test_health_and_reflection_need_no_key(echo: ServerUnderTest[Echo]) -> None:
    health = health_pb2_grpc.HealthStub(echo.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_each_key_holds_its_own_share_from_one_address(
    echo: ServerUnderTest[Echo],
) -> None:
    """One client address, two keys: alice's second call finds her share (1 of 2 slots)
    taken, bob's is let in, as two callers, not as one address."""
    alice = asyncio.ensure_future(unary(echo, "Hold")(b"", metadata=bearer(ALICE_KEY)))
    await wait_until(lambda: echo.service.admission.held_by("alice") == 1, "alice's slot")
    with pytest.raises(aio.AioRpcError) as raised:
        await unary(echo, "Hold")(b"", metadata=bearer(ALICE_KEY))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    bob = asyncio.ensure_future(unary(echo, "Hold")(b"", metadata=bearer(BOB_KEY)))
    await wait_until(lambda: echo.service.admission.held_by("bob") == 1, "bob's slot")
    echo.service.release.set()
    assert await alice == b""
    assert await bob == b""


async def test_without_keys_the_caller_is_the_address() -> None:
    settings = ServerSettings(host="127.0.0.1", port=0)
    async with server_starter(ServerUnderTest) as start:
        server = await start(lambda telemetry: Echo(settings, telemetry), settings, True)
        assert await unary(server, "Who")(b"") == b"ipv4:127.0.0.1"
