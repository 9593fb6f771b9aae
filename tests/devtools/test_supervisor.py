"""The suite's supervisor restarts a service that died, and gives up on a crash loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devtools.launcher import ServiceProcess
from devtools.supervisor import RestartPolicy, Supervisor
from tests.support.waiting import wait_until

# The espeak engine needs no weights: the quickest real service to start and restart.
ESPEAK = {"CHORUS_ENGINE": "espeak"}
POLICY = RestartPolicy(max_restarts=2, window_s=3600.0, check_every_s=0.05)


async def test_a_killed_service_is_reported_and_restarted(tmp_path: Path) -> None:
    lines: list[str] = []
    process = ServiceProcess("services.tts", env=ESPEAK, log_path=tmp_path / "tts.log")
    supervisor = Supervisor({"tts": process}, lines.append, POLICY)
    async with process:
        first_pid = process.pid
        watching = asyncio.create_task(supervisor.watch())
        try:
            process.kill()
            await wait_until(lambda: "tts restarted and SERVING again" in lines, "the restart")
            assert process.exit_status is None
            assert process.pid != first_pid
            assert supervisor.restarts("tts") == 1
            assert lines[0].startswith("tts exited with status -9; restarting it")
        finally:
            watching.cancel()


async def test_a_service_that_keeps_dying_is_left_down_and_reported(tmp_path: Path) -> None:
    lines: list[str] = []
    # An engine that does not exist stops the server at start-up, every time.
    process = ServiceProcess(
        "services.tts", env={"CHORUS_ENGINE": "no-such-engine"}, log_path=tmp_path / "tts.log"
    )
    supervisor = Supervisor({"tts": process}, lines.append, POLICY)
    process.start()
    watching = asyncio.create_task(supervisor.watch())
    try:
        await wait_until(lambda: supervisor.given_up() == {"tts"}, "the supervisor giving up")
        assert supervisor.restarts("tts") == POLICY.max_restarts
        assert "leaving it down" in lines[-1]
    finally:
        watching.cancel()
        process.stop()
