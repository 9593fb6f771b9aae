"""GPU memory gauges: present only where torch is imported and sees a GPU."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
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


def fake_torch(devices: int) -> types.ModuleType:
    """A stand-in for an imported torch whose CUDA sees ``devices`` GPUs, device ``i``
    holding ``100 * (i + 1)`` bytes in tensors and ten times that reserved."""
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: devices > 0,
        device_count=lambda: devices,
        memory_allocated=lambda index: 100 * (index + 1),
        memory_reserved=lambda index: 1000 * (index + 1),
    )
    return torch


def gauges(torch: types.ModuleType | None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Whether the gauges were registered with ``torch`` as the imported torch (None: not
    imported), and what they read per device.

    ``sys.modules["torch"]`` is set for this test alone: whether an earlier test imported
    the real torch, or the host has a GPU, must not decide what this test checks.
    """
    monkeypatch.setitem(sys.modules, "torch", torch)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        registered = register_gpu_memory_gauges(provider.get_meter("test"))
        return {
            "registered": registered,
            **{
                name: {
                    point.attributes["gpu.device"]: point.value
                    for point in metric_points(reader, name)
                }
                for name in ("chorus.gpu.memory.allocated", "chorus.gpu.memory.reserved")
            },
        }
    finally:
        provider.shutdown()


def test_no_gauges_where_torch_is_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gauges(None, monkeypatch) == {
        "registered": False,
        "chorus.gpu.memory.allocated": {},
        "chorus.gpu.memory.reserved": {},
    }


def test_no_gauges_where_torch_sees_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gauges(fake_torch(devices=0), monkeypatch) == {
        "registered": False,
        "chorus.gpu.memory.allocated": {},
        "chorus.gpu.memory.reserved": {},
    }


def test_one_series_per_gpu_where_torch_has_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gauges(fake_torch(devices=2), monkeypatch) == {
        "registered": True,
        "chorus.gpu.memory.allocated": {0: 100, 1: 200},
        "chorus.gpu.memory.reserved": {0: 1000, 1: 2000},
    }
