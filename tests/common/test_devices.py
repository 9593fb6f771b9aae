"""The device setting, and what torch and ONNX Runtime are asked for by it."""

from __future__ import annotations

import pytest

from services.common.devices import CPU_PROVIDER, CUDA_PROVIDER, onnx_providers, torch_device

WITH_CUDA = [CUDA_PROVIDER, CPU_PROVIDER]
CPU_ONLY = ["AzureExecutionProvider", CPU_PROVIDER]


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("cpu", WITH_CUDA, [CPU_PROVIDER]),
        ("auto", WITH_CUDA, [CUDA_PROVIDER, CPU_PROVIDER]),
        ("auto", CPU_ONLY, [CPU_PROVIDER]),
        ("cuda", WITH_CUDA, [CUDA_PROVIDER, CPU_PROVIDER]),
        ("cuda:1", WITH_CUDA, [(CUDA_PROVIDER, {"device_id": 1}), CPU_PROVIDER]),
    ],
)
def test_providers_follow_the_device_rule(
    device: str, available: list[str], expected: list[object]
) -> None:
    assert onnx_providers(device, available) == expected


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_asked_for_and_absent_fails_naming_the_fix(device: str) -> None:
    with pytest.raises(RuntimeError, match=f"CHORUS_DEVICE={device}.*onnxruntime-gpu"):
        onnx_providers(device, CPU_ONLY)


@pytest.mark.parametrize("device", ["gpu", "cuda:", "CPU", ""])
def test_other_device_settings_are_refused(device: str) -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        onnx_providers(device, WITH_CUDA)


@pytest.mark.parametrize(
    ("device", "cuda_available", "expected"),
    [
        ("cpu", True, "cpu"),
        ("auto", True, "cuda"),
        ("auto", False, "cpu"),
        ("cuda", True, "cuda"),
        ("cuda:1", True, "cuda:1"),
    ],
)
def test_torch_devices_follow_the_same_rule(
    device: str, cuda_available: bool, expected: str
) -> None:
    assert torch_device(device, cuda_available) == expected


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_torch_cuda_asked_for_and_absent_fails(device: str) -> None:
    with pytest.raises(RuntimeError, match=f"CHORUS_DEVICE={device} but torch sees no CUDA"):
        torch_device(device, cuda_available=False)
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        torch_device("gpu", cuda_available=True)
