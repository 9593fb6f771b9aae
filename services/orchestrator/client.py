"""Command-line client for the orchestrator's RPCs.

    python -m services.orchestrator.client speak "Congratulations!" --preset celebration \\
        --speaking-rate 1.2 --out msg.wav
    python -m services.orchestrator.client compose --text "See you soon" --preset calm \\
        --photo me.jpg --out-dir out/
    python -m services.orchestrator.client batch --file segments.txt --out-dir out/
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc

from services.common.pcm import SampleFormat, decode
from services.common.wav import write_wav


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chorus orchestrator client")
    parser.add_argument("--address", default="localhost:50051", help="orchestrator host:port")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    commands = parser.add_subparsers(dest="command", required=True)

    speak = commands.add_parser("speak", help="stream speech into a WAV file")
    speak.add_argument("text")
    speak.add_argument("--preset", default="", help="celebration, calm or neutral")
    speak.add_argument("--voice", default="")
    speak.add_argument(
        "--speaking-rate",
        type=float,
        default=0.0,
        help="tempo multiplier, 0.5 to 2.5 (2.0: twice as fast); 0: the voice's normal rate",
    )
    speak.add_argument("--out", type=Path, required=True)

    compose = commands.add_parser("compose", help="speech and cut-out for a video message")
    compose.add_argument("--text", required=True)
    compose.add_argument("--photo", type=_existing_file, required=True)
    compose.add_argument("--preset", default="")
    compose.add_argument("--out-dir", type=Path, required=True)

    batch = commands.add_parser("batch", help="one WAV per line of a text file")
    batch.add_argument("--file", type=_existing_file, required=True)
    batch.add_argument("--preset", default="")
    batch.add_argument("--out-dir", type=Path, required=True)
    return parser.parse_args(argv)


async def _speak(
    stub: orchestrator_pb2_grpc.OrchestratorAsyncStub, args: argparse.Namespace
) -> None:
    started = time.perf_counter()
    ttfa = None
    rate, audio = 22050, bytearray()
    request = pb.SpeakRequest(
        text=args.text, preset=args.preset, voice=args.voice, speaking_rate=args.speaking_rate
    )
    async for response in stub.Speak(request, timeout=args.timeout):
        if response.HasField("format"):
            rate = response.format.sample_rate_hz
        elif response.HasField("audio"):
            ttfa = ttfa if ttfa is not None else time.perf_counter() - started
            audio += response.audio
        else:
            summary = response.summary
    args.out.write_bytes(write_wav(decode(bytes(audio), SampleFormat.S16LE), rate))
    for sentence in summary.sentences:
        state = f"fallback: {sentence.fallback_reason}" if sentence.fallback else "applied"
        print(f"sentence {sentence.index}: confidence {sentence.confidence:.2f}, {state}")
    print(
        f"wrote {args.out}: {summary.audio_seconds:.2f} s; TTFA {1000 * (ttfa or 0):.1f} ms, "
        f"total {1000 * (time.perf_counter() - started):.1f} ms; trace {summary.trace_id}"
    )


async def _compose(
    stub: orchestrator_pb2_grpc.OrchestratorAsyncStub, args: argparse.Namespace
) -> None:
    request = pb.ComposeMessageRequest(
        text=args.text, preset=args.preset, photo=args.photo.read_bytes()
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    async for response in stub.ComposeMessage(request, timeout=args.timeout):
        if response.HasField("progress"):
            progress = response.progress
            what = "finished" if progress.finished else "started"
            error = f" ({progress.error})" if progress.error else ""
            print(
                f"{progress.elapsed_seconds:7.3f} s  {pb.Stage.Name(progress.stage)} {what}{error}"
            )
            continue
        result = response.result
        (args.out_dir / "message.wav").write_bytes(result.audio_wav)
        if result.cutout_png:
            (args.out_dir / "cutout.png").write_bytes(result.cutout_png)
        missing = f", missing {', '.join(result.missing)}" if result.partial else ""
        print(
            f"wrote {args.out_dir}: {result.total_seconds:.3f} s{missing}; trace {result.trace_id}"
        )


async def _batch(
    stub: orchestrator_pb2_grpc.OrchestratorAsyncStub, args: argparse.Namespace
) -> None:
    segments = [line.strip() for line in args.file.read_text().splitlines() if line.strip()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    request = pb.SynthesizeBatchRequest(segments=segments, preset=args.preset)
    async for response in stub.SynthesizeBatch(request, timeout=args.timeout):
        if response.error:
            print(f"segment {response.index}: {response.error}", file=sys.stderr)
            continue
        (args.out_dir / f"{response.index:04d}.wav").write_bytes(response.audio_wav)
    print(f"{len(segments)} segments in {time.perf_counter() - started:.2f} s")


async def _run(args: argparse.Namespace) -> int:
    commands = {"speak": _speak, "compose": _compose, "batch": _batch}
    async with grpc.aio.insecure_channel(args.address) as channel:
        try:
            await commands[args.command](orchestrator_pb2_grpc.OrchestratorStub(channel), args)
        except grpc.aio.AioRpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client; returns the process exit status."""
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
