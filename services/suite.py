"""``python -m services.suite``: run every Chorus service locally, each in its own process,
with a local Redis as their shared cache.

Starts Redis and the services on their default ports, waits until each reports SERVING,
prints where they listen, and on Ctrl-C (or SIGTERM) stops them all gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from services.common.launcher import ServiceProcess
from services.common.local_redis import RedisServer

SERVICES = {
    "tts": ("services.tts", 50052),
    "prosody": ("services.prosody", 50053),
    "vision": ("services.vision", 50054),
    "orchestrator": ("services.orchestrator", 50051),
}
STATE_DIR = Path(".state")
LOG_DIR = STATE_DIR / "logs"


def suite_processes(
    ports: Mapping[str, int], redis_url: str, log_dir: Path, extra_env: Mapping[str, str]
) -> dict[str, ServiceProcess]:
    """The suite's services on ``ports``, wired to each other and to ``redis_url``."""
    env = {
        "CHORUS_REDIS_URL": redis_url,
        "CHORUS_TTS_ADDRESS": f"127.0.0.1:{ports['tts']}",
        "CHORUS_PROSODY_ADDRESS": f"127.0.0.1:{ports['prosody']}",
        "CHORUS_VISION_ADDRESS": f"127.0.0.1:{ports['vision']}",
        **extra_env,
    }
    return {
        name: ServiceProcess(module, port=ports[name], env=env, log_path=log_dir / f"{name}.log")
        for name, (module, _) in SERVICES.items()
    }


async def run_suite() -> int:
    """Start Redis and the services, wait for a signal, stop them; returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    redis = RedisServer(STATE_DIR)
    redis.start()
    processes = suite_processes(
        {name: port for name, (_, port) in SERVICES.items()}, redis.url, LOG_DIR, {}
    )
    try:
        for process in processes.values():
            process.start()
        await asyncio.gather(*(process.wait_healthy() for process in processes.values()))
        print(f"{'redis':<13} {redis.url}", flush=True)
        for name, process in processes.items():
            print(f"{name:<13} {process.address:<18} log {LOG_DIR / f'{name}.log'}", flush=True)
        print("all services SERVING; Ctrl-C stops them", flush=True)
        await stop.wait()
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(f"suite failed to start: {error}", file=sys.stderr)
        return 1
    finally:
        for process in processes.values():
            process.terminate()
        for name, process in processes.items():
            status = await asyncio.to_thread(process.wait)
            print(f"{name} stopped ({status})", flush=True)
        redis.stop()


def main() -> int:
    """Run the suite in the foreground; returns the process exit status."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_suite())


if __name__ == "__main__":
    sys.exit(main())
