"""GPU memory gauges: present only where torch is imported and sees a GPU."""

from __future__ import annotations

import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.common.gpu_metrics import (
    DeviceMemory,
    memory_observations,
    register_gpu_memory_gauges,
)
from tests.support.metrics import metric_points


def test_observations_carry_one_figure_per_device_labelled_with_the_device() -> None:
    devices = [DeviceMemory(0, allocated=100, reserved=512), DeviceMemory(1, 0, 0)]
    reserved = memory_observations(devices, lambda memory: memory.reserved)
    assert [(o.value, o.attributes) for o in reserved] == [
        (512, {"gpu.device": 0}),
        (0, {"gpu.device": 1}),
    ]


def test_gauges_exist_exactly_when_torch_is_imported_and_has_cuda() -> None:
    # Honest in every environment: this test neither imports torch nor fakes a GPU, so on
    # a CPU host (or with torch not yet imported) it checks that nothing is registered.
    torch = sys.modules.get("torch")
    gpus = set(range(torch.cuda.device_count())) if torch and torch.cuda.is_available() else set()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    assert register_gpu_memory_gauges(provider.get_meter("test")) == bool(gpus)

    for name in ("chorus.gpu.memory.allocated", "chorus.gpu.memory.reserved"):
        devices = {point.attributes["gpu.device"] for point in metric_points(reader, name)}
        assert devices == gpus
    provider.shutdown()
