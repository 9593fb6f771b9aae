"""GPU memory gauges, for services whose models run on CUDA through torch.

Registered only where torch is already imported (by a model that uses it) and sees a GPU:
a service without torch never pays for importing it, and a CPU-only host shows no empty
series.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, Observation


@dataclass(frozen=True)
class DeviceMemory:
    """What torch's caching allocator holds on one GPU, in bytes."""

    device: int
    allocated: int
    """Bytes in live tensors."""
    reserved: int
    """Bytes the allocator has taken from the driver (allocated plus its cache)."""


def memory_observations(
    devices: Iterable[DeviceMemory], read: Callable[[DeviceMemory], int]
) -> list[Observation]:
    """One observation per device of the figure ``read`` picks, labelled with the device."""
    return [Observation(read(memory), {"gpu.device": memory.device}) for memory in devices]


def register_gpu_memory_gauges(meter: Meter) -> bool:
    """Add ``chorus.gpu.memory.allocated`` and ``.reserved`` when torch has CUDA.

    Call after the models are loaded, since that is when a service imports torch. Returns
    whether the gauges were registered.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False

    def read_devices() -> Sequence[DeviceMemory]:
        # Called at every collection, a scrape's on the endpoint's thread: the allocator's
        # counters may be read from any thread, and read 0 on a device this process never
        # used (reading them creates no CUDA context).
        return [
            DeviceMemory(
                index, torch.cuda.memory_allocated(index), torch.cuda.memory_reserved(index)
            )
            for index in range(torch.cuda.device_count())
        ]

    def gauge(
        read: Callable[[DeviceMemory], int],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda _options: memory_observations(read_devices(), read)

    meter.create_observable_gauge(
        "chorus.gpu.memory.allocated",
        callbacks=[gauge(lambda memory: memory.allocated)],
        unit="By",
        description="GPU memory in live tensors, per device",
    )
    meter.create_observable_gauge(
        "chorus.gpu.memory.reserved",
        callbacks=[gauge(lambda memory: memory.reserved)],
        unit="By",
        description="GPU memory held by torch's caching allocator, per device",
    )
    return True
