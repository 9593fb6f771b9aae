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
        default="espeak", metadata={"help": "speech engine: espeak or coqui"}
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
