"""The gateway as `make run` starts it: ``python -m services.gateway`` in its own process
(devtools.suite.gateway_processes) in front of the four services in theirs, exporting
its spans to an OTLP receiver standing in for the collector.

One HTTP request is one trace through every process; the gateway serves Prometheus
metrics like the other services; SIGTERM drains it and it exits cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from devtools.launcher import ServiceProcess, free_port
from devtools.suite import SERVICES, gateway_processes, running_suite, suite_processes
from tests.support.otlp_collector import OtlpCollector, ReceivedSpan
from tests.support.prometheus import scrape
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Processes:
    gateway: ServiceProcess
    metrics_port: int
    collector: OtlpCollector


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def processes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Processes]:
    folder = tmp_path_factory.mktemp("suite")
    collector = OtlpCollector()
    await collector.start()
    telemetry = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    suite = suite_processes(
        {name: free_port() for name in SERVICES},
        "",
        folder,
        {**telemetry, "CHORUS_WORKERS": "1", "CHORUS_ENGINE": "espeak"},
    )
    metrics_port = free_port()
    try:
        async with running_suite(suite, healthy_within_s=90):
            gateway = gateway_processes(
                suite["orchestrator"].address, folder, telemetry, metrics_port=metrics_port
            )
            async with running_suite(gateway, healthy_within_s=60):
                yield Processes(gateway["gateway"], metrics_port, collector)
    finally:
        await collector.stop()


def gateway_url(processes: Processes) -> str:
    return f"http://{processes.gateway.address}"


def ancestors(spans: list[ReceivedSpan], span: ReceivedSpan) -> list[ReceivedSpan]:
    """The spans above ``span``, nearest first."""
    by_id = {s.span_id: s for s in spans}
    found = []
    while (parent := by_id.get(span.parent_span_id)) is not None:
        found.append(parent)
        span = parent
    return found


async def test_one_request_is_one_trace_through_every_process(processes: Processes) -> None:
    request = {
        "model": "tts-1",
        "voice": "alloy",
        "input": "One trace, from the browser to the voice.",
        "response_format": "wav",
        "preset": "calm",
    }
    async with httpx.AsyncClient(base_url=gateway_url(processes), timeout=60) as http:
        response = await http.post("/v1/audio/speech", json=request)
    assert response.status_code == 200
    trace_id = response.headers["x-trace-id"]
    wanted = {"chorus-gateway", "chorus-orchestrator", "chorus-tts", "chorus-prosody"}

    def missing() -> list[str]:
        spans = processes.collector.in_trace(trace_id)
        gaps = [f"no spans from {name}" for name in wanted - {s.service for s in spans}]
        synthesize = [s for s in spans if s.name == "tts.synthesize"]
        if not synthesize:
            return [*gaps, "no tts.synthesize"]
        # tts's work hangs, through the orchestrator, from the gateway's HTTP span.
        above = ancestors(spans, synthesize[0])
        if not above or above[-1].name != "POST /v1/audio/speech":
            gaps.append(f"tts.synthesize not under the HTTP span: {[s.name for s in above]}")
        elif above[-1].service != "chorus-gateway":
            gaps.append("the root is not the gateway's")
        return gaps

    # Each process exports in batches, so the trace arrives piece by piece.
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: not missing(), "the whole trace")
    assert missing() == []


async def test_metrics_are_served_for_prometheus(processes: Processes) -> None:
    async with httpx.AsyncClient(base_url=gateway_url(processes), timeout=60) as http:
        response = await http.post(
            "/v1/audio/speech",
            json={
                "model": "tts-1",
                "voice": "alloy",
                "input": "Counted.",
                "response_format": "pcm",
            },
        )
    assert response.status_code == 200
    scraped = await scrape(processes.metrics_port)
    assert scraped.types["chorus_gateway_time_to_first_audio_seconds"] == "histogram"
    count = scraped.value(
        "chorus_gateway_time_to_first_audio_seconds_count", http_route="/v1/audio/speech"
    )
    assert count is not None
    assert count >= 1
    assert "http_server_active_requests" in scraped.types


async def test_sigterm_drains_and_exits_cleanly(processes: Processes) -> None:
    # Last in this module: it stops the gateway.
    processes.gateway.terminate()
    status = await asyncio.to_thread(processes.gateway.wait)
    assert status == 0
