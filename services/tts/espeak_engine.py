"""The weight-free speech engine: libespeak-ng from the espeakng-loader wheel, via ctypes.

espeak-ng in synchronous mode calls a callback with each buffer of audio as it makes it,
so one sentence streams out in chunks of ``chunk_ms`` milliseconds. The library keeps its
state in globals (one voice, one rate, one callback per process): it is loaded once per
process and every call into it holds one lock.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import espeakng_loader
import numpy as np

from services.common.errors import EngineError
from services.tts.engine import ChunkSink, SpeechEngine, VoiceInfo

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_EE_OK = 0
_NORMAL_WPM = 175
# espeak-ng refuses rates outside this range (words per minute).
_MIN_WPM, _MAX_WPM = 80, 450
_GENDERS = {1: "male", 2: "female"}

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _EspeakVoice(ctypes.Structure):
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


class _Library:
    """The process's one initialised libespeak-ng, with its one callback."""

    def __init__(self, chunk_ms: int) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Initialize.restype = ctypes.c_int
        # Without an explicit restype the returned pointer is truncated to int: a segfault.
        lib.espeak_Info.argtypes = (ctypes.POINTER(ctypes.c_char_p),)
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_SetSynthCallback.argtypes = (_SynthCallback,)
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
        lib.espeak_Synth.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        )
        lib.espeak_Synth.restype = ctypes.c_int

        data_path = espeakng_loader.get_data_path().encode()
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, chunk_ms, data_path, 0)
        if sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path!r}")
        self.lib = lib
        self.sample_rate: int = sample_rate
        self.chunk_ms = chunk_ms
        self.version: str = (lib.espeak_Info(None) or b"unknown").decode()
        self.lock = threading.Lock()
        self.sink: ChunkSink | None = None
        # Kept referenced for the life of the library, or ctypes frees the trampoline.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        # Returning 1 tells espeak-ng to abort the synthesis.
        if count <= 0 or not wav:
            return 0
        sink = self.sink
        if sink is None:
            return 1
        # espeak-ng reuses its buffer: copy the samples out before returning.
        pcm = np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / np.float32(32768)
        return 0 if sink(pcm) else 1


_library: _Library | None = None
_library_lock = threading.Lock()


def _load_library(chunk_ms: int) -> _Library:
    """Initialise libespeak-ng once per process; later calls get the same library."""
    global _library
    with _library_lock:
        if _library is None:
            _library = _Library(chunk_ms)
        elif _library.chunk_ms != chunk_ms:
            raise RuntimeError(
                f"espeak-ng already initialised with {_library.chunk_ms} ms chunks "
                f"in this process; cannot switch to {chunk_ms} ms"
            )
        return _library


class EspeakEngine(SpeechEngine):
    """espeak-ng: formant synthesis, ~100 languages, no model weights, streams in-sentence."""

    name = "espeak"
    default_voice = "en-us"

    def __init__(self, chunk_ms: int = 20) -> None:
        if not 1 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be 1 to 1000, not {chunk_ms}")
        self._chunk_ms = chunk_ms
        self._library: _Library | None = None
        self._voices: list[VoiceInfo] | None = None

    @property
    def model_version(self) -> str:
        """``espeak-ng <version>``: the library and its data ship together in one wheel."""
        return f"espeak-ng {self._lib.version}"

    @property
    def sample_rate(self) -> int:
        """22050 Hz for espeak-ng's voices."""
        return self._lib.sample_rate

    def load(self) -> None:
        """Load and initialise libespeak-ng and read its voice list."""
        self._library = _load_library(self._chunk_ms)
        self._voices = self._list_voices()

    def warm_up(self) -> None:
        """Speak one short sentence so the voice data is paged in before real requests."""
        self.synthesize("Warming up.", self.resolve_voice("", ""), 1.0, lambda _chunk: True)

    def voices(self) -> Sequence[VoiceInfo]:
        """espeak-ng's voices, one per name (the file name of its voice definition)."""
        if self._voices is None:
            raise EngineError("espeak engine used before load()")
        return self._voices

    def synthesize(
        self, text: str, voice: VoiceInfo, speaking_rate: float, sink: ChunkSink
    ) -> None:
        """Speak ``text`` with ``voice``, passing 20 ms-ish chunks to ``sink`` as made."""
        library = self._lib
        encoded = text.encode("utf-8")
        words_per_minute = round(min(max(_NORMAL_WPM * speaking_rate, _MIN_WPM), _MAX_WPM))
        with library.lock:
            if library.lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                raise EngineError(f"espeak-ng cannot select voice {voice.name!r}")
            library.lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
            library.sink = sink
            try:
                status = library.lib.espeak_Synth(
                    encoded,
                    len(encoded) + 1,
                    0,
                    _POS_CHARACTER,
                    0,
                    _ESPEAK_CHARS_UTF8,
                    None,
                    None,
                )
            finally:
                library.sink = None
        if status != _EE_OK:
            raise EngineError(f"espeak-ng synthesis failed with status {status}")

    @property
    def _lib(self) -> _Library:
        if self._library is None:
            raise EngineError("espeak engine used before load()")
        return self._library

    def _list_voices(self) -> list[VoiceInfo]:
        voices: list[VoiceInfo] = []
        seen: set[str] = set()
        array = self._lib.lib.espeak_ListVoices(None)
        index = 0
        while array[index]:
            entry = array[index].contents
            index += 1
            identifier = (entry.identifier or b"").decode()
            # The identifier's last part (gmw/en-US -> en-us) is the name that
            # espeak_SetVoiceByName accepts; the display name (English_(America)) is not.
            name = identifier.rsplit("/", 1)[-1].lower()
            if not name or name in seen:
                continue
            seen.add(name)
            voices.append(
                VoiceInfo(
                    name=name,
                    languages=_languages(entry.languages),
                    gender=_GENDERS.get(entry.gender, "unknown"),
                )
            )
        return voices


def _languages(pointer: int | None) -> tuple[str, ...]:
    """Decode espeak's packed language list: [priority][name NUL] ... [0]."""
    languages: list[str] = []
    if not pointer:
        return ()
    offset = 0
    while ctypes.c_ubyte.from_address(pointer + offset).value != 0:
        name = ctypes.string_at(pointer + offset + 1)
        languages.append(name.decode().lower())
        offset += len(name) + 2
    return tuple(languages)
