"""Settings of the TTS server (CHORUS_* variables and flags; see services.common.settings)."""

from __future__ import annotations

import dataclasses

from services.common.settings import ServerSettings


@dataclasses.dataclass(frozen=True)
class TtsSettings(ServerSettings):
    """Chorus text-to-speech server."""

    port: int = dataclasses.field(default=50052, metadata={"help": "port to listen on"})
    engine: str = dataclasses.field(default="espeak", metadata={"help": "speech engine: espeak"})
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
