"""ResultCache against a real Redis server: hits by tier, and Redis down, slow or back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.cache import ResultCache, cache_key
from tests.support.redis_server import RedisServer


class Recorder:
    """A tracer and meter whose output the test can read."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = provider.get_tracer("test")
        self.metrics = InMemoryMetricReader()
        self.meter = MeterProvider(metric_readers=[self.metrics]).get_meter("test")

    def last(self, name: str) -> ReadableSpan:
        return [span for span in self.spans.get_finished_spans() if span.name == name][-1]

    def attribute(self, name: str, key: str) -> object:
        attributes = self.last(name).attributes
        assert attributes is not None
        return attributes.get(key)

    def counts(self, metric_name: str, key: str) -> dict[object, float]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return {
            point.attributes[key]: point.value  # type: ignore[union-attr, index]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == metric_name
            for point in metric.data.data_points
        }


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_cache(recorder: Recorder, redis_url: str | None, **options: float) -> ResultCache:
    return ResultCache(
        namespace="test",
        max_bytes=1 << 20,
        redis_url=redis_url,
        tracer=recorder.tracer,
        meter=recorder.meter,
        **options,  # type: ignore[arg-type]
    )


async def test_miss_then_hit_from_memory(recorder: Recorder) -> None:
    cache = make_cache(recorder, None)
    assert await cache.get("k") is None
    assert recorder.attribute("cache.get", "chorus.cache.hit") is False
    await cache.put("k", b"value")
    assert await cache.get("k") == b"value"
    assert recorder.attribute("cache.get", "chorus.cache.tier") == "memory"
    assert cache.stats.hits == 1
    assert cache.stats.misses == 1
    assert recorder.counts("chorus.cache.requests", "chorus.cache.result") == {
        "miss": 1,
        "hit_memory": 1,
    }
    await cache.close()


async def test_a_second_process_hits_through_redis(
    recorder: Recorder, redis_server: RedisServer
) -> None:
    writer = make_cache(recorder, redis_server.url)
    await writer.put("k", b"shared value")
    await writer.close()  # waits for the background write
    stored = redis.Redis.from_url(redis_server.url).get("chorus:test:k")
    assert stored == b"shared value"
    assert recorder.last("cache.put").attributes == {
        "chorus.cache.namespace": "test",
        "chorus.cache.bytes": 12,
    }

    reader = make_cache(recorder, redis_server.url)
    assert await reader.get("k") == b"shared value"
    assert recorder.attribute("cache.get", "chorus.cache.tier") == "redis"
    # Promoted to memory: the next lookup does not go to Redis.
    assert await reader.get("k") == b"shared value"
    assert recorder.attribute("cache.get", "chorus.cache.tier") == "memory"
    await reader.close()


async def test_redis_down_is_skipped_quickly_then_retried_after_cooldown(
    recorder: Recorder, redis_server: RedisServer
) -> None:
    cache = make_cache(recorder, redis_server.url, breaker_cooldown_s=0.2)
    assert await cache.get("warm") is None  # connection established
    redis_server.stop()

    started = time.perf_counter()
    assert await cache.get("k") is None
    assert time.perf_counter() - started < 0.5
    reason = recorder.attribute("cache.get", "chorus.cache.redis_skipped")
    assert isinstance(reason, str)
    assert reason.startswith("error:")

    # Within the cool-down Redis is not even tried.
    assert await cache.get("k") is None
    assert recorder.attribute("cache.get", "chorus.cache.redis_skipped") == "circuit_open"
    assert cache.stats.redis_errors == 1

    # Memory still serves what it holds.
    await cache.put("local", b"v")
    assert await cache.get("local") == b"v"

    redis_server.start()
    redis.Redis.from_url(redis_server.url).set("chorus:test:k", b"back")
    await asyncio.sleep(0.25)
    assert await cache.get("k") == b"back"
    assert recorder.attribute("cache.get", "chorus.cache.tier") == "redis"
    assert recorder.counts("chorus.cache.redis_errors", "chorus.cache.namespace") == {"test": 1}
    await cache.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    server.close()


async def test_a_hung_redis_costs_one_timeout(recorder: Recorder, silent_server: str) -> None:
    cache = make_cache(recorder, silent_server, redis_timeout_s=0.05)
    started = time.perf_counter()
    assert await cache.get("k") is None
    assert time.perf_counter() - started < 0.5
    assert recorder.attribute("cache.get", "chorus.cache.redis_skipped") == "timeout"

    started = time.perf_counter()
    await cache.put("k", b"v")  # returns at once; the write fails in the background
    assert time.perf_counter() - started < 0.05
    await cache.close()
    assert recorder.attribute("cache.put", "chorus.cache.redis_skipped") == "circuit_open"


def test_a_malformed_redis_url_fails_at_start_up(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="invalid redis URL"):
        make_cache(recorder, "http://not-redis")


async def test_an_outage_is_logged_once_not_per_request(
    recorder: Recorder, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(recorder, redis_server.url, breaker_cooldown_s=60)
    redis_server.stop()
    for _ in range(20):
        await cache.get("k")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "skipped" in warnings[0].getMessage()
    await cache.close()


def test_cache_key_parts_cannot_collide_by_concatenation() -> None:
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key(1, "2") != cache_key("1", 2)
    assert cache_key("a", 1.0) == cache_key("a", 1.0)
    assert len(cache_key("x")) == 64
