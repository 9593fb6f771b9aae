"""The interface every speech engine implements, free of gRPC and of the event loop."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.common.errors import InvalidArgument
from services.common.sentences import split_sentences

PcmChunk = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1] at the engine's native sample rate."""

ChunkSink = Callable[[PcmChunk], bool]
"""Receives each chunk as it is made; returns False to stop the synthesis early."""


@dataclass(frozen=True)
class TimedWord:
    """When one word of a sentence plays, as the engine that spoke it knows it."""

    char_start: int
    char_end: int
    """Its span [char_start, char_end) in the sentence, in code points (``word_spans``)."""
    start_sample: int
    end_sample: int
    """Its first sample and the sample after its last, at the engine's native rate,
    counted from the first sample of the sentence that the engine passed to its sink."""


WordSink = Callable[[TimedWord], None]
"""Receives each word of the sentence being spoken, in order (see SpeechEngine.synthesize)."""

# A word: a run of characters between spaces (or dashes, which speech pauses at), with the
# punctuation around it left out; only runs with a letter or digit count.
_WORD_RUN = re.compile(r"[^\s\u2013\u2014]+")
_EDGE_PUNCTUATION = "\"'()[]{}<>\u00ab\u00bb\u201c\u201d\u2018\u2019\u201e\u00bf\u00a1.,;:!?\u2026-"


def word_spans(text: str) -> list[tuple[int, int]]:
    """The words of ``text`` as [start, end) code-point spans, in order.

    What a word is for word timings, the same for every engine: a run of characters between
    whitespace or dashes (en and em), without the quotes, brackets and punctuation at its
    edges (``"there,"`` is ``there``; ``3,000``, ``e-mail``, ``U.S.A`` and ``$5`` stay
    whole), and only if it has a letter or digit (a lone ``-`` is no word).
    """
    spans: list[tuple[int, int]] = []
    for run in _WORD_RUN.finditer(text):
        start, end = run.span()
        while start < end and text[start] in _EDGE_PUNCTUATION:
            start += 1
        while end > start and text[end - 1] in _EDGE_PUNCTUATION:
            end -= 1
        if any(character.isalnum() for character in text[start:end]):
            spans.append((start, end))
    return spans


def collecting_sink(pieces: list[PcmChunk]) -> ChunkSink:
    """A sink that appends every chunk to ``pieces`` and never stops the synthesis."""

    def keep(chunk: PcmChunk) -> bool:
        pieces.append(chunk)
        return True

    return keep


@dataclass(frozen=True)
class VoiceInfo:
    """A voice the engine can speak with."""

    name: str
    languages: tuple[str, ...]
    gender: str = "unknown"


class SpeechEngine(ABC):
    """A text-to-speech model: loaded once per process, then asked for one sentence at a time.

    Engines that stream inside a sentence (espeak, piper) call the sink many times per
    sentence; engines that cannot (most neural models) call it once with the whole
    sentence. The caller splits text into sentences, so both kinds stream at sentence
    granularity or better.
    """

    name: str
    """Short engine identifier, as configured (``piper``, ``espeak``, ``coqui``)."""

    @property
    def word_timings(self) -> bool:
        """Whether ``synthesize`` can say when each word plays (it takes a ``words`` sink).
        Engines that know their durations (espeak, piper, Coqui VITS) do; the others never
        get a ``words`` sink."""
        return False

    default_voice: str
    """The voice used when a request names neither voice nor language."""

    @property
    @abstractmethod
    def model_version(self) -> str:
        """Identifies the model and its data, so cached audio is never served across versions."""

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Native output sample rate in Hz."""

    @abstractmethod
    def load(self) -> None:
        """Load the model; raises with a clear message when its files are missing."""

    @abstractmethod
    def warm_up(self) -> None:
        """Run a first synthesis so that the first real request pays no start-up cost."""

    def close(self) -> None:  # noqa: B027 (the default for engines holding nothing to free)
        """Let go of the model (sessions, weights, GPU memory) once no synthesis runs; the
        engine is unusable until loaded again. Engines that hold nothing of their own
        (espeak's library is the process's) keep this default."""

    @abstractmethod
    def voices(self) -> Sequence[VoiceInfo]:
        """The voices this engine offers."""

    @abstractmethod
    def synthesize(
        self,
        text: str,
        voice: VoiceInfo,
        speaking_rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        """Speak one sentence, passing PCM to ``sink`` as it is made.

        ``words`` (given only to an engine whose ``word_timings`` is True, and only when
        a caller asked for timings: None costs nothing) receives every word of ``text``
        (``word_spans``) exactly once, in order, each before the audio holding its
        start goes to ``sink``; a sentence stopped early (``sink`` returned False) may
        leave its last words out.

        Blocking and safe to call from any thread: engines serialise access to shared
        model state themselves.
        """

    def speak_whole(self, text: str, voice: str = "", speaking_rate: float = 1.0) -> PcmChunk:
        """All of ``text`` at once, sentence by sentence as the streamer does (for tools,
        benchmarks and tests; the service streams)."""
        chosen = self.resolve_voice(voice, "")
        pieces: list[PcmChunk] = []
        for sentence in split_sentences(text):
            self.synthesize(sentence, chosen, speaking_rate, collecting_sink(pieces))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def resolve_voice(self, voice: str, language: str) -> VoiceInfo:
        """Pick the voice a request asks for by name, else by language, else the default.

        Raises InvalidArgument naming ``voice`` or ``language`` when nothing matches.
        """
        voices = self.voices()
        if voice:
            wanted = voice.casefold()
            for candidate in voices:
                if candidate.name.casefold() == wanted:
                    if language and not speaks(candidate, language):
                        raise InvalidArgument(
                            "language", f"voice {voice!r} does not speak {language!r}"
                        )
                    return candidate
            raise InvalidArgument("voice", f"unknown voice {voice!r}; see ListVoices")
        if language:
            for candidate in voices:
                if speaks(candidate, language):
                    return candidate
            raise InvalidArgument("language", f"no voice speaks {language!r}")
        return self.resolve_voice(self.default_voice, "")


def check_speaking_rate(speaking_rate: float) -> None:
    """InvalidArgument naming ``speaking_rate`` unless it is a positive number (engines
    are called directly by tools and tests too, not only behind the servicer's checks)."""
    if not math.isfinite(speaking_rate) or speaking_rate <= 0:
        raise InvalidArgument("speaking_rate", f"must be a positive number, not {speaking_rate}")


def speaks(voice: VoiceInfo, language: str) -> bool:
    """True when ``voice`` speaks ``language`` or a regional variant of it."""
    wanted = language.casefold().replace("_", "-")
    return any(
        lang == wanted or lang.startswith(wanted + "-")
        for lang in (x.casefold() for x in voice.languages)
    )
