"""The device setting (``CHORUS_DEVICE``: auto, cpu, cuda, cuda:N), as torch and ONNX Runtime
read it.

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


def torch_device(device: str, cuda_available: bool) -> str:
    """The torch device for ``device``: ``cpu``, ``cuda`` or ``cuda:N``; ``cuda_available``
    is what ``torch.cuda.is_available()`` says. RuntimeError when CUDA is asked for and
    torch sees none."""
    check_device_setting(device)
    if device == "cpu":
        return "cpu"
    if cuda_available:
        return "cuda" if device == "auto" else device
    if device == "auto":
        return "cpu"
    raise RuntimeError(f"CHORUS_DEVICE={device} but torch sees no CUDA GPU")


def torch_cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA GPU (False without torch: the engines
    that run without it never use the GPU)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
