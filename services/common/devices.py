"""The device setting (``CHORUS_DEVICE``: auto, cpu, cuda, cuda:N) and ONNX Runtime's reading of it.

One rule for every engine: ``cpu`` is the CPU; ``auto`` is the GPU when the runtime can use
one, else the CPU; ``cuda`` or ``cuda:N`` asked for and not there fails loading, so a GPU
deployment never quietly runs on the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_DEVICE_SETTING = re.compile(r"auto|cpu|cuda(:\d+)?")

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def check_device_setting(device: str) -> str:
    """``device`` itself when it is auto, cpu, cuda or cuda:N; ValueError otherwise."""
    if not _DEVICE_SETTING.fullmatch(device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return device


def onnx_providers(device: str, available: Sequence[str]) -> list[Any]:
    """ONNX Runtime's execution providers for ``device``, best first, as
    ``InferenceSession(providers=...)`` takes them; ``available`` is what
    ``onnxruntime.get_available_providers()`` lists.

    ``cuda:N`` picks GPU N. RuntimeError when CUDA is asked for and this ONNX Runtime has
    no CUDA provider (the CPU-only ``onnxruntime`` wheel).
    """
    check_device_setting(device)
    if device == "cpu":
        return [CPU_PROVIDER]
    if CUDA_PROVIDER in available:
        _, _, index = device.partition(":")
        cuda = (CUDA_PROVIDER, {"device_id": int(index)}) if index else CUDA_PROVIDER
        return [cuda, CPU_PROVIDER]
    if device == "auto":
        return [CPU_PROVIDER]
    raise RuntimeError(
        f"CHORUS_DEVICE={device} but ONNX Runtime offers no {CUDA_PROVIDER} "
        f"(available: {', '.join(available)}); install onnxruntime-gpu (the gpu extra)"
    )
