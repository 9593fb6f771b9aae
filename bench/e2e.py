"""End-to-end benchmark: the whole suite in separate processes, driven through the
orchestrator, printed as JSON.

- Speak TTFA and total, plain and with the "celebration" preset, at concurrency 1, 5, 20;
- ComposeMessage latency at concurrency 1, 5, 20;
- the orchestrator's overhead: the same work called on the services directly from here
  (tts for Speak's TTFA; tts, prosody and vision in parallel for ComposeMessage);
- SynthesizeBatch of 100 segments.

Caches are off, so every request does the work.

    python -m bench.e2e [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from chorus.audio.v1 import audio_pb2
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from chorus.prosody.v1 import prosody_pb2, prosody_pb2_grpc
from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from chorus.vision.v1 import vision_pb2, vision_pb2_grpc
from PIL import Image as PilImage
from skimage import data

from bench.load import Call, drive
from bench.report import print_report
from devtools.launcher import ServiceProcess, free_port
from devtools.suite import SERVICES, running_suite, suite_processes

TEXT = "Congratulations on the new job! We are all so proud of you."
LEVELS = (1, 5, 20)


async def measure(call: Call, concurrency: int, requests: int) -> dict[str, object]:
    """``requests`` calls over ``concurrency`` clients, summarised."""
    return (await drive(call, concurrency, requests)).summary()


def photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def suite(folder: Path) -> dict[str, ServiceProcess]:
    """The suite on free ports, caches off (started by devtools.suite.running_suite)."""
    return suite_processes(
        {name: free_port() for name in SERVICES},
        "",
        folder,
        # espeak, as in the runs before piper became the default (bench.tts_ttfa compares
        # the two), so that the figures stay comparable.
        {"CHORUS_CACHE_MAX_BYTES": "0", "CHORUS_LOG_LEVEL": "WARNING", "CHORUS_ENGINE": "espeak"},
    )


async def run(scale: float) -> dict[str, object]:
    """Every scenario; returns the JSON document's figures."""
    photo = photo_jpeg()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        async with running_suite(suite(Path(folder))) as processes:
            channels = {name: grpc.aio.insecure_channel(p.address) for name, p in processes.items()}
            orchestrator = orchestrator_pb2_grpc.OrchestratorStub(channels["orchestrator"])
            tts = tts_pb2_grpc.TextToSpeechStub(channels["tts"])
            prosody = prosody_pb2_grpc.ProsodyStub(channels["prosody"])
            vision = vision_pb2_grpc.VisionStub(channels["vision"])

            def speak(preset: str) -> Callable[[], Awaitable[float | None]]:
                async def call() -> float | None:
                    started, first = time.perf_counter(), None
                    async for response in orchestrator.Speak(
                        pb.SpeakRequest(text=TEXT, preset=preset), timeout=120
                    ):
                        if first is None and response.HasField("audio"):
                            first = time.perf_counter() - started
                    return first

                return call

            async def tts_direct() -> float | None:
                started, first = time.perf_counter(), None
                async for response in tts.Synthesize(
                    tts_pb2.SynthesizeRequest(
                        text=TEXT, encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE
                    ),
                    timeout=120,
                ):
                    if first is None and response.HasField("chunk"):
                        first = time.perf_counter() - started
                return first

            async def compose() -> float | None:
                async for _ in orchestrator.ComposeMessage(
                    pb.ComposeMessageRequest(text=TEXT, preset="calm", photo=photo), timeout=120
                ):
                    pass
                return None

            async def compose_direct() -> float | None:
                async def speech() -> None:
                    pcm = b"".join(
                        [
                            r.chunk.audio
                            async for r in tts.Synthesize(
                                tts_pb2.SynthesizeRequest(text=TEXT), timeout=120
                            )
                            if r.HasField("chunk")
                        ]
                    )
                    await prosody.Adjust(
                        prosody_pb2.AdjustRequest(
                            audio=prosody_pb2.Audio(
                                raw=prosody_pb2.RawAudio(
                                    pcm=pcm, format=audio_pb2.AudioFormat(sample_rate_hz=22050)
                                )
                            ),
                            preset="calm",
                        ),
                        timeout=120,
                    )

                await asyncio.gather(
                    speech(),
                    vision.Portrait(vision_pb2.PortraitRequest(image=photo), timeout=120),
                )
                return None

            def count(base: int, level: int) -> int:
                return max(level, int(base * scale))

            await measure(speak(""), 1, 3)  # warm every path once
            await measure(compose, 1, 2)
            results["speak"] = {
                f"c{level}": await measure(speak(""), level, count(40, level)) for level in LEVELS
            }
            results["speak_celebration"] = {
                f"c{level}": await measure(speak("celebration"), level, count(40, level))
                for level in LEVELS
            }
            results["compose_message"] = {
                f"c{level}": await measure(compose, level, count(10, level)) for level in LEVELS
            }
            direct_speak = await measure(tts_direct, 1, count(40, 1))
            direct_compose = await measure(compose_direct, 1, count(10, 1))
            results["direct_c1"] = {"tts_ttfa": direct_speak, "compose_parts": direct_compose}
            results["orchestrator_over_direct_c1_p50"] = {
                "speak_ttfa": _ratio(results["speak"], "c1", "ttfa_ms", direct_speak),
                "compose_total": _ratio(
                    results["compose_message"], "c1", "latency_ms", direct_compose
                ),
            }

            segments = [f"Segment number {i} of the dubbing job, line {i}." for i in range(100)]
            started = time.perf_counter()
            errors = 0
            async for response in orchestrator.SynthesizeBatch(
                pb.SynthesizeBatchRequest(segments=segments), timeout=300
            ):
                errors += bool(response.error)
            results["synthesize_batch_100"] = {
                "seconds": round(time.perf_counter() - started, 3),
                "errors": errors,
                "goal_seconds": 15,
            }
            for channel in channels.values():
                await channel.close()
    return results


def _ratio(figures: object, level: str, metric: str, direct: dict[str, object]) -> float:
    assert isinstance(figures, dict)
    through = figures[level][metric]["p50"]
    baseline = direct[metric]
    assert isinstance(baseline, dict)
    return round(float(through) / float(baseline["p50"]), 2)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies request counts")
    args = parser.parse_args(argv)
    print_report("e2e", {"text_chars": len(TEXT), **asyncio.run(run(args.scale))})


if __name__ == "__main__":
    main()
