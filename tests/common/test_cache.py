"""ResultCache against a real Redis server: hits by tier, and Redis down, slow or back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
from chorus.prosody.v1 import prosody_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.local_redis import RedisServer
from services.common.cache import ResultCache, cache_key
from tests.support.metrics import metric_points
from tests.support.waiting import wait_until


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
        return {
            point.attributes[key]: point.value for point in metric_points(self.metrics, metric_name)
        }


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


class FakeClock:
    """The breaker's clock, moved only by the test: a cool-down is over when the test
    says so, however slowly the machine runs."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


COOLDOWN_S = 5.0


def make_cache(
    recorder: Recorder,
    redis_url: str | None,
    *,
    # Generous where Redis is meant to answer, so a busy machine cannot trip the breaker;
    # the tests of a hung Redis pass a short timeout themselves (it is bound to expire).
    redis_timeout_s: float = 10.0,
    clock: FakeClock | None = None,
) -> ResultCache:
    return ResultCache(
        namespace="test",
        max_bytes=1 << 20,
        redis_url=redis_url,
        tracer=recorder.tracer,
        meter=recorder.meter,
        redis_timeout_s=redis_timeout_s,
        breaker_cooldown_s=COOLDOWN_S,
        clock=clock or FakeClock(),
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
    with redis.Redis.from_url(redis_server.url) as plain:
        assert plain.get("chorus:test:k") == b"shared value"
        assert 0 < plain.ttl("chorus:test:k") <= 86400
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


async def test_redis_down_is_skipped_then_retried_after_cooldown(
    recorder: Recorder, redis_server: RedisServer
) -> None:
    clock = FakeClock()
    cache = make_cache(recorder, redis_server.url, clock=clock)
    assert await cache.get("warm") is None  # connection established
    redis_server.stop()

    # A refused connection fails the call at once: an error, not a wait for the timeout.
    assert await cache.get("k") is None
    reason = recorder.attribute("cache.get", "chorus.cache.redis_skipped")
    assert isinstance(reason, str)
    assert reason.startswith("error:")

    # Within the cool-down Redis is not even tried.
    clock.advance(COOLDOWN_S / 2)
    assert await cache.get("k") is None
    assert recorder.attribute("cache.get", "chorus.cache.redis_skipped") == "circuit_open"
    assert cache.stats.redis_errors == 1

    # Memory still serves what it holds.
    await cache.put("local", b"v")
    assert await cache.get("local") == b"v"

    redis_server.start()
    with redis.Redis.from_url(redis_server.url) as plain:
        plain.set("chorus:test:k", b"back")
    clock.advance(COOLDOWN_S)
    assert await cache.get("k") == b"back"
    assert recorder.attribute("cache.get", "chorus.cache.tier") == "redis"
    assert recorder.counts("chorus.cache.redis_errors", "chorus.cache.namespace") == {"test": 1}
    await cache.close()


class SilentServer:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(-1)
        writer.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    """A hung Redis on a free loopback port, counting the connections made to it."""
    silent = SilentServer()
    server = await asyncio.start_server(silent.swallow, "127.0.0.1", 0)
    silent.port = server.sockets[0].getsockname()[1]
    yield silent
    server.close()


# Short: these calls are meant to time out, and each test waits for one or two of them.
HUNG_TIMEOUT_S = 0.2


async def test_a_hung_redis_costs_one_timeout(
    recorder: Recorder, silent_server: SilentServer
) -> None:
    cache = make_cache(recorder, silent_server.url, redis_timeout_s=HUNG_TIMEOUT_S)
    assert await cache.get("k") is None
    assert recorder.attribute("cache.get", "chorus.cache.redis_skipped") == "timeout"
    # One attempt, not a retry after the timeout: one connection, one error. (The server
    # side counts the connection on its own turn of the event loop, so wait for it.)
    await wait_until(lambda: silent_server.connections >= 1, "the connection to be accepted")
    assert silent_server.connections == 1
    assert cache.stats.redis_errors == 1

    await cache.put("k", b"v")
    # The caller never waits for Redis: put returned before its write even began.
    assert [s for s in recorder.spans.get_finished_spans() if s.name == "cache.put"] == []
    await cache.close()
    assert recorder.attribute("cache.put", "chorus.cache.redis_skipped") == "circuit_open"


async def test_after_the_cooldown_a_single_call_probes(
    recorder: Recorder, silent_server: SilentServer
) -> None:
    clock = FakeClock()
    cache = make_cache(recorder, silent_server.url, redis_timeout_s=HUNG_TIMEOUT_S, clock=clock)
    assert await cache.get("k") is None
    clock.advance(COOLDOWN_S)
    # Half-open: while one call probes the hung server the others do not queue behind it.
    # The two skipped calls end without waiting at all, so their spans end before the
    # probe's, which ends only when its timeout expires.
    await asyncio.gather(*(cache.get("k") for _ in range(3)))
    reasons = [
        (span.attributes or {}).get("chorus.cache.redis_skipped")
        for span in recorder.spans.get_finished_spans()
    ]
    assert reasons == ["timeout", "circuit_open", "circuit_open", "timeout"]
    assert cache.stats.redis_errors == 2
    await cache.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://not-redis",
        "127.0.0.1:6379",
        "redis://h:notaport/0",
        "redis://h:99999/0",
        "redis://",
        "redis://h/abc",
        "redis://h/1/2",
        "unix://",
    ],
)
def test_a_malformed_redis_url_fails_at_start_up(recorder: Recorder, url: str) -> None:
    with pytest.raises(ValueError, match="invalid redis URL"):
        make_cache(recorder, url)


def test_the_url_error_does_not_show_the_password(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="invalid redis URL") as raised:
        make_cache(recorder, "redis://user:s3cret@h/abc")
    assert "s3cret" not in str(raised.value)
    assert "user:***@h" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    ["redis://h", "redis://h:6380/", "redis://:pw@h:6379/3", "rediss://h/0", "unix:///run/r.sock"],
)
async def test_well_formed_urls_are_accepted_without_connecting(
    recorder: Recorder, url: str
) -> None:
    await make_cache(recorder, url).close()


async def test_after_close_the_cache_serves_memory_only(
    recorder: Recorder, redis_server: RedisServer
) -> None:
    cache = make_cache(recorder, redis_server.url)
    await cache.put("k", b"v")
    await cache.close()
    await cache.close()
    assert await cache.get("k") == b"v"
    assert await cache.get("other") is None
    assert "chorus.cache.redis_skipped" not in (recorder.last("cache.get").attributes or {})


async def test_an_outage_is_logged_once_not_per_request(
    recorder: Recorder, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cache = make_cache(recorder, redis_server.url, clock=clock)
    redis_server.stop()
    for _ in range(20):
        await cache.get("k")
        clock.advance(COOLDOWN_S / 40)  # all within the first cool-down
    # Only the cache's own records: a library's warning is not the cache's to count.
    warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and r.name == "services.common.cache"
    ]
    assert len(warnings) == 1
    assert "skipped" in warnings[0].getMessage()
    await cache.close()


def test_cache_key_parts_cannot_collide_by_concatenation() -> None:
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key(1, "2") != cache_key("1", 2)
    assert cache_key("a", 1.0) == cache_key("a", 1.0)
    assert cache_key(["a", "b"]) != cache_key("a", "b")
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert len(cache_key("x")) == 64


def test_cache_key_refuses_parts_it_would_have_to_stringify() -> None:
    # str(b"x") is "b'x'": stringifying would make these two keys equal.
    with pytest.raises(TypeError):
        cache_key(b"x")


async def test_a_response_is_computed_once_then_served_marked_as_a_hit(
    recorder: Recorder,
) -> None:
    cache = make_cache(recorder, None)
    computed: list[int] = []

    async def compute() -> prosody_pb2.AnalyzeResponse:
        computed.append(1)
        return prosody_pb2.AnalyzeResponse(duration_seconds=1.5)

    first = await cache.response("k", prosody_pb2.AnalyzeResponse.FromString, compute)
    second = await cache.response("k", prosody_pb2.AnalyzeResponse.FromString, compute)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.duration_seconds == 1.5
    assert computed == [1]


async def test_a_response_the_caller_says_not_to_keep_is_computed_again(
    recorder: Recorder,
) -> None:
    cache = make_cache(recorder, None)
    computed: list[int] = []

    async def compute() -> prosody_pb2.AnalyzeResponse:
        computed.append(1)
        return prosody_pb2.AnalyzeResponse()

    for _ in range(2):
        response = await cache.response(
            "k", prosody_pb2.AnalyzeResponse.FromString, compute, keep=lambda _: False
        )
        assert not response.cache_hit
    assert computed == [1, 1]
