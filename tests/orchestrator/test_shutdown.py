"""The suite, each service in its own process, drains and exits cleanly on SIGTERM: the
orchestrator's dependency watches end with it, whatever gRPC's channels are doing."""

from __future__ import annotations

from pathlib import Path

import grpc
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc

from devtools.launcher import free_port
from devtools.suite import SERVICES, running_suite, suite_processes


async def test_every_service_exits_cleanly_after_serving(tmp_path: Path) -> None:
    processes = suite_processes(
        {name: free_port() for name in SERVICES},
        "",
        tmp_path,
        {"CHORUS_WORKERS": "1", "CHORUS_ENGINE": "espeak"},
    )
    async with (
        running_suite(processes, healthy_within_s=90),
        grpc.aio.insecure_channel(processes["orchestrator"].address) as channel,
    ):
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        responses = [r async for r in stub.Speak(pb.SpeakRequest(text="Goodbye."), timeout=30)]
        assert responses[-1].HasField("summary")
    # running_suite sent SIGTERM to all at once and waited; a server that outlives its
    # grace period is killed (-9) instead.
    assert {name: p.exit_status for name, p in processes.items()} == dict.fromkeys(SERVICES, 0)
