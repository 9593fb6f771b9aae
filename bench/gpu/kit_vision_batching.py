"""GPU kit: vision batching on the H200, one prepared run (``bench.vision_batch_curve``).

YOLO11x at its real size (random weights) on CUDA in half precision: the cost of one
model call at batch 1 to 32, then the vision server at concurrency 1, 8 and 32 with the
batcher at its old settings and at the new CUDA defaults, with the GPU's name, and its
utilisation sampled during each level (NVML through pynvml, else ``nvidia-smi``, else
none). The goal it checks: over 300 images/s at concurrency 32 with the new defaults.

    python -m bench.gpu.kit_vision_batching [--out FILE.json]       # on the GPU (about 2 min)
    python -m bench.gpu.kit_vision_batching --cpu [--out FILE.json] # the same plumbing on
                                                                    # the CPU, tiny and quick

Runs beside the project's code with its generated protobuf code on PYTHONPATH (as
shared/gpu-kit's run.sh sets it); prints the JSON, and writes it to ``--out`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import vision_batch_curve
from bench.report import print_report

GOAL_IMAGES_PER_S = 300
GOAL_CONCURRENCY = 32
SAMPLE_S = 0.1

GPU_ARGS = [
    "--device", "cuda", "--scale", "x", "--image-size", "640",
    "--batches", "1", "2", "4", "8", "16", "32", "--repeats", "5",
    "--levels", "1", "8", "32", "--requests", "20", "80", "640",
    "--configs", "old", "new",
]  # fmt: skip
"""About two minutes on an H200: the curve in seconds, each server about 30 s with its
start-up."""

CPU_ARGS = [
    "--device", "cpu", "--scale", "n", "--image-size", "320",
    "--batches", "1", "2", "4", "--repeats", "1",
    "--levels", "1", "8", "32", "--requests", "2", "8", "32",
    "--configs", "old", "new",
]  # fmt: skip
"""The same steps on the CPU with a small model and few requests: proves the plumbing."""


class UtilisationSampler:
    """GPU 0's utilisation and memory, sampled every ``SAMPLE_S`` while a block runs."""

    def __init__(self) -> None:
        self.source = _nvml_source() or _smi_source()

    @contextlib.contextmanager
    def watch(self) -> Iterator[dict[str, object]]:
        """Sample during the block; the dictionary gets the figures when it ends."""
        figures: dict[str, object] = {}
        if self.source is None:
            yield figures
            return
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        read = self.source

        def sample() -> None:
            while not stop.wait(SAMPLE_S):
                reading = read()
                if reading is not None:
                    samples.append(reading)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield figures
        finally:
            stop.set()
            thread.join()
            if samples:
                busy = [s[0] for s in samples]
                figures["gpu_utilisation_pct"] = {
                    "mean": round(sum(busy) / len(busy), 1),
                    "peak": max(busy),
                    "samples": len(busy),
                }
                figures["gpu_memory_used_mib_peak"] = max(s[1] for s in samples)


def _nvml_source() -> Any:
    """A reader of (utilisation %, memory MiB) through NVML, or None without pynvml."""
    try:
        pynvml: Any = importlib.import_module("pynvml")
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no pynvml, no driver: the next source is tried
        return None

    def read() -> tuple[float, float]:
        rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return float(rates.gpu), memory.used / 2**20

    return read


def _smi_source() -> Any:
    """A reader of (utilisation %, memory MiB) through ``nvidia-smi``, or None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = [smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def read() -> tuple[float, float] | None:
        try:
            line = subprocess.run(
                [*query, "-i", "0"], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
            busy, used = (float(part) for part in line.split(","))
        except (subprocess.SubprocessError, ValueError):
            return None
        return busy, used

    return read


def gpu_description() -> dict[str, object]:
    """The GPU torch sees, and the software around it."""
    import torch

    described: dict[str, object] = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "nvidia_smi": shutil.which("nvidia-smi") is not None,
    }
    try:
        described["torchvision"] = importlib.import_module("torchvision").__version__
    except ImportError:
        described["torchvision"] = None
    return described


def goal(results: dict[str, object]) -> dict[str, object]:
    """Whether the new defaults served over GOAL_IMAGES_PER_S at GOAL_CONCURRENCY."""
    level = f"c{GOAL_CONCURRENCY}"
    new = results.get("server_new")
    reached = new.get(level) if isinstance(new, dict) else None
    rate = reached.get("images_per_s") if isinstance(reached, dict) else None
    return {
        "images_per_s": rate,
        "wanted": GOAL_IMAGES_PER_S,
        "met": isinstance(rate, int | float) and rate > GOAL_IMAGES_PER_S,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the kit; print its JSON (and write it to ``--out``)."""
    kit = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kit.add_argument("--cpu", action="store_true", help="run on the CPU, small and quick")
    kit.add_argument("--out", type=Path, help="also write the JSON here")
    own, rest = kit.parse_known_args(argv)
    # The prepared arguments, then anything given on the command line on top.
    args = vision_batch_curve.parser().parse_args([*(CPU_ARGS if own.cpu else GPU_ARGS), *rest])
    sampler = UtilisationSampler()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-vision-batching-") as folder:
        results = asyncio.run(vision_batch_curve.run(args, folder, sampler.watch))
    document = {
        "kit": {
            "mode": "cpu" if own.cpu else "gpu",
            "arguments": vars(args),
            **gpu_description(),
            "utilisation_source": None if sampler.source is None else "nvml or nvidia-smi",
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "goal": goal(results),
        **results,
    }
    print_report("vision_batching_kit", document)
    if own.out is not None:
        with own.out.open("w") as stream, contextlib.redirect_stdout(stream):
            print_report("vision_batching_kit", document)
        print(f"[kit] wrote {own.out}: {json.dumps(document['goal'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
