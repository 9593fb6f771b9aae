"""The process's one libespeak-ng (from the espeakng-loader wheel), driven through ctypes.

The library keeps everything in C globals: one voice, one rate, one output buffer and one
synth callback per process, and none of it is thread-safe. So it is loaded and initialised
once per process (``load_espeak_library``: a second ``espeak_Initialize`` would
re-initialise the state under any engine already using it), and every call that touches
that state holds the library's one lock. Two engines use it: espeak speaks with it (in
synchronous mode it calls one callback with each buffer of audio as it makes it), piper
takes its phonemes from it. Because there is only one callback, the library, not an
engine, remembers which sink the running synthesis feeds. A synthesis may also ask for
its marks (where each word starts, where each clause ends), which espeak-ng passes to the
same callback as a list of espeak_EVENT, mirrored here field for field.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

from services.common.errors import EngineError
from services.tts.engines.base import ChunkSink
from services.tts.engines.espeak_voices import (
    EspeakVoiceEntry,
    ListedVoice,
    list_voices,
    order_by_preference,
)

# Constants from espeak-ng's speak_lib.h and espeak_ng.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT, for espeak_Initialize
_ENOUTPUT_MODE_SYNCHRONOUS = 1  # espeak_ng_OUTPUT_MODE, for espeak_ng_InitializeOutput
# Without it a failed espeak_Initialize calls exit(1) and takes the whole server down.
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1  # and no espeakSSML flag: "<" in the text is read, never parsed
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes' phonememode: IPA as UTF-8, no separator
_ESPEAK_RATE = 1
_EE_OK = 0
_ERRORS = {-1: "internal error", 1: "buffer full", 2: "not found"}

DEFAULT_CHUNK_MS = 60
"""The buffer length the library starts with when its first user names none: espeak-ng's
shortest (see EspeakEngine); only speaking depends on it."""

# espeak_EVENT_TYPE values (speak_lib.h) of the events read here.
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5  # end of a clause or sentence
_EVENT_MSG_TERMINATED = 6


class _EventId(ctypes.Union):
    """espeak_EVENT's ``id`` union: a number, a name, or a phoneme's name."""

    _fields_ = (
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    )


class _Event(ctypes.Structure):
    """espeak_EVENT, field for field (speak_lib.h, API revision 12): 40 bytes on 64-bit."""

    _fields_ = (
        ("type", ctypes.c_int),  # espeak_EVENT_TYPE
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # code points from the text's start, counted from 1
        ("length", ctypes.c_int),  # of a WORD, in code points (espeak's word, not ours)
        ("audio_position", ctypes.c_int),  # ms from the synthesis's start
        ("sample", ctypes.c_int),  # samples from the synthesis's start
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


# int callback(short *wav, int numsamples, espeak_EVENT *events). The events stay an opaque
# pointer, cast to _Event only while a synthesis asks for them: no cost otherwise.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class SpeechMark:
    """Where espeak-ng is in the text as it speaks: a word starts, or a clause ends."""

    word: bool
    """True: a word starts (espeakEVENT_WORD); False: a clause ends (espeakEVENT_END)."""
    char: int
    """The code point it is at, counted from 0 in the text spoken."""
    sample: int
    """The sample it is at, counted from the synthesis's first."""
    audio_ms: int
    """The same point in ms, as espeak-ng itself reckons it (its ``audio_position``)."""


MarkSink = Callable[[SpeechMark], None]
"""Receives a synthesis's marks, each before the audio buffer it lies in."""


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
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(EspeakVoiceEntry))
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
    # const char *espeak_TextToPhonemes(const void **textptr, int textmode, int phonememode):
    # translates one clause, moves *textptr past it (NULL at the end), returns a buffer
    # inside the library that the next call overwrites.
    lib.espeak_TextToPhonemes.argtypes = (
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_int,
        ctypes.c_int,
    )
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p


class EspeakLibrary:
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
        self._marks: MarkSink | None = None
        self._sink_error: BaseException | None = None
        self._voices: list[ListedVoice] | None = None
        # Kept referenced for the life of the process, or ctypes frees the trampoline
        # that the C library still calls.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def voices(self) -> list[ListedVoice]:
        """The voices that can speak, listed once per process."""
        with self.lock:
            if self._voices is None:
                self._voices = order_by_preference(list_voices(self.lib, self.data_path))
            return self._voices

    def speak(
        self,
        text: bytes,
        voice: str,
        words_per_minute: int,
        chunk_ms: int,
        sink: ChunkSink,
        marks: MarkSink | None = None,
    ) -> None:
        """Synthesise ``text`` (UTF-8) with the voice named ``voice``, feeding ``sink``;
        ``marks``, when given, gets the word starts and clause ends, each before the
        buffer it lies in goes to ``sink``."""
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
            self._sink, self._marks, self._sink_error = sink, marks, None
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
                sink_error, self._sink_error = self._sink_error, None
                self._sink = self._marks = None
        if sink_error is not None:
            raise sink_error
        # A sink that asked to stop ends the synthesis with EE_OK, so this is a real failure.
        _check(status, "synthesising")

    def phonemes(self, text: str, voice: str) -> list[str]:
        """The IPA phonemes of ``text`` as the voice named ``voice`` says it, per clause.

        espeak-ng translates one clause per call, at its own clause ends (punctuation),
        which it leaves out of the phonemes: words come apart by spaces, with stress marks,
        and a word borrowed from another language comes wrapped in its language code,
        ``(fr)``. ``voice`` is a name as espeak-ng's ``-v`` option takes it (``en-us``);
        EngineError when espeak-ng has no such voice.
        """
        # A NUL would end the C string early and silently drop the rest of the text.
        encoded = text.replace("\0", " ").encode("utf-8")
        clauses: list[str] = []
        with self.lock:
            # Set on every call: the voice is global, and espeak may have spoken since.
            _check(self.lib.espeak_SetVoiceByName(voice.encode()), f"selecting voice {voice!r}")
            buffer = ctypes.create_string_buffer(encoded)
            position = ctypes.c_void_p(ctypes.addressof(buffer))
            # A clause per call, so never more calls than characters, whatever espeak does.
            for _ in range(len(encoded) + 1):
                if not position.value:
                    break
                phonemes = self.lib.espeak_TextToPhonemes(
                    ctypes.byref(position), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA
                )
                if phonemes:
                    clauses.append(phonemes.decode("utf-8", "replace"))
        return clauses

    def _on_audio(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: int | None
    ) -> int:
        """espeak-ng's synth callback: 0 to go on, 1 to abort the synthesis."""
        sink = self._sink
        if sink is None:
            return 1
        try:
            if self._marks is not None and events:
                self._read_marks(self._marks, events)
            # The last call of a synthesis carries no audio (NULL buffer) and only ends it.
            if count <= 0 or not wav:
                return 0
            # espeak-ng reuses its buffer: astype copies the samples out before we return.
            pcm = np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32)
            pcm *= np.float32(1 / 32768)
            return 0 if sink(pcm) else 1
        except BaseException as error:
            # An exception cannot cross the C frames: ctypes would print it and carry on
            # synthesising. Stop instead, and re-raise it once espeak_Synth has returned.
            self._sink_error = error
            return 1

    @staticmethod
    def _read_marks(marks: MarkSink, events: int) -> None:
        """Pass on the word starts and clause ends of a callback's event list."""
        event = ctypes.cast(events, ctypes.POINTER(_Event))
        # The list ends with a LIST_TERMINATED event; MSG_TERMINATED ends the synthesis.
        for index in range(_MAX_EVENTS):
            kind = event[index].type
            if kind in (_EVENT_LIST_TERMINATED, _EVENT_MSG_TERMINATED):
                return
            if kind in (_EVENT_WORD, _EVENT_END):
                current = event[index]
                marks(
                    SpeechMark(
                        word=kind == _EVENT_WORD,
                        char=max(0, current.text_position - 1),
                        sample=current.sample,
                        audio_ms=current.audio_position,
                    )
                )


_MAX_EVENTS = 4096
"""A bound on one callback's event list, whatever espeak-ng sends (a buffer of 60 ms holds
a few events)."""


def _check(status: int, doing: str) -> None:
    """Raise EngineError for an espeak_ERROR other than EE_OK."""
    if status != _EE_OK:
        reason = _ERRORS.get(status, f"status {status}")
        raise EngineError(f"espeak-ng failed {doing}: {reason}")


_library: EspeakLibrary | None = None
_library_lock = threading.Lock()


def load_espeak_library(chunk_ms: int = DEFAULT_CHUNK_MS) -> EspeakLibrary:
    """Initialise libespeak-ng once per process; later calls get the same library.

    ``chunk_ms`` is the first buffer length; a later speaker that wants another swaps it
    (see ``EspeakLibrary.speak``). RuntimeError with the reason when the library or its
    data cannot be loaded.
    """
    global _library
    with _library_lock:
        if _library is None:
            _library = EspeakLibrary(chunk_ms)
        return _library
