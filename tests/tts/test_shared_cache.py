"""TTS results shared between servers through a real Redis, and Redis failing under them."""

from __future__ import annotations

from devtools.local_redis import RedisServer
from tests.tts.harness import StartTts, synthesize

TEXT = "The shared cache keeps this sentence."
REDIS_TIMEOUT_S = 10.0


async def test_a_second_server_streams_the_first_servers_result_from_redis(
    start_tts: StartTts, redis_server: RedisServer
) -> None:
    # A generous timeout: this test is about sharing, not about a slow Redis (or machine).
    first = await start_tts(redis_url=redis_server.url, redis_timeout_s=REDIS_TIMEOUT_S)
    second = await start_tts(redis_url=redis_server.url, redis_timeout_s=REDIS_TIMEOUT_S)

    made = await synthesize(first.stub, text=TEXT, chunk_duration_ms=40)
    assert not made.summary.cache_hit
    await first.service.cache.close()  # the Redis write happens in the background

    served = await synthesize(second.stub, text=TEXT, chunk_duration_ms=40)
    assert served.summary.cache_hit
    assert [c.audio for c in served.chunks] == [c.audio for c in made.chunks]
    [lookup] = second.finished_spans("cache.get")
    assert lookup.attributes is not None
    assert lookup.attributes["chorus.cache.tier"] == "redis"


async def test_redis_stopped_does_not_fail_requests(
    start_tts: StartTts, redis_server: RedisServer
) -> None:
    # A generous timeout: a refused connection must fail the Redis call by itself, at
    # once, not by running out of time (which a busy machine could make it do).
    tts = await start_tts(redis_url=redis_server.url, redis_timeout_s=REDIS_TIMEOUT_S)
    redis_server.stop()

    for _ in range(3):
        result = await synthesize(tts.stub, text=TEXT)
        assert result.chunks
    lookups = tts.finished_spans("cache.get")
    assert lookups[0].attributes is not None
    assert str(lookups[0].attributes["chorus.cache.redis_skipped"]).startswith("error:")
    # The first request's result is now in memory; the next ones are memory hits.
    assert lookups[-1].attributes is not None
    assert lookups[-1].attributes["chorus.cache.tier"] == "memory"
