"""The result cache every service shares: an in-process LRU, then Redis when configured.

Redis is an optimisation, never a dependency: each call to it is bounded by a short
timeout, and after a failure a circuit breaker skips it for a cool-down, so a Redis that
is down or slow costs a request at most one timeout and usually nothing. The span of
every lookup says which tier answered, or why Redis was skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as redis
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from services.common.byte_lru import ByteLRU
from services.common.settings import ServerSettings
from services.common.telemetry import Telemetry

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CachedResponse(Protocol):
    """A whole response message that says whether the cache answered it."""

    cache_hit: bool

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes:  # noqa: N802 (protobuf's name)
        """The message's wire bytes."""
        ...


ResponseT = TypeVar("ResponseT", bound=CachedResponse)


def cache_key(*parts: object) -> str:
    """A sha256 hex digest of ``parts``, canonically encoded so no two lists collide.

    Parts are JSON values (str, int, float, bool, None, lists, dicts with str keys); anything
    else raises TypeError rather than being stringified, since ``str()`` would let a bytes
    value or an object collide with a string. Hash large inputs (audio, images) first and
    pass the digest.
    """
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """Counts since start-up, for logs and tests (metrics carry the same)."""

    hits: int
    misses: int
    redis_errors: int


class ResultCache:
    """Two-tier cache of ``str -> bytes`` for one namespace (one service's results)."""

    def __init__(
        self,
        *,
        namespace: str,
        max_bytes: int,
        redis_url: str | None,
        tracer: trace.Tracer,
        meter: Meter,
        redis_timeout_s: float = 0.05,
        ttl_s: int = 86400,
        breaker_cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds, monotonic) times the breaker's cool-down; a test passes one
        it can move forward, so that it never has to sleep through a cool-down or race one.
        """
        self._namespace = namespace
        self._clock = clock
        self._lru = ByteLRU(max_bytes)
        self._tracer = tracer
        self._timeout_s = redis_timeout_s
        self._ttl_s = ttl_s
        self._cooldown_s = breaker_cooldown_s
        self._redis = _connect(redis_url, redis_timeout_s) if redis_url else None
        self._open_until: float | None = None
        self._probing = False
        self._pending: set[asyncio.Task[None]] = set()
        self._hits = self._misses = self._redis_errors = 0
        self._requests = meter.create_counter(
            "chorus.cache.requests", description="Cache lookups by result (hit tier or miss)"
        )
        self._errors = meter.create_counter(
            "chorus.cache.redis_errors", description="Redis calls that failed or timed out"
        )
        # Derivable from chorus.cache.requests in PromQL, but a dashboard wants it as is.
        meter.create_observable_gauge(
            "chorus.cache.hit_ratio",
            callbacks=[self._observe_hit_ratio],
            unit="1",
            description="Lookups answered from either tier, over all lookups since start-up",
        )

    @classmethod
    def from_settings(
        cls, namespace: str, settings: ServerSettings, telemetry: Telemetry
    ) -> ResultCache:
        """The cache a server's settings describe (CHORUS_CACHE_*, CHORUS_REDIS_*)."""
        return cls(
            namespace=namespace,
            max_bytes=settings.cache_max_bytes,
            redis_url=settings.redis_url or None,
            redis_timeout_s=settings.redis_timeout_s,
            ttl_s=settings.cache_ttl_s,
            tracer=telemetry.tracer,
            meter=telemetry.meter,
        )

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and Redis errors counted so far."""
        return CacheStats(self._hits, self._misses, self._redis_errors)

    async def get(self, key: str) -> bytes | None:
        """The cached value for ``key``, or None; never raises for Redis trouble."""
        with self._tracer.start_as_current_span(
            "cache.get", attributes={"chorus.cache.namespace": self._namespace}
        ) as span:
            tier = "memory"
            value = self._lru.get(key)
            if value is None and self._redis is not None:
                tier = "redis"
                stored, skipped = await self._call_redis(
                    lambda client: client.get(self._redis_key(key))
                )
                if skipped:
                    span.set_attribute("chorus.cache.redis_skipped", skipped)
                if isinstance(stored, bytes):
                    value = stored
                    self._lru.put(key, value)
            hit = value is not None
            span.set_attribute("chorus.cache.hit", hit)
            span.set_attribute("chorus.cache.tier", tier if hit else "")
            if hit:
                self._hits += 1
            else:
                self._misses += 1
            self._requests.add(
                1,
                {
                    "chorus.cache.namespace": self._namespace,
                    "chorus.cache.result": f"hit_{tier}" if hit else "miss",
                },
            )
            return value

    async def response(
        self,
        key: str,
        parse: Callable[[bytes], ResponseT],
        compute: Callable[[], Awaitable[ResponseT]],
        keep: Callable[[ResponseT], bool] = lambda _response: True,
    ) -> ResponseT:
        """The response cached under ``key`` (``parse`` is its type's ``FromString``), with
        ``cache_hit`` set; else ``compute()``'s, stored unless ``keep`` says it must not be
        (a result cut short by its deadline)."""
        cached = await self.get(key)
        if cached is not None:
            response = parse(cached)
            response.cache_hit = True
            return response
        response = await compute()
        if keep(response):
            await self.put(key, response.SerializeToString())
        return response

    async def put(self, key: str, value: bytes) -> None:
        """Store in memory now and in Redis in the background (the caller never waits)."""
        self._lru.put(key, value)
        if self._redis is None:
            return
        task = asyncio.create_task(self._store(key, value), name="cache-put")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Let background writes finish (each is bounded by the timeout), then disconnect.

        Afterwards the cache serves from memory only; closing twice is harmless.
        """
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    async def _store(self, key: str, value: bytes) -> None:
        with self._tracer.start_as_current_span(
            "cache.put",
            attributes={
                "chorus.cache.namespace": self._namespace,
                "chorus.cache.bytes": len(value),
            },
        ) as span:
            _, skipped = await self._call_redis(
                lambda client: client.set(self._redis_key(key), value, ex=self._ttl_s)
            )
            if skipped:
                span.set_attribute("chorus.cache.redis_skipped", skipped)

    async def _call_redis(
        self, operation: Callable[[redis.Redis], Awaitable[T]]
    ) -> tuple[T | None, str | None]:
        """Run one bounded Redis call; returns (result, None) or (None, why it was skipped)."""
        client = self._redis
        assert client is not None, "callers check that Redis is configured"
        probe = False
        if self._open_until is not None:
            # Open breaker: skip until the cool-down ends, then let one call probe.
            if self._probing or self._clock() < self._open_until:
                return None, "circuit_open"
            self._probing = probe = True
        try:
            result = await asyncio.wait_for(operation(client), self._timeout_s)
        # Deliberately broad: Redis is an optimisation, so nothing its client raises may
        # fail the request. Cancellation of the caller is a BaseException and still goes up.
        except Exception as error:
            return None, self._trip(error)
        finally:
            if probe:
                self._probing = False
        if self._open_until is not None:
            logger.info("redis cache for %s is back", self._namespace)
            self._open_until = None
        return result, None

    def _trip(self, error: Exception) -> str:
        """Count a failed call and open the breaker; returns the reason for the span."""
        if isinstance(error, TimeoutError | RedisTimeoutError):
            reason = "timeout"
        else:
            reason = f"error: {type(error).__name__}"
        self._redis_errors += 1
        self._errors.add(1, {"chorus.cache.namespace": self._namespace, "reason": reason})
        # One warning per outage, not one per request: the metric counts every failure.
        if self._open_until is None:
            logger.warning(
                "redis cache for %s skipped for %.1f s after %s: %s",
                self._namespace,
                self._cooldown_s,
                reason,
                error,
            )
        self._open_until = self._clock() + self._cooldown_s
        return reason

    def _observe_hit_ratio(self, _options: CallbackOptions) -> list[Observation]:
        lookups = self._hits + self._misses
        if not lookups:
            return []  # no ratio before the first lookup, rather than a misleading 0
        return [Observation(self._hits / lookups, {"chorus.cache.namespace": self._namespace})]

    def _redis_key(self, key: str) -> str:
        return f"chorus:{self._namespace}:{key}"


def _connect(url: str, timeout_s: float) -> redis.Redis:
    """A lazily connecting client; a malformed URL raises ValueError now, at start-up."""
    try:
        _check_url(url)
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # No retries: one bounded attempt, then the breaker decides.
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:
        raise ValueError(f"invalid redis URL {_redacted(url)!r}: {error}") from error


def _check_url(url: str) -> None:
    """Refuse what redis-py accepts but misreads.

    redis-py falls back to localhost for a URL with no host or socket path, ignores a
    database path it cannot parse ("/abc", "/0/x") and strips inner slashes ("/1/2" is
    database 12): each would point a service at the wrong Redis without a word.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("no socket path")
        return
    if parts.scheme not in ("redis", "rediss"):
        return  # from_url refuses it, naming the schemes it accepts
    if not parts.hostname:
        raise ValueError("no host")
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
        raise ValueError(f"database must be a number, not {parts.path[1:]!r}")


def _redacted(url: str) -> str:
    """``url`` with its password masked, so a configuration error does not log a secret."""
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url
