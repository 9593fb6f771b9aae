"""The grpc.aio server bootstrap every Chorus service runs on.

Start-up order matters to callers and to Kubernetes: the port opens first with health
NOT_SERVING, so probes get an answer while models load; the service turns SERVING only
after its models are loaded and warmed up. On SIGTERM or SIGINT health turns NOT_SERVING
at once (load balancers stop sending), then streams in flight get ``grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.api_keys import api_key_interceptors
from services.common.callers import CallerInterceptor
from services.common.gpu_metrics import register_gpu_memory_gauges
from services.common.health_dependencies import OVERALL_HEALTH, WatchesDependencies
from services.common.interceptors import (
    ErrorMappingInterceptor,
    Readiness,
    ReadinessInterceptor,
)
from services.common.logging_setup import configure_logging
from services.common.metrics_endpoint import start_metrics_endpoint
from services.common.response_streams import StreamGuardInterceptor
from services.common.rpc_metrics import RpcMetricsInterceptor
from services.common.rpc_tracing import RpcTracingInterceptor
from services.common.settings import ServerSettings, load_settings
from services.common.telemetry import Telemetry, configure_telemetry
from services.common.tls import server_credentials, server_tls_files

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServerSettings)


class ChorusService(Protocol):
    """What a service plugs into the bootstrap: its servicers and its model lifecycle."""

    @property
    def service_names(self) -> Sequence[str]:
        """Full gRPC service names, e.g. ``chorus.tts.v1.TextToSpeech``."""
        ...

    def add_to_server(self, server: aio.Server) -> None:
        """Register the servicers on ``server``."""
        ...

    async def load(self) -> None:
        """Load and warm up the models; raises with a clear message when it cannot."""
        ...

    async def close(self) -> None:
        """Release models, pools and connections after the server has stopped."""
        ...


@dataclass
class RunningServer:
    """A started server and the handles needed to drive its lifecycle."""

    server: aio.Server
    port: int
    health: health.aio.HealthServicer
    readiness: Readiness
    service: ChorusService
    telemetry: Telemetry

    async def load_service(self) -> bool:
        """Load the service's models and turn SERVING; on failure stay NOT_SERVING.

        Returns whether the service is ready. A failure is logged with its reason and
        reported by every guarded RPC, never masked by a fallback engine. The load time
        is recorded either way, as ``chorus.model.load_duration``.
        """
        started = time.perf_counter()
        try:
            await self.service.load()
        except Exception as error:
            self._record_load_duration(started, loaded=False)
            reason = f"model load failed: {error}"
            logger.exception("%s", reason)
            self.readiness.set_not_ready(reason)
            return False
        self._record_load_duration(started, loaded=True)
        # Only now: a model that runs on torch has imported it by the end of its load.
        register_gpu_memory_gauges(self.telemetry.meter)
        self.readiness.set_ready()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if isinstance(self.service, WatchesDependencies):
            # From here on the service keeps the overall health in step with what it needs.
            self.service.watch_dependencies(self.health)
        logger.info("serving %s on port %d", ", ".join(self.service.service_names), self.port)
        return True

    async def stop(self, grace_s: float) -> None:
        """Turn NOT_SERVING, let RPCs in flight finish within ``grace_s``, then close."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.service.close()

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in (OVERALL_HEALTH, *self.service.service_names):
            await self.health.set(name, status)

    def _record_load_duration(self, started: float, *, loaded: bool) -> None:
        gauge = self.telemetry.meter.create_gauge(
            "chorus.model.load_duration",
            unit="s",
            description="Time the service took to load and warm up its models",
        )
        gauge.set(
            time.perf_counter() - started,
            {"rpc.service": ",".join(self.service.service_names), "chorus.model.loaded": loaded},
        )


async def start_server(
    service: ChorusService, settings: ServerSettings, telemetry: Telemetry
) -> RunningServer:
    """Open the port with health, reflection and interceptors; models are not loaded yet.

    Binds ``settings.host:settings.port``; port 0 picks a free port (tests), reported in
    the returned ``RunningServer.port``. With ``settings.tls_cert_file`` and
    ``tls_key_file`` the port speaks TLS (mutual with ``tls_require_client_cert``), and
    picks up rotated files at the next handshake; without them, plaintext.
    """
    readiness = Readiness()
    options: list[tuple[str, int]] = [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
    ]
    if settings.max_connection_age_s > 0:
        # Clients re-resolve only when a connection ends: ageing connections out is what
        # lets a replica added by the autoscaler get its share of a long-lived channel.
        # New calls move at once; calls open on the aged connection (a conversation's
        # stream) go on for the age grace, which keepalive below keeps from holding a
        # vanished client's slots.
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
            (
                "grpc.max_connection_age_grace_ms",
                int(settings.connection_age_grace_s * 1000),
            ),
        ]
    if settings.keepalive_s > 0:
        # A client that vanished without closing (its host gone, a network cut) sends no
        # FIN: only an unanswered ping tells, and ends its calls, freeing their slots. Pings
        # go only while calls are open, as often as needed on a silent stream.
        options += [
            ("grpc.keepalive_time_ms", int(settings.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
            # gRPC core waits for any ping's ack this long too (a minute by default),
            # whatever the keepalive timeout says.
            ("grpc.http2.ping_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    server = aio.server(
        # The first is the outermost: RPC metrics see the status errors were mapped to.
        interceptors=[
            # First, so that every step of the handler chain, OpenTelemetry's included, runs
            # where the guard can end it.
            StreamGuardInterceptor(service.service_names, settings.stall_timeout_s),
            RpcTracingInterceptor(telemetry.tracer_provider),
            RpcMetricsInterceptor(telemetry.meter, service.service_names),
            ErrorMappingInterceptor(),
            # Before readiness: a caller without a key learns nothing of the service's state.
            *api_key_interceptors(settings, service.service_names),
            ReadinessInterceptor(readiness, service.service_names),
            CallerInterceptor(service.service_names, settings.trust_caller_metadata),
        ],
        options=options,
    )
    service.add_to_server(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (OVERALL_HEALTH, *service.service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if settings.reflection:
        exposed = (*service.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(exposed, server, pool=own_api_pool(exposed))

    address = f"{settings.host}:{settings.port}"
    tls_files = server_tls_files(
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_ca_file,
        settings.tls_require_client_cert,
    )
    if tls_files is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, server_credentials(tls_files))
    if port == 0:
        raise OSError(f"cannot listen on {settings.host}:{settings.port}")
    await server.start()
    return RunningServer(server, port, health_servicer, readiness, service, telemetry)


def run_service(
    settings_type: type[SettingsT],
    service_name: str,
    build: Callable[[SettingsT, Telemetry], ChorusService],
    argv: Sequence[str] | None = None,
) -> None:
    """A server's whole life: settings, logging, telemetry, then serve until a signal.

    ``service_name`` names the process in traces (``service.name``).
    """
    settings = load_settings(settings_type, argv)
    configure_logging(settings.log_level)
    telemetry = configure_telemetry(service_name)

    async def build_and_serve() -> None:
        # Built inside the loop: grpc.aio channels bind to the loop they are made in.
        await serve(build(settings, telemetry), settings, telemetry)

    asyncio.run(build_and_serve())


@contextlib.asynccontextmanager
async def process_lifetime(
    telemetry: Telemetry, host: str, metrics_port: int
) -> AsyncIterator[tuple[contextlib.AsyncExitStack, asyncio.Event]]:
    """A server process's life: yields an exit stack for what the body starts and an event
    set by SIGTERM or SIGINT. On exit, what the body pushed is undone first (the server
    drains), then the metrics endpoint on ``metrics_port`` (0: none) closes, then telemetry
    is flushed and shut down."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    async with contextlib.AsyncExitStack() as started:
        started.callback(telemetry.shutdown)
        if metrics_port:
            metrics = start_metrics_endpoint(telemetry.prometheus_registry, host, metrics_port)
            started.push_async_callback(metrics.stop)
        yield started, stop_requested


async def serve(service: ChorusService, settings: ServerSettings, telemetry: Telemetry) -> None:
    """Run ``service`` until SIGTERM or SIGINT, then shut down gracefully.

    When ``settings.metrics_port`` is set, Prometheus can scrape ``/metrics`` there from
    before the models load until the last RPC has ended.
    """
    async with process_lifetime(telemetry, settings.host, settings.metrics_port) as (
        started,
        stop_requested,
    ):
        running = await start_server(service, settings, telemetry)
        started.push_async_callback(running.stop, settings.grace_s)
        logger.info("listening on %s:%d, loading models", settings.host, running.port)
        loader = asyncio.create_task(running.load_service())
        await stop_requested.wait()
        logger.info("shutting down: %.1f s for RPCs in flight", settings.grace_s)
        loader.cancel()


def own_api_pool(service_names: Sequence[str]) -> descriptor_pool.DescriptorPool:
    """What reflection may describe: the files defining ``service_names`` and the files
    they import, with every other service taken out of them.

    The orchestrator's API reuses the inner services' messages, so their files must be
    served for a client to decode it; but the process's default pool would also describe
    the inner services' own APIs (tts's TextToSpeech) to whoever asked for them by name.
    A name with no file in the default pool (a generic handler's, in tests) is skipped.
    """
    exposed = set(service_names)
    default = descriptor_pool.Default()
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        added.add(file.name)
        for dependency in file.dependencies:
            add(dependency)  # a pool takes a file only after the files it imports
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        prefix = f"{proto.package}." if proto.package else ""
        kept = [entry for entry in proto.service if prefix + entry.name in exposed]
        del proto.service[:]
        proto.service.extend(kept)
        pool.Add(proto)

    for name in service_names:
        try:
            add(default.FindFileContainingSymbol(name))
        except KeyError:
            continue
    return pool
