"""Health that follows a server's dependencies: the services it calls.

Each dependency is reported under a grpc.health.v1 name of its own, SERVING while the
channel to it is READY. The channels balance round-robin with client-side health checking,
so READY means at least one replica of the dependency is reachable and says SERVING.

The overall name ("") goes NOT_SERVING while a *required* dependency is unavailable, so a
readiness probe takes the replica out of rotation; an optional dependency, one the server
degrades without, changes only its own name. The server's own service names are left to
the bootstrap's lifecycle (SERVING from loaded to shutdown): that is what a liveness probe
should read, since a dependency that is down is no reason to restart the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2

from services.common.abandoned_futures import abandon

OVERALL_HEALTH = ""
"""The health name that stands for the whole server."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# What a channel's connectivity says about the dependency behind it. IDLE and CONNECTING
# say nothing yet: a connection aged out by the server reconnects through them, and
# reporting NOT_SERVING then would flap every few minutes. round_robin keeps a channel in
# TRANSIENT_FAILURE while every replica fails, even while it retries ("sticky").
_AVAILABLE = {
    grpc.ChannelConnectivity.READY: True,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE: False,
    grpc.ChannelConnectivity.SHUTDOWN: False,
}


# A replaced channel is followed within this; a retired channel stays open far longer
# (see services/orchestrator/upstreams.py), so its closing is never taken for an outage.
_CHANNEL_RECHECK_S = 5.0


@runtime_checkable
class WatchesDependencies(Protocol):
    """A service whose health depends on services it calls (see ``watch_dependencies``)."""

    def watch_dependencies(self, health_servicer: health.aio.HealthServicer) -> None:
        """Start keeping the dependencies' health names, and the overall one, current on
        ``health_servicer``; called once the service is loaded and SERVING. The service
        stops the watch in its ``close()``."""
        ...


@dataclass(frozen=True)
class Dependency:
    """A service this server calls, and what its absence means."""

    health_name: str
    """The name its state is reported under, e.g. ``orchestrator/tts``."""
    channel: Callable[[], aio.Channel]
    """The channel to it now (a client may replace its channel, say when its TLS
    certificate is rotated)."""
    required: bool
    """Without it the server cannot serve: the overall health follows it."""


class DependencyHealth:
    """Publishes each dependency's state, and the overall state they allow, on a health
    servicer, from the moment ``start`` is called until ``stop``."""

    def __init__(self, dependencies: Sequence[Dependency]) -> None:
        self._dependencies = tuple(dependencies)
        # Unavailable until its channel says READY: a server starting while a required
        # dependency is down must not look ready for an instant.
        self._available = {d.health_name: False for d in self._dependencies}
        self._watchers: list[asyncio.Task[None]] = []
        # One publication at a time, each of the whole current state: a set() can wait
        # (behind a Watch stream writing), and a stale overall status must not land last.
        self._publishing = asyncio.Lock()

    def start(self, health_servicer: health.aio.HealthServicer) -> None:
        """Start following the channels (once; later calls do nothing)."""
        if self._watchers:
            return
        self._watchers = [
            asyncio.create_task(self._follow(dependency, health_servicer))
            for dependency in self._dependencies
        ]

    async def stop(self) -> None:
        """Stop following the channels (before they are closed: a closed channel is no
        news about its service)."""
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.cancel()
        for watcher in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _follow(
        self, dependency: Dependency, health_servicer: health.aio.HealthServicer
    ) -> None:
        await self._publish(health_servicer)  # every name exists from the start
        while True:
            channel = dependency.channel()
            # try_to_connect: an idle channel is connected, so that a dependency's state
            # is known before the first request needs it, and stays known.
            state = channel.get_state(try_to_connect=True)
            available = _AVAILABLE.get(state)
            if available is not None and available != self._available[dependency.health_name]:
                self._available[dependency.health_name] = available
                await self._publish(health_servicer)
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                return
            # Woken at least every _CHANNEL_RECHECK_S to follow a channel replaced meanwhile.
            change = asyncio.ensure_future(channel.wait_for_state_change(state))
            try:
                await asyncio.wait((change,), timeout=_CHANNEL_RECHECK_S)
            finally:
                # Not awaited (as asyncio.wait_for would): gRPC's watch ends only once the
                # channel changes or closes, and would hold this task's stop till then.
                abandon(change)

    async def _publish(self, health_servicer: health.aio.HealthServicer) -> None:
        """Set every dependency's name, then the overall one from the required ones.
        (Setting an unchanged status sends nothing to watchers.)"""
        async with self._publishing:
            for name, available in self._available.items():
                await health_servicer.set(name, SERVING if available else NOT_SERVING)
            ready = all(self._available[d.health_name] for d in self._dependencies if d.required)
            await health_servicer.set(OVERALL_HEALTH, SERVING if ready else NOT_SERVING)
