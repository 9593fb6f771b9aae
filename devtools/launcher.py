"""Starting Chorus servers as child processes and waiting until they are healthy.

Used by the local suite runner, the benchmarks and the end-to-end tests, so all three
start services the same way: ``python -m services.<name>`` with CHORUS_* settings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServiceProcess:
    """One Chorus server running in a child process on a loopback port."""

    def __init__(
        self,
        module: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        root: Path = REPO_ROOT,
        health_names: Sequence[str] = ("",),
        health_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """``root``: the checkout whose ``services`` package runs (another commit's
        worktree, for a benchmark's baseline); ``health_credentials``: what its health is
        checked over when it serves TLS (None: plaintext)."""
        self.module = module
        self._root = root
        self._health_names = tuple(health_names)
        self._health_credentials = health_credentials
        self.port = port if port is not None else free_port()
        self._env = {
            **os.environ,
            "CHORUS_HOST": "127.0.0.1",
            "CHORUS_PORT": str(self.port),
            # No metrics endpoint unless asked for: the services' default metrics ports
            # would collide between processes of one service, or with a running suite.
            "CHORUS_METRICS_PORT": "0",
            **(env or {}),
        }
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` to dial."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The child's process id; the process must have been started."""
        if self._process is None:
            raise RuntimeError(f"{self.module} not started")
        return self._process.pid

    @property
    def exit_status(self) -> int | None:
        """The status the child exited with; None while it runs (or before it started)."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Spawn the server (again, after it exited); returns at once (see ``wait_healthy``)."""
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=self._root,
            env=self._env,
            stdout=log,
            stderr=log,
        )

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Wait until health says SERVING for each of its health names (the whole server,
        and for the orchestrator each service it calls); raise if the process dies or time
        runs out."""
        deadline = time.monotonic() + timeout_s
        channel = (
            grpc.aio.insecure_channel(self.address)
            if self._health_credentials is None
            else grpc.aio.secure_channel(self.address, self._health_credentials)
        )
        async with channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(
                        f"{self.module} exited with {self._process.returncode} before serving"
                    )
                try:
                    statuses = [
                        (
                            await health.Check(
                                health_pb2.HealthCheckRequest(service=name), timeout=1.0
                            )
                        ).status
                        for name in self._health_names
                    ]
                    if all(status == health_pb2.HealthCheckResponse.SERVING for status in statuses):
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.module} not healthy within {timeout_s:g} s")
                await asyncio.sleep(0.05)

    def terminate(self) -> None:
        """Send SIGTERM: the server drains its streams, then exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def wait(self, timeout_s: float = 15.0) -> int:
        """Wait for exit; kill the process if it outlives ``timeout_s``. Returns its status."""
        if self._process is None:
            raise RuntimeError(f"{self.module} not started")
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    async def __aenter__(self) -> ServiceProcess:
        """Start the server and wait until it is healthy; it is stopped on exit."""
        self.start()
        try:
            await self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def stop(self, timeout_s: float = 15.0) -> int:
        """Terminate and wait; returns the exit status."""
        self.terminate()
        return self.wait(timeout_s)


def _asking(name: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=name)
