"""Settings of the TTS server (CHORUS_* variables and flags; see services.common.settings)."""

from __future__ import annotations

import dataclasses

from services.common.settings import ServerSettings


@dataclasses.dataclass(frozen=True)
class TtsSettings(ServerSettings):
    """Chorus text-to-speech server."""

    port: int = dataclasses.field(default=50052, metadata={"help": "port to listen on"})
    metrics_port: int = dataclasses.field(
        default=9452, metadata={"help": "Prometheus /metrics port, on host; 0 turns it off"}
    )
    engine: str = dataclasses.field(
        default="piper", metadata={"help": "speech engine: piper, espeak or coqui"}
    )
    max_text_chars: int = dataclasses.field(
        default=5000, metadata={"help": "longest text accepted, in characters"}
    )
    engine_workers: int = dataclasses.field(
        default=1, metadata={"help": "threads running the engine"}
    )
    sentences_ahead: int = dataclasses.field(
        default=2, metadata={"help": "sentences the engine may run ahead of a slow reader"}
    )
    max_merged_ms: int = dataclasses.field(
        default=500,
        metadata={"help": "largest chunk made by merging chunks that are ready at once"},
    )
    espeak_chunk_ms: int = dataclasses.field(
        default=60,
        metadata={"help": "espeak buffer length, the size of its chunks (60 ms is its least)"},
    )
    piper_model: str = dataclasses.field(
        default="",
        metadata={
            "help": "piper engine: a Piper voice's .onnx file, its .onnx.json beside it "
            "(empty: the packaged en_US-joe-medium voice)"
        },
    )
    piper_sessions: int = dataclasses.field(
        default=1,
        metadata={
            "help": "piper engine: copies of the model (ONNX Runtime sessions) running in "
            "parallel (set engine_workers to match)"
        },
    )
    piper_threads: int = dataclasses.field(
        default=0,
        metadata={
            "help": "piper engine: threads of each copy (0: the CPUs this process may use, "
            "shared out among the copies)"
        },
    )
    piper_noise_scale: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "piper engine: noise scale (unset: the voice's own; 0 with "
            "piper_noise_w 0 makes the same text sound the same every time)"
        },
    )
    piper_noise_w: float | None = dataclasses.field(
        default=None,
        metadata={"help": "piper engine: noise of the phoneme durations (unset: the voice's own)"},
    )
    coqui_model: str = dataclasses.field(
        default="",
        metadata={
            "help": "coqui engine: a model folder (checkpoint and config.json) or a Coqui "
            "model name such as tts_models/en/ljspeech/vits"
        },
    )
    coqui_models_dir: str = dataclasses.field(
        default="",
        metadata={
            "help": "coqui engine: the folder where model names are looked up, laid out as "
            "Coqui's cache (empty: Coqui's own, ~/.local/share/tts or $TTS_HOME/tts)"
        },
    )
    coqui_allow_download: bool = dataclasses.field(
        default=False,
        metadata={"help": "coqui engine: download a named model missing from the models dir"},
    )
    device: str = dataclasses.field(
        default="auto", metadata={"help": "auto (cuda when present), cuda, cuda:N or cpu"}
    )
    half_precision: bool = dataclasses.field(
        default=True, metadata={"help": "coqui engine: float16 inference on CUDA"}
    )
    coqui_instances: int = dataclasses.field(
        default=1,
        metadata={
            "help": "coqui engine: model copies running in parallel (set engine_workers to match)"
        },
    )
    coqui_max_batch: int = dataclasses.field(
        default=1,
        metadata={
            "help": "coqui engine, VITS: most sentences of concurrent requests spoken in one "
            "forward pass (1: none; give engine_workers at least this per instance)"
        },
    )
    coqui_batch_window_ms: float = dataclasses.field(
        default=5.0,
        metadata={
            "help": "coqui engine, VITS: how long the first sentence of a batch waits for "
            "others to join it"
        },
    )
    xtts_max_streams: int = dataclasses.field(
        default=1,
        metadata={
            "help": "coqui engine, XTTS: concurrent sentences whose GPT decoding shares one "
            "batched step per model copy (1: each sentence decodes alone on a copy, as "
            "Coqui's inference_stream; above 1 give engine_workers that many per instance)"
        },
    )
    coqui_compile: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "coqui engine, VITS: auto (cuda-graphs on CUDA, off on the CPU), off, "
            "cuda-graphs, reduce-overhead (torch.compile) or trace (checks, no speed-up)"
        },
    )
    coqui_token_buckets: str = dataclasses.field(
        default="64,128,256,512",
        metadata={
            "help": "coqui engine, VITS: token counts a compiled pass pads a sentence to "
            "(longer ones run eagerly)"
        },
    )
    coqui_frame_buckets: str = dataclasses.field(
        default="256,512,1024,2048",
        metadata={
            "help": "coqui engine, VITS: frame counts (about 86 a second) a compiled pass "
            "pads the audio to (longer ones run eagerly)"
        },
    )
