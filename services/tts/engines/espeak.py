"""The weight-free speech engine: libespeak-ng from the espeakng-loader wheel, via ctypes.

espeak-ng in synchronous mode calls one callback with each buffer of audio as it makes it,
so a sentence streams out in chunks while it is being synthesised (here 5.5 s of speech
takes about 8 ms, chunks included; the first chunk comes after about 0.5 ms).

The library keeps everything in C globals: one voice, one rate, one output buffer and one
synth callback per process, and none of it is thread-safe. So the library is loaded and
initialised once per process (``_Library``, a lazily created module-level singleton: a
second ``espeak_Initialize`` would re-initialise the state under any engine already using
it), and every call that touches that state holds the library's one lock. Because there is
only one callback, the library, not the engine instance, remembers which sink the running
synthesis feeds.
"""

from __future__ import annotations

import ctypes
import graphlib
import heapq
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

from services.common.errors import EngineError, InvalidArgument
from services.tts.engines.base import ChunkSink, SpeechEngine, VoiceInfo

# Constants from espeak-ng's speak_lib.h and espeak_ng.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT, for espeak_Initialize
_ENOUTPUT_MODE_SYNCHRONOUS = 1  # espeak_ng_OUTPUT_MODE, for espeak_ng_InitializeOutput
# Without it a failed espeak_Initialize calls exit(1) and takes the whole server down.
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1  # and no espeakSSML flag: "<" in the text is read, never parsed
_ESPEAK_RATE = 1
_EE_OK = 0
_ERRORS = {-1: "internal error", 1: "buffer full", 2: "not found"}
_GENDERS = {1: "male", 2: "female"}

_NORMAL_WPM = 175
# espeak-ng's speaking-rate range (espeakRATE_MINIMUM, espeakRATE_MAXIMUM), words per minute.
_MIN_WPM, _MAX_WPM = 80, 450

# int callback(short *wav, int numsamples, espeak_EVENT *events); the events are not read,
# so they stay an opaque pointer rather than a mirror of espeak_EVENT.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _EspeakVoice(ctypes.Structure):
    """espeak_VOICE, as espeak_ListVoices returns it."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        # Repeated [priority byte][language string][NUL], ending with a zero byte.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


@dataclass(frozen=True)
class _Voice:
    """One voice as listed, with what the library needs to select it."""

    info: VoiceInfo
    identifier: str  # the voice file's path under lang/, e.g. "gmw/en-US"
    priorities: tuple[tuple[str, int], ...]  # (language, priority), lower is preferred


def _declare(lib: ctypes.CDLL) -> None:
    """Give every function used its C signature; ctypes' int default truncates pointers."""
    lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_ng_InitializeOutput.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p)
    lib.espeak_ng_InitializeOutput.restype = ctypes.c_int
    # Without an explicit restype the returned pointer is truncated to int: a segfault.
    lib.espeak_Info.argtypes = (ctypes.POINTER(ctypes.c_char_p),)
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetSynthCallback.argtypes = (_SynthCallback,)
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
    lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = (
        ctypes.c_char_p,  # text
        ctypes.c_size_t,  # size
        ctypes.c_uint,  # position
        ctypes.c_int,  # position_type
        ctypes.c_uint,  # end_position
        ctypes.c_uint,  # flags
        ctypes.POINTER(ctypes.c_uint),  # unique_identifier
        ctypes.c_void_p,  # user_data
    )
    lib.espeak_Synth.restype = ctypes.c_int


class _Library:
    """The process's one initialised libespeak-ng, its one callback and its one lock."""

    def __init__(self, chunk_ms: int) -> None:
        library_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as error:
            raise RuntimeError(f"cannot load libespeak-ng from {library_path}: {error}") from error
        _declare(lib)
        data_path = espeakng_loader.get_data_path()
        sample_rate = int(
            lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, chunk_ms, data_path.encode(), _INITIALIZE_DONT_EXIT
            )
        )
        if sample_rate <= 0:
            raise RuntimeError(
                f"espeak-ng failed to initialise with its data at {data_path} "
                "(its own message, if any, is on stderr)"
            )
        path = ctypes.c_char_p()
        version = lib.espeak_Info(ctypes.byref(path))
        self.lib = lib
        self.sample_rate = sample_rate
        self.version: str = version.decode() if version else "unknown"
        self.data_path = Path(path.value.decode()) if path.value else Path(data_path)
        self.lock = threading.Lock()
        self._buffer_ms = chunk_ms
        self._sink: ChunkSink | None = None
        self._sink_error: BaseException | None = None
        self._voices: list[_Voice] | None = None
        # Kept referenced for the life of the process, or ctypes frees the trampoline
        # that the C library still calls.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def voices(self) -> list[_Voice]:
        """The voices that can speak, listed once per process."""
        with self.lock:
            if self._voices is None:
                self._voices = _order_by_preference(_list_voices(self.lib, self.data_path))
            return self._voices

    def speak(
        self, text: bytes, voice: str, words_per_minute: int, chunk_ms: int, sink: ChunkSink
    ) -> None:
        """Synthesise ``text`` (UTF-8) with the voice named ``voice``, feeding ``sink``."""
        with self.lock:
            if chunk_ms != self._buffer_ms:
                # Another engine in this process asked for another chunk size: swap the
                # output buffer (one realloc) rather than re-initialise the library.
                status = int(
                    self.lib.espeak_ng_InitializeOutput(_ENOUTPUT_MODE_SYNCHRONOUS, chunk_ms, None)
                )
                if status != _EE_OK:
                    raise EngineError(f"espeak-ng cannot use {chunk_ms} ms buffers: {status}")
                self._buffer_ms = chunk_ms
            # Both set on every call: another engine or thread may have changed them since.
            _check(self.lib.espeak_SetVoiceByName(voice.encode()), f"selecting voice {voice!r}")
            _check(
                self.lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0),
                f"setting rate {words_per_minute}",
            )
            self._sink, self._sink_error = sink, None
            try:
                status = int(
                    self.lib.espeak_Synth(
                        text,
                        len(text) + 1,
                        0,
                        _POS_CHARACTER,
                        0,
                        _ESPEAK_CHARS_UTF8,
                        None,
                        None,
                    )
                )
            finally:
                sink_error, self._sink, self._sink_error = self._sink_error, None, None
        if sink_error is not None:
            raise sink_error
        # A sink that asked to stop ends the synthesis with EE_OK, so this is a real failure.
        _check(status, "synthesising")

    def _on_audio(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None
    ) -> int:
        """espeak-ng's synth callback: 0 to go on, 1 to abort the synthesis."""
        # The last call of a synthesis carries no audio (NULL buffer) and only ends it.
        if count <= 0 or not wav:
            return 0
        sink = self._sink
        if sink is None:
            return 1
        try:
            # espeak-ng reuses its buffer: astype copies the samples out before we return.
            pcm = np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32)
            pcm *= np.float32(1 / 32768)
            return 0 if sink(pcm) else 1
        except BaseException as error:
            # An exception cannot cross the C frames: ctypes would print it and carry on
            # synthesising. Stop instead, and re-raise it once espeak_Synth has returned.
            self._sink_error = error
            return 1


def _check(status: int, doing: str) -> None:
    """Raise EngineError for an espeak_ERROR other than EE_OK."""
    if status != _EE_OK:
        reason = _ERRORS.get(status, f"status {status}")
        raise EngineError(f"espeak-ng failed {doing}: {reason}")


_library: _Library | None = None
_library_lock = threading.Lock()


def _load_library(chunk_ms: int) -> _Library:
    """Initialise libespeak-ng once per process; later calls get the same library."""
    global _library
    with _library_lock:
        if _library is None:
            _library = _Library(chunk_ms)
        return _library


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

    def __init__(self, *, chunk_ms: int = 20) -> None:
        """``chunk_ms`` is espeak's buffer length, which sets the size of the chunks.

        espeak-ng 1.52 makes no buffer shorter than 60 ms (1324 samples): smaller values
        give 60 ms chunks. Time to first audio hardly depends on it (about 0.5 ms).
        """
        if not 1 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be 1 to 1000, not {chunk_ms}")
        self._chunk_ms = chunk_ms
        self._library: _Library | None = None
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
        self._library = _load_library(self._chunk_ms)

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
        self, text: str, voice: VoiceInfo, speaking_rate: float, sink: ChunkSink
    ) -> None:
        """Speak ``text`` with ``voice``, passing float32 chunks to ``sink`` as they are made.

        ``speaking_rate`` scales espeak's 175 words per minute, clamped to 80..450. Text is
        read as plain text, never as SSML. Blocking and safe from any thread: calls are
        serialised on the one library, and ``sink`` runs while the lock is held, so it must
        not call back into the engine. An exception from ``sink`` stops the synthesis and is
        re-raised here; ``sink`` returning False stops it quietly.
        """
        if not math.isfinite(speaking_rate) or speaking_rate <= 0:
            raise InvalidArgument(
                "speaking_rate", f"must be a positive number, not {speaking_rate}"
            )
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
        library.speak(encoded, identifier, words_per_minute, self._chunk_ms, sink)

    @property
    def _loaded(self) -> _Library:
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


def _list_voices(lib: ctypes.CDLL, data_path: Path) -> list[_Voice]:
    """Read espeak_ListVoices(NULL): a NULL-terminated array of espeak_VOICE pointers."""
    voices: list[_Voice] = []
    seen: set[str] = set()
    array = lib.espeak_ListVoices(None)
    index = 0
    while array[index]:
        entry = array[index].contents
        index += 1
        identifier = (entry.identifier or b"").decode("utf-8", "replace")
        # gmw/en-US -> en-us: the voice file's name, what espeak-ng -v takes.
        name = identifier.rsplit("/", 1)[-1].casefold()
        if not name or name in seen or not _has_dictionary(data_path, identifier):
            continue
        seen.add(name)
        priorities = _languages(entry.languages)
        voices.append(
            _Voice(
                info=VoiceInfo(
                    name=name,
                    languages=tuple(language for language, _ in priorities),
                    gender=_GENDERS.get(entry.gender, "unknown"),
                ),
                identifier=identifier,
                priorities=priorities,
            )
        )
    return voices


def _languages(pointer: int | None) -> tuple[tuple[str, int], ...]:
    """Decode espeak's packed language list: [priority][name NUL] ... [0]."""
    languages: list[tuple[str, int]] = []
    if not pointer:
        return ()
    offset = 0
    while (priority := ctypes.c_ubyte.from_address(pointer + offset).value) != 0:
        name = ctypes.string_at(pointer + offset + 1)
        languages.append((name.decode("utf-8", "replace").casefold(), priority))
        offset += len(name) + 2
    return tuple(languages)


def _has_dictionary(data_path: Path, identifier: str) -> bool:
    """Whether the voice's pronunciation dictionary is in the data, by espeak's own rule.

    The dictionary is the voice file's ``dictionary`` line, else its first ``language``
    up to the first ``-`` (``en-us`` -> ``en_dict``).
    """
    try:
        text = (data_path / "lang" / identifier).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # not a plain voice file: let espeak be the judge
    dictionary: str | None = None
    first_language: str | None = None
    for line in text.splitlines():
        words = line.split("//", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "dictionary":
            dictionary = words[1]
        elif words[0] == "language" and first_language is None and words[1] != "variant":
            first_language = words[1].split("-", 1)[0]
    wanted = dictionary or first_language
    return wanted is None or (data_path / f"{wanted.lower()}_dict").is_file()


def _order_by_preference(voices: list[_Voice]) -> list[_Voice]:
    """Move each language's preferred voice before the other voices that speak it.

    Otherwise keeps espeak's order (alphabetical by file). The preferred voice for a
    language is the one with the lowest priority for it, the earlier on a tie. When the
    preferences contradict each other, espeak's order is kept as it is.
    """
    best: dict[str, tuple[int, int]] = {}
    for index, voice in enumerate(voices):
        for language, priority in voice.priorities:
            best[language] = min(best.get(language, (priority, index)), (priority, index))
    predecessors: dict[int, set[int]] = {index: set() for index in range(len(voices))}
    for index, voice in enumerate(voices):
        for language, _ in voice.priorities:
            preferred = best[language][1]
            if preferred != index:
                predecessors[index].add(preferred)
    sorter = graphlib.TopologicalSorter(predecessors)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return voices
    # Kahn's algorithm, always taking the earliest ready voice: the order closest to espeak's.
    ready = list(sorter.get_ready())
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        sorter.done(index)
        for successor in sorter.get_ready():
            heapq.heappush(ready, successor)
    return [voices[index] for index in order]
