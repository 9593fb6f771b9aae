"""A client that cancels an orchestrator RPC ends the RPC's calls to tts, prosody and vision,
whatever the orchestrator was waiting on: an inner service or gRPC's write to a client that
does not read.

The orchestrator runs in this process over scripted inner services (tests.orchestrator.
scripted), each on loopback, so a test knows which inner call is open and can see it end.
The cycle collector stays off during each test: an upstream call the orchestrator merely
dropped would otherwise end whenever it happened to run, and the test could pass by luck.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from grpc import aio

from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator.scripted import (
    CallLog,
    CountingOrchestrator,
    HandoverCounter,
    InnerCall,
    StandIn,
    stand_ins,
)
from tests.support.service_harness import ServerUnderTest, server_starter
from tests.support.waiting import WAIT_S, wait_until

DEADLINE_S = 4 * WAIT_S
"""Far beyond every wait below: only the cancel can end an inner call in time."""


@dataclass
class Scripted:
    """The orchestrator under test, what it has handed to gRPC, and its inner services'
    calls by service name."""

    orchestrator: orchestrator_pb2_grpc.OrchestratorAsyncStub
    counter: HandoverCounter
    logs: dict[str, CallLog]


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    """The cycle collector off for the test (see the module's docstring)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
async def scripted(no_cycle_collector: None) -> AsyncIterator[Scripted]:
    """An orchestrator over scripted inner services, each its own server on loopback."""
    async with server_starter(ServerUnderTest[Any]) as start:
        inner = stand_ins()
        addresses = {}
        for name, stand_in in inner.items():

            def build(_telemetry: Telemetry, stand_in: StandIn = stand_in) -> StandIn:
                return stand_in

            server = await start(build, ServerSettings(host="127.0.0.1", port=0), True)
            addresses[name] = server.address
        settings = OrchestratorSettings(
            host="127.0.0.1",
            port=0,
            tts_address=addresses["tts"],
            prosody_address=addresses["prosody"],
            vision_address=addresses["vision"],
        )

        def build_orchestrator(telemetry: Telemetry) -> CountingOrchestrator:
            return CountingOrchestrator(settings, telemetry)

        orchestrator = await start(build_orchestrator, settings, True)
        # A plain channel: the client's side is not what is under test.
        async with aio.insecure_channel(orchestrator.address) as channel:
            yield Scripted(
                orchestrator_pb2_grpc.OrchestratorStub(channel),
                orchestrator.service.counter,
                {name: stand_in.log for name, stand_in in inner.items()},
            )


@dataclass(frozen=True)
class Case:
    """A cancel: the call, how far it got first, and the inner calls it must end."""

    rpc: str
    request: Any
    read: int
    """Messages the client reads before it stops reading."""
    handed_over: int
    """Messages the orchestrator has handed to gRPC by the cancel: more than ``read``
    when the last is one the client cannot take, so the orchestrator is blocked writing."""
    upstream: tuple[tuple[str, str], ...]
    """(service, key) of the inner calls open at the cancel, which must end cancelled."""


CASES = {
    "speak-awaiting-tts": Case(
        "Speak", pb.SpeakRequest(text="Small hang."), 2, 2, (("tts", "Small hang."),)
    ),
    "speak-writing-to-a-client-that-does-not-read": Case(
        "Speak", pb.SpeakRequest(text="Small big hang."), 2, 3, (("tts", "Small big hang."),)
    ),
    "speak-with-a-preset-awaiting-prosody": Case(
        "Speak", pb.SpeakRequest(text="Small.", preset="hang"), 1, 1, (("prosody", "hang"),)
    ),
    "speak-with-a-preset-writing-while-the-next-sentence-is-made": Case(
        "Speak", pb.SpeakRequest(text="Big. Hang.", preset="calm"), 1, 2, (("tts", "Hang."),)
    ),
    "compose-awaiting-tts-and-vision": Case(
        "ComposeMessage",
        pb.ComposeMessageRequest(text="Hang.", photo=b"photo"),
        0,
        0,
        (("tts", "Hang."), ("vision", "Portrait")),
    ),
    "compose-awaiting-prosody-and-vision": Case(
        "ComposeMessage",
        pb.ComposeMessageRequest(text="Small.", preset="hang", photo=b"photo"),
        0,
        0,
        (("prosody", "hang"), ("vision", "Portrait")),
    ),
    "batch-awaiting-prosody": Case(
        "SynthesizeBatch",
        pb.SynthesizeBatchRequest(segments=["Small."], preset="hang"),
        0,
        0,
        (("prosody", "hang"),),
    ),
    "batch-writing-to-a-client-that-does-not-read": Case(
        "SynthesizeBatch",
        pb.SynthesizeBatchRequest(segments=["Big.", "Hang."]),
        0,
        1,
        (("tts", "Hang."),),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_cancelled_call_ends_its_upstream_calls(scripted: Scripted, case: Case) -> None:
    call = getattr(scripted.orchestrator, case.rpc)(case.request, timeout=DEADLINE_S)
    for _ in range(case.read):
        await call.read()

    def hanging() -> list[InnerCall]:
        found = [scripted.logs[service].find(key) for service, key in case.upstream]
        return [inner for inner in found if inner is not None and inner.hanging]

    def waiting() -> bool:
        handed_over = scripted.counter.handed_over >= case.handed_over
        return handed_over and len(hanging()) == len(case.upstream)

    await wait_until(waiting, "the orchestrator waiting, its upstream calls open")
    upstream = hanging()
    call.cancel()

    with contextlib.suppress(AssertionError):
        await wait_until(lambda: all(inner.ended for inner in upstream), "the calls' end")
    assert [(inner.key, inner.ended, inner.cancelled) for inner in upstream] == [
        (key, True, True) for _service, key in case.upstream
    ]
