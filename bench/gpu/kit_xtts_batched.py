"""GPU kit: XTTS time to first audio, one sentence per copy at a time vs continuous batching.

An XTTS with random weights at XTTS v2's published sizes (built here as shared/gpu-kit's
kit_xtts_real.py built it: 30 GPT layers of 1024, the real vocabulary and speaker latent
shapes, the stop token pinned down so every sentence runs to ``--tokens`` audio tokens)
streams through the service's own pipeline (SpeechStreamer over the EngineScheduler, no
gRPC), as bench.gpu.kit_vits_batched does, at concurrency 1, 4 and 8, for each
``xtts_max_streams`` in one run:

* ``streams1``: Coqui's ``inference_stream``, one sentence on the copy at a time (today);
* ``streams8``: continuous batching, up to 8 sentences decoded in one GPT step.

Each gives TTFA and total latency percentiles, each stream's real-time factor (audio
seconds over the stream's wall seconds; min, p50 and max over the streams), GPU utilisation
during the level (NVML or nvidia-smi, when there is one) and, on CUDA, the peak GPU memory.
The issue's goals: TTFA p95 under 150 ms at c1, and every one of 8 concurrent streams
faster than real time (the min real-time factor at c8 above 1). Before: TTFA p50 462 ms at
c1 and 4,955 at c4 on an H200, requests waiting for the one model.

    python -m bench.gpu.kit_xtts_batched [--out FILE.json]          # on the GPU (~3 min)
    python -m bench.gpu.kit_xtts_batched --cpu [--out FILE.json]    # tiny XTTS, CPU:
                                                                    # the plumbing, quickly

``--model FOLDER`` uses an XTTS folder already built. Prints the JSON, and writes it to
``--out`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.trace import NoOpTracer

from bench.gpu.kit_vision_batching import UtilisationSampler, gpu_description
from bench.gpu.kit_vits_batched import cuda_memory, load_engine
from bench.load import drive
from bench.tts_ttfa import TEXTS, native_spec
from devtools.builders.tiny_xtts import build_xtts
from services.tts.engine_scheduler import EngineScheduler
from services.tts.engines.coqui import CoquiEngine
from services.tts.synthesis import SpeechStreamer

GOAL_TTFA_P95_MS = 150.0
GOAL_STREAMS = 8

V2_LANGUAGES = [
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu",
    "ko", "ja", "hi",
]  # fmt: skip
V2_TEXT_TOKENS = 6681


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny XTTS on the CPU, few requests")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--model", type=Path, help="an XTTS folder to use instead of building")
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 8], help="max streams")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--text", choices=list(TEXTS), default="short")
    parser.add_argument("--tokens", type=int, default=100, help="audio tokens a sentence (GPU)")
    parser.add_argument("--half", choices=["on", "off"], default="on")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="per request")
    return parser.parse_args(argv)


def build_xtts_v2_size(folder: Path, tokens: int, seed: int = 0) -> dict[str, object]:
    """An XTTS at v2's published sizes, random weights, saved as a Coqui folder (as
    shared/gpu-kit/kit_xtts_real.py does; only ``gpt_max_audio_tokens`` differs from the
    release, so that every sentence is ``tokens`` audio tokens). Returns what was built."""
    import torch
    from tokenizers import Tokenizer, models
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", *(f"[{lang}]" for lang in V2_LANGUAGES)]
    entries = specials + list("abcdefghijklmnopqrstuvwxyz.,!?'-")
    # Never-produced fillers give the text embedding and head their real shapes.
    entries += [f"<fill{index}>" for index in range(V2_TEXT_TOKENS - len(entries))]
    bpe = Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(entries)}, merges=[], unk_token="[UNK]")
    )
    bpe.add_special_tokens(specials)
    bpe.save(str(folder / "vocab.json"))
    args = XttsArgs(
        gpt_layers=30,
        gpt_n_model_channels=1024,
        gpt_n_heads=16,
        gpt_max_text_tokens=402,
        gpt_max_prompt_tokens=70,
        gpt_max_audio_tokens=tokens + 3,
        gpt_num_audio_tokens=1026,
        gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025,
        gpt_code_stride_len=1024,
        gpt_use_perceiver_resampler=True,
        input_sample_rate=22050,
        output_sample_rate=24000,
        output_hop_length=256,
        decoder_input_dim=1024,
        d_vector_dim=512,
        cond_d_vector_in_each_upsampling_layer=True,
        duration_const=102400,
    )
    config = XttsConfig(
        model_args=args,
        languages=list(V2_LANGUAGES),
        temperature=0.75,
        repetition_penalty=5.0,
        top_k=50,
        top_p=0.85,
    )
    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(folder / "vocab.json")
    model.init_models()
    with torch.no_grad():
        model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
    state = model.state_dict()
    torch.save({"model": state}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    voices = {
        name: {
            "gpt_cond_latent": torch.randn(1, 32, args.gpt_n_model_channels),
            "speaker_embedding": torch.randn(1, args.d_vector_dim, 1),
        }
        for name in ("Ana Florence", "Bob Stone")
    }
    torch.save(voices, folder / "speakers_xtts.pth")
    return {
        "size": "xtts-v2 (published sizes, random weights)",
        "parameters": sum(t.numel() for t in state.values() if t.is_floating_point()),
        "tokens_per_sentence": tokens,
        "build_s": round(time.perf_counter() - started, 1),
    }


async def measure(
    engine: CoquiEngine,
    workers: int,
    concurrency: int,
    requests: int,
    text: str,
    timeout_s: float,
) -> dict[str, object]:
    """``requests`` streams of ``text`` over ``concurrency`` clients, in-process; TTFA and
    latency as bench.load summarises them, and each stream's real-time factor."""
    scheduler = EngineScheduler(workers)
    streamer = SpeechStreamer(engine, scheduler, NoOpTracer())
    spec = native_spec(engine, text)
    bytes_per_second = 2 * engine.sample_rate
    factors: list[float] = []
    audio: list[float] = []

    async def call() -> float | None:
        started, first, size = time.perf_counter(), None, 0
        async with asyncio.timeout(timeout_s):
            async for chunk in streamer.stream(spec):
                if first is None:
                    first = time.perf_counter() - started
                size += len(chunk)
        seconds = size / bytes_per_second
        audio.append(seconds)
        factors.append(seconds / (time.perf_counter() - started))
        return first

    try:
        figures = (await drive(call, concurrency, requests)).summary()
    finally:
        scheduler.shutdown()
        await asyncio.to_thread(scheduler.join, 10.0)
    if factors:
        figures["audio_s_per_stream"] = round(statistics.median(audio), 3)
        figures["real_time_factor"] = {
            "min": round(min(factors), 3),
            "p50": round(statistics.median(factors), 3),
            "max": round(max(factors), 3),
            "streams": len(factors),
        }
        figures["all_faster_than_real_time"] = min(factors) > 1.0
    return figures


def run_config(
    max_streams: int,
    folder: Path,
    device: str,
    args: argparse.Namespace,
    sampler: UtilisationSampler,
) -> dict[str, object]:
    """Measure every concurrency with ``xtts_max_streams`` set to ``max_streams``."""
    result: dict[str, object] = {"xtts_max_streams": max_streams}
    engine = load_engine(
        lambda half: CoquiEngine(
            str(folder), device=device, half_precision=half, xtts_max_streams=max_streams
        ),
        args.half == "on",
        device,
        result,
    )
    # As the settings advise: engine threads to match the streams a copy decodes at once.
    workers = max_streams
    result["engine_workers"] = workers
    try:
        for concurrency in args.concurrency:
            requests = concurrency * args.requests_per_client
            with sampler.watch() as utilisation:
                figures = asyncio.run(
                    measure(
                        engine, workers, concurrency, requests, TEXTS[args.text], args.timeout_s
                    )
                )
            figures.update(utilisation)
            result[f"c{concurrency}"] = figures
            print(
                f"[xtts streams{max_streams}] c{concurrency}: {json.dumps(figures)}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        engine.close()
    result.update(cuda_memory())
    return result


def goals(configs: dict[str, dict[str, Any]]) -> dict[str, object]:
    """The issue's goals, for each config: TTFA p95 at c1, and every stream at c8 faster
    than real time."""
    checked: dict[str, object] = {}
    for name, figures in configs.items():
        c1 = figures.get("c1", {})
        ttfa = c1.get("ttfa_ms", {}).get("p95") if isinstance(c1, dict) else None
        level = figures.get(f"c{GOAL_STREAMS}", {})
        rtf = level.get("real_time_factor", {}).get("min") if isinstance(level, dict) else None
        checked[name] = {
            "c1_ttfa_p95_ms": ttfa,
            "c1_ttfa_p95_met": isinstance(ttfa, int | float) and ttfa < GOAL_TTFA_P95_MS,
            f"c{GOAL_STREAMS}_min_real_time_factor": rtf,
            f"c{GOAL_STREAMS}_all_faster_than_real_time": isinstance(rtf, int | float)
            and rtf > 1.0,
        }
    return checked


def main(argv: Sequence[str] | None = None) -> None:
    """Run every config, print the JSON (and write it to ``--out``)."""
    args = parse_args(argv)
    import torch

    device = "cpu" if args.cpu else "cuda"
    described = gpu_description()
    sampler = UtilisationSampler()
    report: dict[str, Any] = {
        "benchmark": "kit_xtts_batched",
        "device": described["gpu"] if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "text": args.text,
        "requests_per_client": args.requests_per_client,
        "utilisation_source": None if sampler.source is None else "nvml or nvidia-smi",
        "goals_wanted": {
            "c1_ttfa_p95_ms_below": GOAL_TTFA_P95_MS,
            f"c{GOAL_STREAMS}_min_real_time_factor_above": 1.0,
        },
        "configs": {},
    }
    if args.cpu:
        report["note"] = (
            "tiny XTTS on the CPU (one GPT layer of 32; HiFi-GAN at its real size dominates): "
            "the plumbing, not the speed"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-xtts-") as scratch:
        folder = args.model
        if folder is not None:
            report["model"] = {"size": "given", "folder": str(folder)}
        elif args.cpu:
            folder = build_xtts(Path(scratch) / "xtts-tiny")
            report["model"] = {"size": "tiny (devtools.builders.tiny_xtts)"}
        else:
            folder = Path(scratch) / "xtts-v2"
            report["model"] = build_xtts_v2_size(folder, args.tokens)
        print(f"[xtts] model: {json.dumps(report['model'])}", file=sys.stderr, flush=True)
        for max_streams in args.streams:
            name = f"streams{max_streams}"
            config_started = time.perf_counter()
            try:
                figures = run_config(max_streams, folder, device, args, sampler)
            except Exception as error:  # one config failing leaves the others
                figures = {"error": f"{type(error).__name__}: {error}"}
            figures["wall_s"] = round(time.perf_counter() - config_started, 1)
            report["configs"][name] = figures
    report["goals"] = goals(report["configs"])
    report["wall_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
