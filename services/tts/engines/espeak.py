"""The weight-free speech engine: libespeak-ng from the espeakng-loader wheel, via ctypes.

espeak-ng in synchronous mode calls one callback with each buffer of audio as it makes it,
so a sentence streams out in chunks while it is being synthesised (here 5.5 s of speech
takes about 8 ms, chunks included; the first chunk comes after about 0.5 ms). The library
is one per process and not thread-safe: see services.tts.engines.espeak_library.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.errors import EngineError
from services.tts.engines.base import (
    ChunkSink,
    PcmChunk,
    SpeechEngine,
    VoiceInfo,
    WordSink,
    check_speaking_rate,
)
from services.tts.engines.espeak_library import EspeakLibrary, SpeechMark, load_espeak_library
from services.tts.engines.words import WordClock

_NORMAL_WPM = 175
# espeak-ng's speaking-rate range (espeakRATE_MINIMUM, espeakRATE_MAXIMUM), words per minute.
_MIN_WPM, _MAX_WPM = 80, 450


class EspeakEngine(SpeechEngine):
    """espeak-ng: formant synthesis, about 140 voices, no model weights, streams in-sentence.

    Voices are named by their voice file, lower-cased: ``en-us``, ``en`` (British English),
    ``de``, ``fr``, ``cmn``, ... These are the names espeak-ng's own ``-v`` option takes and
    are unique, where espeak's display names (``English (America)``) are long and contain
    spaces. A voice is selected by its full identifier (``gmw/en-US``), so a name always
    selects exactly the voice listed under it.
    """

    name = "espeak"
    default_voice = "en-us"

    @property
    def word_timings(self) -> bool:
        """Always: espeak-ng reports where it starts each word."""
        return True

    def __init__(self, *, chunk_ms: int = 20) -> None:
        """``chunk_ms`` is espeak's buffer length, which sets the size of the chunks.

        espeak-ng 1.52 makes no buffer shorter than 60 ms (1324 samples): smaller values
        give 60 ms chunks. Time to first audio hardly depends on it (about 0.5 ms).
        """
        if not 1 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be 1 to 1000, not {chunk_ms}")
        self._chunk_ms = chunk_ms
        self._library: EspeakLibrary | None = None
        self._voices: tuple[VoiceInfo, ...] | None = None
        self._identifiers: dict[str, str] = {}  # voice name -> espeak identifier

    @property
    def model_version(self) -> str:
        """``espeak-ng <version>``: the library and its voice data ship in one wheel."""
        return f"espeak-ng {self._loaded.version}"

    @property
    def sample_rate(self) -> int:
        """The rate espeak_Initialize reports: 22050 Hz for espeak-ng's voices."""
        return self._loaded.sample_rate

    def load(self) -> None:
        """Load and initialise libespeak-ng; RuntimeError with the reason when it cannot."""
        self._library = load_espeak_library(self._chunk_ms)

    def warm_up(self) -> None:
        """Speak one short sentence so voice data and dictionary are read before requests."""
        self.synthesize("Warming up.", self.resolve_voice("", ""), 1.0, lambda _chunk: True)

    def voices(self) -> Sequence[VoiceInfo]:
        """espeak-ng's voices that can speak, one per name, listed on first use.

        Voices whose pronunciation dictionary is missing from the data are left out
        (the espeakng-loader 0.2.4 wheel lacks those of ``fo``, ``kaa`` and ``xex``:
        espeak selects them without complaint and then speaks silence). For each language,
        the voice espeak prefers for it (by the priorities in its voice files) comes
        before the other voices that speak it, because ``resolve_voice`` takes the first
        match: ``en`` resolves to British English, ``fr`` to France's French.
        """
        return self._catalogue()

    def synthesize(
        self,
        text: str,
        voice: VoiceInfo,
        speaking_rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        """Speak ``text`` with ``voice``, passing float32 chunks to ``sink`` as they are made.

        ``speaking_rate`` scales espeak's 175 words per minute, clamped to 80..450. Text is
        read as plain text, never as SSML. Blocking and safe from any thread: calls are
        serialised on the one library, and ``sink`` runs while the lock is held, so it must
        not call back into the engine. An exception from ``sink`` stops the synthesis and is
        re-raised here; ``sink`` returning False stops it quietly.

        ``words`` gets the words' timings from espeak's own word events (the exact sample
        where it starts each word) and clause ends (see _TimedSpeech).
        """
        check_speaking_rate(speaking_rate)
        words_per_minute = round(min(max(_NORMAL_WPM * speaking_rate, _MIN_WPM), _MAX_WPM))
        library = self._loaded
        self._catalogue()  # fills the name -> identifier map
        identifier = self._identifiers.get(voice.name.casefold())
        if identifier is None:
            # Not passed on as it is: espeak would match it against display names and
            # languages too, and on no match keep speaking with the previous voice.
            raise EngineError(f"espeak engine has no voice {voice.name!r}")
        # A NUL would end the C string early and silently drop the rest of the text.
        encoded = text.replace("\0", " ").encode("utf-8")
        if words is None:
            library.speak(encoded, identifier, words_per_minute, self._chunk_ms, sink)
            return
        timed = _TimedSpeech(text, sink, words)
        library.speak(
            encoded, identifier, words_per_minute, self._chunk_ms, timed.audio, timed.mark
        )
        timed.finish()

    @property
    def _loaded(self) -> EspeakLibrary:
        if self._library is None:
            raise EngineError("espeak engine used before load()")
        return self._library

    def _catalogue(self) -> tuple[VoiceInfo, ...]:
        if self._voices is None:
            voices = self._loaded.voices()
            # Identifiers first: once _voices is set, another thread may skip this.
            self._identifiers = {voice.info.name: voice.identifier for voice in voices}
            self._voices = tuple(voice.info for voice in voices)
        return self._voices


class _TimedSpeech:
    """One sentence's audio and words, in the order the streamer needs them.

    espeak-ng reports where each word starts (a WORD event with its code point and exact
    sample) with the buffer it starts in, but a word's end only with the next word's start
    or the clause's END event. So the buffer holding a word's start is held back until the
    word has ended and been handed on: audio leaves a word late (espeak makes a word in
    well under a millisecond), never before its word.
    """

    def __init__(self, text: str, sink: ChunkSink, words: WordSink) -> None:
        self._clock = WordClock(text, words)
        self._sink = sink
        self._held: list[PcmChunk] = []
        self._held_from = 0  # sample of the first held buffer
        self._made = 0  # samples received from espeak
        self._stopped = False  # the sink refused a chunk: no more words either

    def mark(self, mark: SpeechMark) -> None:
        if mark.word:
            self._clock.word(mark.char, mark.sample)
        else:
            self._clock.pause(mark.sample, mark.char)

    def audio(self, chunk: PcmChunk) -> bool:
        self._held.append(chunk)
        self._made += chunk.size
        return self._release(self._clock.pending_start)

    def finish(self) -> None:
        if self._stopped:
            return
        self._clock.finish(self._made)
        self._release(None)

    def _release(self, before: int | None) -> bool:
        """Pass on the held buffers that end at or before ``before`` (all for None)."""
        while self._held and (before is None or self._held_from + self._held[0].size <= before):
            chunk = self._held.pop(0)
            self._held_from += chunk.size
            if not self._sink(chunk):
                self._held.clear()
                self._stopped = True
                return False
        return True
