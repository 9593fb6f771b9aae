"""The Prometheus endpoint of a real TTS server, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chorus.tts.v1 import tts_pb2
from prometheus_client import CollectorRegistry

from devtools.launcher import ServiceProcess, free_port
from services.common.metrics_endpoint import MetricsEndpoint, start_metrics_endpoint
from services.common.settings import load_settings
from services.common.telemetry import SECONDS_BUCKETS
from services.orchestrator.settings import OrchestratorSettings
from services.prosody.settings import ProsodySettings
from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from services.vision.settings import VisionSettings
from tests.support.prometheus import Scrape, scrape
from tests.support.service_harness import server_starter
from tests.support.waiting import poll
from tests.tts.harness import TtsServer, synthesize

SYNTHESIZE = "/chorus.tts.v1.TextToSpeech/Synthesize"
LIST_VOICES = "/chorus.tts.v1.TextToSpeech/ListVoices"
SHORT = "Hello there. How are you today?"
# Far more audio than gRPC's flow-control window holds: the stream stays open until read.
LONG = " ".join(f"This is sentence number {i} of a rather long text." for i in range(40))


@pytest.fixture
async def tts() -> AsyncIterator[TtsServer]:
    """A TTS server that takes one stream at a time and queues none."""
    settings = TtsSettings(host="127.0.0.1", port=0, max_in_flight=1, max_queue=0)
    async with server_starter(TtsServer) as start:
        yield await start(lambda telemetry: TtsService(settings, telemetry), settings, True)


@pytest.fixture
async def endpoint(tts: TtsServer) -> AsyncIterator[MetricsEndpoint]:
    """The endpoint serving ``tts``'s metrics on a free loopback port."""
    endpoint = start_metrics_endpoint(tts.telemetry.prometheus_registry, "127.0.0.1", 0)
    yield endpoint
    await endpoint.stop()


def rpc_labels(method: str) -> dict[str, str]:
    """The service and method labels of a full method name."""
    service, _, name = method.removeprefix("/").partition("/")
    return {"rpc_service": service, "rpc_method": name}


def requests(result: Scrape, method: str, status: str) -> float | None:
    return result.value(
        "chorus_rpc_server_requests_total", rpc_grpc_status_code=status, **rpc_labels(method)
    )


async def test_rpcs_are_counted_and_timed_by_method_and_final_status(
    tts: TtsServer, endpoint: MetricsEndpoint
) -> None:
    await synthesize(tts.stub, text=SHORT)
    await tts.stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await synthesize(tts.stub, text=SHORT, speaking_rate=-1)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # One stream holds the only slot; the next is refused at once, then the first cancelled.
    held = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG), timeout=30)
    await held.read()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await synthesize(tts.stub, text=SHORT)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    held.cancel()

    # The server learns of the cancellation a moment later.
    result = await poll(
        lambda: scrape(endpoint.port), lambda found: bool(requests(found, SYNTHESIZE, "CANCELLED"))
    )

    assert result.types["chorus_rpc_server_requests"] == "counter"
    assert result.types["chorus_rpc_server_duration_seconds"] == "histogram"
    assert requests(result, SYNTHESIZE, "OK") == 1
    assert requests(result, LIST_VOICES, "OK") == 1
    assert requests(result, SYNTHESIZE, "INVALID_ARGUMENT") == 1
    assert requests(result, SYNTHESIZE, "RESOURCE_EXHAUSTED") == 1
    assert requests(result, SYNTHESIZE, "CANCELLED") == 1
    ok = {"rpc_grpc_status_code": "OK", **rpc_labels(SYNTHESIZE)}
    assert result.value("chorus_rpc_server_duration_seconds_count", **ok) == 1
    assert result.value("chorus_rpc_server_duration_seconds_bucket", le="+Inf", **ok) == 1
    # Buckets in seconds (the SDK's own bounds, 0 to 10000, suit milliseconds).
    assert bucket_bounds(result, "chorus_rpc_server_duration_seconds", **ok) == SECONDS_BUCKETS
    assert (result.value("chorus_rpc_server_duration_seconds_sum", **ok) or 0) > 0
    assert result.value("chorus_admission_rejections_total", rpc_method="Synthesize") == 1
    # Probes are not the service's traffic.
    assert not any(
        "grpc.health" in sample.labels.get("rpc_service", "") for sample in result.samples
    )


async def test_stream_cache_admission_and_load_metrics_are_exposed(
    tts: TtsServer, endpoint: MetricsEndpoint
) -> None:
    first = await synthesize(tts.stub, text=SHORT)
    again = await synthesize(tts.stub, text=SHORT)
    assert len(first.chunks) > 1
    assert again.summary.cache_hit

    result = await scrape(endpoint.port)
    assert result.types["chorus_tts_time_to_first_audio_seconds"] == "histogram"
    for hit in ("false", "true"):
        assert result.value("chorus_tts_time_to_first_audio_seconds_count", chorus_cache_hit=hit)
        # Buckets in seconds, fine enough for a first chunk from espeak or the cache (no
        # figure is asserted: how fast it came depends on how busy the machine is).
        assert (
            bucket_bounds(result, "chorus_tts_time_to_first_audio_seconds", chorus_cache_hit=hit)
            == SECONDS_BUCKETS
        )
    gaps = result.value("chorus_tts_chunk_gap_seconds_count", chorus_cache_hit="false")
    assert gaps == len(first.chunks) - 1
    assert result.value("chorus_cache_hit_ratio", chorus_cache_namespace="tts") == 0.5
    assert result.value("chorus_cache_requests_total", chorus_cache_result="miss") == 1
    assert result.value("chorus_cache_requests_total", chorus_cache_result="hit_memory") == 1
    assert result.value("chorus_admission_queue_depth") == 0
    assert result.value("chorus_admission_in_flight") == 0
    load_s = result.value(
        "chorus_model_load_duration_seconds",
        rpc_service="chorus.tts.v1.TextToSpeech",
        chorus_model_loaded="true",
    )
    assert load_s is not None
    assert load_s > 0
    assert result.value("target_info", service_name="chorus-test") == 1


async def test_a_stream_in_flight_shows_in_the_admission_gauges(
    tts: TtsServer, endpoint: MetricsEndpoint
) -> None:
    held = tts.stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG), timeout=30)
    await held.read()
    result = await scrape(endpoint.port)
    held.cancel()
    assert result.value("chorus_admission_in_flight") == 1
    assert result.value("chorus_admission_queue_depth") == 0


async def test_stopping_the_endpoint_closes_its_port_and_ends_its_thread(tts: TtsServer) -> None:
    endpoint = start_metrics_endpoint(tts.telemetry.prometheus_registry, "127.0.0.1", 0)
    await scrape(endpoint.port)
    # This endpoint's own thread, not a count of the process's threads: other tests may
    # have threads of their own running, or ending late.
    assert endpoint.thread.is_alive()
    await endpoint.stop()
    assert_refused(endpoint.port)
    assert not endpoint.thread.is_alive()


def test_a_port_in_use_stops_start_up_with_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            start_metrics_endpoint(CollectorRegistry(), "127.0.0.1", port)


async def test_a_service_process_serves_metrics_on_its_metrics_port_until_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = ServiceProcess(
        "services.tts", env={"CHORUS_METRICS_PORT": str(port)}, log_path=tmp_path / "tts.log"
    )
    async with process:
        result = await scrape(port)
        assert result.value("target_info", service_name="chorus-tts") == 1
        assert result.value("chorus_model_load_duration_seconds", chorus_model_loaded="true")
    assert_refused(port)


def test_each_service_has_its_own_default_metrics_port_and_the_environment_sets_it() -> None:
    defaults = [
        settings().metrics_port
        for settings in (OrchestratorSettings, TtsSettings, ProsodySettings, VisionSettings)
    ]
    assert defaults == [9451, 9452, 9453, 9454]
    assert load_settings(TtsSettings, [], {"CHORUS_METRICS_PORT": "9464"}).metrics_port == 9464
    assert load_settings(TtsSettings, ["--metrics-port", "0"], {}).metrics_port == 0


def bucket_bounds(result: Scrape, histogram: str, **labels: str) -> tuple[float, ...]:
    """The finite upper bounds of ``histogram``'s buckets for the series ``labels`` pick."""
    return tuple(
        sorted(
            float(sample.labels["le"])
            for sample in result.samples
            if sample.name == f"{histogram}_bucket"
            and labels.items() <= sample.labels.items()
            and sample.labels["le"] != "+Inf"
        )
    )


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
