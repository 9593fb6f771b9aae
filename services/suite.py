"""``python -m services.suite``: run every Chorus service locally, each in its own process.

Starts the services on their default ports, waits until each reports SERVING, prints
where they listen, and on Ctrl-C (or SIGTERM) stops them all gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from services.common.launcher import ServiceProcess

SERVICES = {
    "tts": ("services.tts", 50052),
    "prosody": ("services.prosody", 50053),
    "vision": ("services.vision", 50054),
}
LOG_DIR = Path(".state/logs")


async def run_suite() -> int:
    """Start the services, wait for a signal, stop them; returns the exit status."""
    processes = {
        name: ServiceProcess(module, port=port, log_path=LOG_DIR / f"{name}.log")
        for name, (module, port) in SERVICES.items()
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        for process in processes.values():
            process.start()
        await asyncio.gather(*(process.wait_healthy() for process in processes.values()))
        for name, process in processes.items():
            print(f"{name:<8} {process.address:<18} log {LOG_DIR / f'{name}.log'}", flush=True)
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


def main() -> int:
    """Run the suite in the foreground; returns the process exit status."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_suite())


if __name__ == "__main__":
    sys.exit(main())
