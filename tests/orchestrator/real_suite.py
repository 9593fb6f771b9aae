"""The real tts, prosody and vision servers and the orchestrator over them, each in the
test's process on a loopback port, started by the common bootstrap as in production.

An inner service can be stopped and started again on the same port (a fresh server, as a
restarted pod is), so a test can watch the orchestrator notice it go and come back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.common.server import ChorusService, RunningServer, start_server
from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry, configure_telemetry
from services.orchestrator.server import OrchestratorService
from services.orchestrator.settings import OrchestratorSettings
from services.prosody.server import ProsodyService
from services.prosody.settings import ProsodySettings
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from services.vision.server import VisionService
from services.vision.settings import VisionSettings
from tests.support.metrics import metric_points

SettingsT = TypeVar("SettingsT", bound=ServerSettings)

Build = Callable[[Any, Telemetry], ChorusService]
"""Makes a service from its settings and telemetry."""


class Server(Generic[SettingsT]):
    """One server on a loopback port that stays the same across restarts."""

    def __init__(self, build: Build, settings: SettingsT) -> None:
        self._build = build
        self.settings = settings
        self._running: RunningServer | None = None
        self._metrics = InMemoryMetricReader()
        self._telemetry: Telemetry | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.port}"

    @property
    def running(self) -> RunningServer:
        assert self._running is not None, "not started"
        return self._running

    async def start(self) -> None:
        """Start a fresh server (on the port of the last one, if any) and load it."""
        self._metrics = InMemoryMetricReader()
        self._telemetry = configure_telemetry(
            "chorus-test", metric_readers=[self._metrics], environ={}
        )
        service = self._build(self.settings, self._telemetry)
        self._running = await start_server(service, self.settings, self._telemetry)
        # Port 0 the first time: the port it got is the one to come back on.
        self.settings = dataclasses.replace(self.settings, port=self._running.port)
        assert await self._running.load_service()

    async def stop(self) -> None:
        """Stop the server (health NOT_SERVING first, as on SIGTERM)."""
        running, self._running = self._running, None
        if running is not None:
            await running.stop(0.5)
        if self._telemetry is not None:
            self._telemetry.shutdown()
            self._telemetry = None

    def rpc_count(self, method: str) -> int:
        """RPCs to ``method`` this server (since its last start) has finished, any status."""
        return sum(
            int(point.value)
            for point in metric_points(self._metrics, "chorus.rpc.server.requests")
            if point.attributes.get("rpc.method") == method
        )


def serving(service: ChorusService) -> Server[ServerSettings]:
    """A server for ``service`` as it is (a stand-in), on a loopback port."""

    def build(_settings: ServerSettings, _telemetry: Telemetry) -> ChorusService:
        return service

    return Server(build, loopback(ServerSettings()))


@dataclass
class Suite:
    """The inner services and the orchestrator, with stubs for the orchestrator."""

    tts: Server[TtsSettings]
    prosody: Server[ProsodySettings]
    vision: Server[VisionSettings]
    orchestrator: Server[OrchestratorSettings]
    stub: orchestrator_pb2_grpc.OrchestratorAsyncStub
    health: health_pb2_grpc.HealthAsyncStub

    async def health_of(self, *names: str) -> dict[str, str]:
        """The orchestrator's health for each name, as the status's name."""
        statuses = {}
        for name in names:
            response = await self.health.Check(health_pb2.HealthCheckRequest(service=name))
            statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return statuses


def loopback(settings: SettingsT, **overrides: Any) -> SettingsT:
    """``settings`` on a free loopback port, metrics endpoint off, with ``overrides``."""
    return dataclasses.replace(settings, host="127.0.0.1", port=0, metrics_port=0, **overrides)


@asynccontextmanager
async def real_suite(
    *,
    tts: dict[str, Any] | None = None,
    orchestrator: dict[str, Any] | None = None,
    inner: dict[str, Server[Any]] | None = None,
) -> AsyncIterator[Suite]:
    """Real tts (espeak), prosody (one Praat worker) and vision (OpenCV engines), and the
    orchestrator over them; settings ``tts`` and ``orchestrator`` override the defaults,
    and ``inner`` may put servers of its own (stand-ins) in the place of inner services.

    The orchestrator reports its dependencies' health, as the bootstrap has it do once the
    orchestrator is SERVING.
    """
    servers: dict[str, Server[Any]] = {
        "tts": Server(
            lambda s, t: TtsService(s, t),
            loopback(TtsSettings(), engine="espeak", **(tts or {})),
        ),
        "prosody": Server(
            ProsodyService, loopback(ProsodySettings(), workers=1, time_budget_s=3600)
        ),
        "vision": Server(
            VisionService, loopback(VisionSettings(), detector="opencv", matting="grabcut")
        ),
        **(inner or {}),
    }
    async with AsyncExitStack() as stack:
        for server in servers.values():
            await server.start()
            stack.push_async_callback(server.stop)
        orchestrator_server: Server[OrchestratorSettings] = Server(
            OrchestratorService,
            loopback(
                OrchestratorSettings(),
                tts_address=servers["tts"].address,
                prosody_address=servers["prosody"].address,
                vision_address=servers["vision"].address,
                **(orchestrator or {}),
            ),
        )
        await orchestrator_server.start()
        stack.push_async_callback(orchestrator_server.stop)
        channel = await stack.enter_async_context(aio.insecure_channel(orchestrator_server.address))
        yield Suite(
            servers["tts"],
            servers["prosody"],
            servers["vision"],
            orchestrator_server,
            orchestrator_pb2_grpc.OrchestratorStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )
