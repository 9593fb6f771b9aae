"""Watching child services: a service that dies is reported and restarted, a few times.

The local suite (``make run``) runs each service in a process of its own; without a
watcher, one that crashed stayed down silently while the others answered UNAVAILABLE for
it. Kubernetes restarts pods itself; this is the same promise for a developer's machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from devtools.launcher import ServiceProcess


@dataclass
class RestartPolicy:
    """At most ``max_restarts`` restarts of one service within ``window_s`` seconds; past
    that it is left down (a crash loop is a bug to read in the log, not to hide)."""

    max_restarts: int = 3
    window_s: float = 300.0
    check_every_s: float = 0.5


@dataclass
class _History:
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False


class Supervisor:
    """Restarts the services of ``processes`` that exit, within ``policy``, and tells
    ``report`` (a line for a person) what happened."""

    def __init__(
        self,
        processes: Mapping[str, ServiceProcess],
        report: Callable[[str], None],
        policy: RestartPolicy | None = None,
    ) -> None:
        self._processes = processes
        self._report = report
        self._policy = policy or RestartPolicy()
        self._history = {name: _History() for name in processes}

    def given_up(self) -> set[str]:
        """The services left down after too many restarts."""
        return {name for name, history in self._history.items() if history.given_up}

    def restarts(self, name: str) -> int:
        """How many times ``name`` has been restarted."""
        return len(self._history[name].restarts)

    async def watch(self) -> None:
        """Check the services until cancelled, restarting those that exited."""
        while True:
            for name, process in self._processes.items():
                history = self._history[name]
                status = process.exit_status
                if status is not None and not history.given_up:
                    await self._restart(name, process, status, history)
            await asyncio.sleep(self._policy.check_every_s)

    async def _restart(
        self, name: str, process: ServiceProcess, status: int, history: _History
    ) -> None:
        now = time.monotonic()
        recent = [t for t in history.restarts if now - t < self._policy.window_s]
        if len(recent) >= self._policy.max_restarts:
            history.given_up = True
            self._report(
                f"{name} exited with status {status}; restarted {len(recent)} times in "
                f"{self._policy.window_s:g} s, leaving it down (see its log)"
            )
            return
        history.restarts.append(now)
        self._report(f"{name} exited with status {status}; restarting it")
        process.start()
        try:
            await process.wait_healthy()
        except (RuntimeError, TimeoutError) as error:
            self._report(f"{name} failed to restart: {error}")
            return
        self._report(f"{name} restarted and SERVING again")
