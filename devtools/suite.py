"""``python -m devtools.suite``: run every Chorus service locally, each in its own process,
with a local Redis as their shared cache.

Starts Redis and the services on their default ports, waits until each reports SERVING,
prints where they listen (gRPC and Prometheus /metrics), says so and restarts a service
that dies (a few times: devtools.supervisor), and on Ctrl-C (or SIGTERM) stops them
all gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import NamedTuple

import grpc

from devtools.launcher import REPO_ROOT, ServiceProcess
from devtools.local_redis import RedisServer
from devtools.supervisor import Supervisor
from services.common.settings import ServerSettings
from services.gateway.settings import GatewaySettings
from services.orchestrator.server import HEALTH_PREFIX
from services.orchestrator.settings import OrchestratorSettings
from services.prosody.settings import ProsodySettings
from services.tts.settings import TtsSettings
from services.vision.settings import VisionSettings


class SuiteService(NamedTuple):
    """Where one service of the local suite runs."""

    module: str
    port: int
    metrics_port: int
    health_names: tuple[str, ...] = ("",)
    """What must say SERVING before the service is ready: the orchestrator waits for
    its channels to every service it calls too, or its first calls could find one still
    connecting."""

    @classmethod
    def with_defaults(
        cls,
        module: str,
        settings_type: type[ServerSettings],
        health_names: tuple[str, ...] = ("",),
    ) -> SuiteService:
        """``module`` on the ports its settings default to, so they are written once."""
        defaults = settings_type()
        return cls(module, defaults.port, defaults.metrics_port, health_names)


SERVICES = {
    "tts": SuiteService.with_defaults("services.tts", TtsSettings),
    "prosody": SuiteService.with_defaults("services.prosody", ProsodySettings),
    "vision": SuiteService.with_defaults("services.vision", VisionSettings),
    "orchestrator": SuiteService.with_defaults(
        "services.orchestrator",
        OrchestratorSettings,
        ("", *(HEALTH_PREFIX + name for name in ("tts", "prosody", "vision"))),
    ),
}
GATEWAY = SuiteService("services.gateway", GatewaySettings().port, GatewaySettings().metrics_port)
"""The HTTP and WebSocket gateway: not one of SERVICES (the gRPC servers, which tests and
benchmarks start alone), started once the orchestrator is SERVING and ready only while
the orchestrator is (its /readyz)."""
STATE_DIR = Path(".state")
LOG_DIR = STATE_DIR / "logs"


class HttpServiceProcess(ServiceProcess):
    """A server whose readiness is an HTTP GET of ``/readyz`` (the gateway's)."""

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200; raise if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.address}/readyz"
        while True:
            if self.exit_status is not None:
                raise RuntimeError(f"{self.module} exited with {self.exit_status} before serving")
            with contextlib.suppress(OSError):  # not listening yet
                if await asyncio.to_thread(_http_status, url) == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.module} not ready within {timeout_s:g} s")
            await asyncio.sleep(0.05)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def gateway_processes(
    orchestrator_address: str,
    log_dir: Path,
    extra_env: Mapping[str, str],
    port: int | None = None,
    metrics_port: int = 0,
    root: Path = REPO_ROOT,
) -> dict[str, ServiceProcess]:
    """The gateway over the orchestrator at ``orchestrator_address``, on ``port`` (a free
    one when None), serving metrics on ``metrics_port`` (0: none)."""
    env = {
        "CHORUS_ORCHESTRATOR_ADDRESS": orchestrator_address,
        **extra_env,
        "CHORUS_METRICS_PORT": str(metrics_port),
    }
    return {
        "gateway": HttpServiceProcess(
            GATEWAY.module, port=port, env=env, log_path=log_dir / "gateway.log", root=root
        )
    }


def suite_processes(
    ports: Mapping[str, int],
    redis_url: str,
    log_dir: Path,
    extra_env: Mapping[str, str],
    metrics_ports: Mapping[str, int] | None = None,
    root: Path = REPO_ROOT,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
    health_credentials: Mapping[str, grpc.ChannelCredentials] | None = None,
) -> dict[str, ServiceProcess]:
    """The suite's services on ``ports``, wired to each other and to ``redis_url``.

    Each serves Prometheus metrics on its port in ``metrics_ports``; without them, none
    does, so a suite on free ports (tests, benchmarks) never collides with another. A
    service also gets its ``service_env`` (its TLS files, say) and has its health checked
    over its ``health_credentials`` (plaintext without).
    """
    env = {
        "CHORUS_REDIS_URL": redis_url,
        "CHORUS_TTS_ADDRESS": f"127.0.0.1:{ports['tts']}",
        "CHORUS_PROSODY_ADDRESS": f"127.0.0.1:{ports['prosody']}",
        "CHORUS_VISION_ADDRESS": f"127.0.0.1:{ports['vision']}",
        **extra_env,
    }
    return {
        name: ServiceProcess(
            service.module,
            port=ports[name],
            env={
                **env,
                "CHORUS_METRICS_PORT": str((metrics_ports or {}).get(name, 0)),
                **(service_env or {}).get(name, {}),
            },
            log_path=log_dir / f"{name}.log",
            root=root,
            health_names=service.health_names,
            health_credentials=(health_credentials or {}).get(name),
        )
        for name, service in SERVICES.items()
    }


@contextlib.asynccontextmanager
async def running_suite(
    processes: Mapping[str, ServiceProcess], healthy_within_s: float = 120.0
) -> AsyncIterator[Mapping[str, ServiceProcess]]:
    """Start ``processes``, wait until every one is SERVING, and on exit stop them all
    (SIGTERM, so each drains, then wait): the one lifecycle of `make run`, the end-to-end
    tests and the benchmarks."""
    try:
        for process in processes.values():
            process.start()
        await asyncio.gather(*(p.wait_healthy(healthy_within_s) for p in processes.values()))
        yield processes
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            await asyncio.to_thread(process.wait)


async def run_suite() -> int:
    """Start Redis and the services, wait for a signal, stop them; returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    redis = RedisServer(STATE_DIR)
    redis.start()
    metrics_ports = {name: service.metrics_port for name, service in SERVICES.items()}
    processes = suite_processes(
        {name: service.port for name, service in SERVICES.items()},
        redis.url,
        LOG_DIR,
        {},
        metrics_ports,
    )
    gateway = gateway_processes(
        processes["orchestrator"].address, LOG_DIR, {}, GATEWAY.port, GATEWAY.metrics_port
    )
    metrics_ports["gateway"] = GATEWAY.metrics_port
    try:
        # The gateway after the others: it is ready only once the orchestrator is.
        async with running_suite(processes), running_suite(gateway):
            processes = {**processes, **gateway}
            print(f"{'redis':<13} {redis.url}", flush=True)
            for name, process in processes.items():
                metrics = f"http://127.0.0.1:{metrics_ports[name]}/metrics"
                log = LOG_DIR / f"{name}.log"
                print(f"{name:<13} {process.address:<18} {metrics:<32} log {log}", flush=True)
            print("all services SERVING; Ctrl-C stops them", flush=True)
            supervisor = Supervisor(processes, lambda line: print(line, flush=True))
            watching = asyncio.create_task(supervisor.watch())
            await stop.wait()
            watching.cancel()
        for name, process in processes.items():
            print(f"{name} stopped ({process.exit_status})", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(f"suite failed to start: {error}", file=sys.stderr)
        return 1
    finally:
        redis.stop()


def main() -> int:
    """Run the suite in the foreground; returns the process exit status."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_suite())


if __name__ == "__main__":
    sys.exit(main())
