"""The production speech engine: a Coqui TTS model (``coqui-tts``) resident in the process.

Runs the two kinds of Coqui model that make a waveform end to end, without a separate
vocoder: VITS (Coqui's single- and multi-speaker VITS models, YourTTS) and XTTS. Any other
architecture is refused at load time with its name, never run half-way.

The model is loaded once per process, from a local folder or by Coqui model name (see
services.tts.engines.coqui_models), onto the GPU when there is one (``device`` ``auto``), and
warmed up before the server turns SERVING. A Coqui model object holds per-call state
(VITS's length scale, XTTS's generation cache), so each copy runs one sentence at a time:
``instances`` copies are loaded and every call borrows an idle one, waiting when all are
busy. Match the server's engine threads (``engine_workers``) to ``instances``: more threads
only wait, fewer leave copies idle.

Streaming: XTTS speaks through its ``inference_stream``, so chunks reach the sink while the
sentence is still being made; VITS makes a sentence at once and calls the sink once per
sentence. Either way, each sentence ends with the pause Coqui's own Synthesizer puts
between sentences.

Batching and graphs (VITS): with ``max_batch`` above 1, sentences from concurrent calls
that arrive within ``batch_window_ms`` of each other are spoken in one forward pass
(services.tts.engines.vits_batcher), each caller getting its own audio when the pass
ends; ``compile_mode`` runs that pass as CUDA graphs or compiled code over padded bucket
shapes (services.tts.engines.vits_graphs), captured in the warm-up. Either way the
sentence goes through services.tts.engines.vits_inference, which gives each item of a
batch the audio it would have alone. With neither, Coqui's own ``synthesize`` runs.
The engine's callers must be able to call it concurrently for batches to form: give the
server at least ``max_batch`` engine threads per copy (twice that lets the next batch
gather while one runs). XTTS runs one sentence per copy at a time, as before, unless
``xtts_max_streams`` is above 1 (see below).

Continuous batching (XTTS, ``xtts_max_streams`` above 1): each copy's GPT is driven by a
services.tts.engines.xtts_decoder.XttsDecoder, which decodes up to that many sentences
in one batched step each token, sentences joining and leaving between steps; HiFi-GAN
turns each sentence's latents into chunks on the calling thread as ``inference_stream``
does. A sentence goes to the copy with the fewest streams.

Word timings: VITS returns the durations its length regulator used (frames per input
token), so each token's first sample is exact; tokens (characters or phonemes, as the
model reads them) are mapped back to the words they say by aligning them with each
word's own tokens (services.tts.engines.words). XTTS generates audio tokens with no
alignment to the text: it gives no word timings.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from services.common.devices import check_device_setting, torch_cuda_available, torch_device
from services.common.errors import EngineError
from services.tts.engines.base import (
    ChunkSink,
    SpeechEngine,
    TimedWord,
    VoiceInfo,
    WordSink,
    check_speaking_rate,
    speaks,
    word_spans,
)
from services.tts.engines.coqui_models import locate_model
from services.tts.engines.model_copies import ModelCopies
from services.tts.engines.vits_batcher import VitsBatcher
from services.tts.engines.vits_graphs import (
    COMPILE_MODES,
    Buckets,
    make_stages,
    parse_sizes,
    resolve_compile_mode,
)
from services.tts.engines.vits_runner import VitsRequest, VitsRunner, VitsSpeech, vits_request
from services.tts.engines.words import align_words, timed_words, word_symbol_ranges
from services.tts.engines.xtts_compat import bridge_xtts_cache_argument
from services.tts.engines.xtts_decoder import XttsDecoder, XttsDecoders, xtts_audio
from services.tts.engines.xtts_text import xtts_parts
from services.tts.settings import TtsSettings

logger = logging.getLogger(__name__)

ARCHITECTURES = ("vits", "xtts")
"""The Coqui model types this engine runs (the ``model`` field of their config.json)."""

DEFAULT_VOICE = "default"
"""The voice name of a model that has no named speakers."""

_WARM_UP_TEXT = "Warming up."
# Coqui's Synthesizer.tts puts this many zero samples after every sentence it speaks.
_SENTENCE_PAUSE_SAMPLES = 10000
# XTTS's character limit for a language its tokenizer lists none for (as Coqui's own).
_XTTS_DEFAULT_CHAR_LIMIT = 250


@dataclass(frozen=True)
class _Voice:
    """A voice as listed, with the speaker and language the model is called with."""

    info: VoiceInfo
    speaker: str | None
    language: str | None


class CoquiEngine(SpeechEngine):
    """A Coqui TTS model: VITS (one sink call per sentence) or XTTS (streams in-sentence).

    Voices: a model without named speakers has one voice, ``default``; a multi-speaker
    model has one voice per speaker, named as the model names them. A model that speaks
    several languages (XTTS, YourTTS) has one voice per speaker and language, named
    ``<speaker>/<language>`` (``Ana Florence/de``), since the language is part of what is
    asked of the model. The default voice is the first that speaks English, else the first.

    Speaking rate: VITS divides its length scale (the duration of every sound) by the rate;
    XTTS stretches its latents by the same factor (its ``speed``). Both change the tempo
    without resampling, so the pitch stays.
    """

    name = "coqui"

    def __init__(
        self,
        model: str,
        *,
        models_dir: str = "",
        allow_download: bool = False,
        device: str = "auto",
        half_precision: bool = True,
        instances: int = 1,
        max_batch: int = 1,
        batch_window_ms: float = 5.0,
        compile_mode: str = "auto",
        token_buckets: str = "64,128,256,512",
        frame_buckets: str = "256,512,1024,2048",
        on_batch: Callable[[Sequence[VitsRequest]], None] | None = None,
        xtts_max_streams: int = 1,
    ) -> None:
        """Remember what to load; nothing is read before ``load()``.

        ``model`` is a model folder or a Coqui model name, ``models_dir`` where names are
        looked up (empty: Coqui's cache folder), ``allow_download`` whether a name missing
        there may be downloaded. ``device`` is ``auto`` (CUDA when torch sees a GPU),
        ``cpu``, ``cuda`` or ``cuda:N``; ``half_precision`` runs inference in float16 under
        autocast on CUDA (ignored on the CPU). ``instances`` copies of the model run in
        parallel.

        VITS only: ``max_batch`` sentences at most share a forward pass, gathered over
        ``batch_window_ms`` (1: no batching); ``compile_mode`` is one of COMPILE_MODES (see
        services.tts.engines.vits_graphs), and ``token_buckets`` and ``frame_buckets``
        (comma-separated sizes) the lengths a compiled or captured pass pads to.
        ``on_batch`` sees every batch before it runs (for metrics and tests).

        XTTS only: ``xtts_max_streams`` sentences at most decode together on each copy
        (1: Coqui's ``inference_stream``, one sentence per copy at a time).
        """
        check_device_setting(device)
        if instances < 1:
            raise ValueError(f"instances must be at least 1, not {instances}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if batch_window_ms < 0:
            raise ValueError(f"batch_window_ms must not be negative, not {batch_window_ms}")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile mode must be one of {', '.join(COMPILE_MODES)}, not {compile_mode!r}"
            )
        if xtts_max_streams < 1:
            raise ValueError(f"xtts_max_streams must be at least 1, not {xtts_max_streams}")
        self._xtts_max_streams = xtts_max_streams
        self._xtts_decoders: XttsDecoders | None = None
        self.default_voice = DEFAULT_VOICE
        self._model = model
        self._models_dir = models_dir
        self._allow_download = allow_download
        self._device_setting = device
        self._half_precision = half_precision
        self._instance_count = instances
        self._max_batch = max_batch
        self._batch_window_s = batch_window_ms / 1000
        self._compile_setting = compile_mode
        self._buckets = Buckets(
            batch=Buckets.batch_sizes(max_batch),
            tokens=parse_sizes(token_buckets, "token_buckets"),
            frames=parse_sizes(frame_buckets, "frame_buckets"),
        )
        self._on_batch = on_batch
        self._compile_mode = "off"
        self._batcher: VitsBatcher | None = None
        self._device = ""
        self._architecture = ""
        self._version = ""
        self._sample_rate = 0
        self._copies: ModelCopies[Any] | None = None
        self._voices: tuple[VoiceInfo, ...] = ()
        self._by_name: dict[str, _Voice] = {}

    @classmethod
    def from_settings(cls, settings: TtsSettings) -> CoquiEngine:
        """The engine the ``coqui_*`` settings (and ``device``, ``half_precision``) ask for."""
        return cls(
            settings.coqui_model,
            models_dir=settings.coqui_models_dir,
            allow_download=settings.coqui_allow_download,
            device=settings.device,
            half_precision=settings.half_precision,
            instances=settings.coqui_instances,
            max_batch=settings.coqui_max_batch,
            batch_window_ms=settings.coqui_batch_window_ms,
            compile_mode=settings.coqui_compile,
            token_buckets=settings.coqui_token_buckets,
            frame_buckets=settings.coqui_frame_buckets,
            xtts_max_streams=settings.xtts_max_streams,
        )

    @property
    def model_version(self) -> str:
        """coqui-tts's version, the architecture, the model folder and a hash of its files."""
        self._check_loaded()
        return self._version

    @property
    def sample_rate(self) -> int:
        """The model's output rate (22050 Hz for most VITS models, 24000 Hz for XTTS)."""
        self._check_loaded()
        return self._sample_rate

    @property
    def device(self) -> str:
        """The torch device the model runs on (``cpu``, ``cuda``, ``cuda:1``)."""
        self._check_loaded()
        return self._device

    @property
    def word_timings(self) -> bool:
        """VITS knows its durations; XTTS does not (and before load, neither)."""
        return self._copies is not None and self._architecture == "vits"

    @property
    def architecture(self) -> str:
        """The model's type as its config names it: ``vits`` or ``xtts``."""
        self._check_loaded()
        return self._architecture

    @property
    def compile_mode(self) -> str:
        """How VITS's forward pass runs (``off``, ``cuda-graphs``, ...; ``auto`` resolved),
        once loaded; ``off`` for XTTS."""
        self._check_loaded()
        return self._compile_mode

    @property
    def batching(self) -> bool:
        """Whether VITS sentences go through the batcher (batched or compiled), once loaded."""
        self._check_loaded()
        return self._batcher is not None

    @property
    def xtts_max_streams(self) -> int:
        """XTTS sentences decoded together per copy (1: no continuous batching)."""
        return self._xtts_max_streams

    @property
    def sentences_waiting(self) -> int:
        """VITS sentences queued for a batch that has not started yet (0 without batching)."""
        return 0 if self._batcher is None else self._batcher.waiting

    def load(self) -> None:
        """Find the model's files, load ``instances`` copies and move them to the device.

        Raises FileNotFoundError naming the path (and the setting) when the model is not
        there, ValueError for an architecture this engine does not run, RuntimeError when
        ``device`` asks for CUDA that torch cannot see.
        """
        files = locate_model(self._model, self._models_dir, self._allow_download)
        architecture = files.architecture
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"Coqui model in {files.folder} is a {architecture!r} model; the coqui engine "
                f"runs {' and '.join(ARCHITECTURES)} models"
            )
        device = torch_device(self._device_setting, torch_cuda_available())
        compile_mode = resolve_compile_mode(self._compile_setting, device)
        if architecture == "xtts":
            # transformers 5.24 hands the KV cache to the model as `cache`, a name coqui's
            # XTTS GPT does not know yet (see services.tts.engines.xtts_compat).
            bridge_xtts_cache_argument()

        from TTS.api import TTS

        synthesizers = [
            TTS(model_path=str(files.checkpoint), config_path=str(files.config), progress_bar=False)
            .to(device)
            .synthesizer
            for _ in range(self._instance_count)
        ]
        copies = [synthesizer.tts_model for synthesizer in synthesizers]
        sample_rate = int(synthesizers[0].output_sample_rate)
        voices = _model_voices(copies[0], architecture, str(files.folder))

        self._architecture = architecture
        self._device = device
        self._sample_rate = sample_rate
        self._voices = tuple(voice.info for voice in voices)
        self._by_name = {voice.info.name.casefold(): voice for voice in voices}
        english = [voice for voice in voices if speaks(voice.info, "en")]
        self.default_voice = (english or voices)[0].info.name
        self._version = (
            f"coqui-tts {version('coqui-tts')} {architecture} {files.folder.name} "
            f"sha256:{files.fingerprint()[:16]}"
        )
        self._copies = ModelCopies(copies)
        if architecture == "vits" and (self._max_batch > 1 or compile_mode != "off"):
            self._compile_mode = compile_mode
            self._batcher = self._vits_batcher(copies)
        if architecture == "xtts" and self._xtts_max_streams > 1:
            self._xtts_decoders = self._xtts_decoder_pool(copies)
        logger.info(
            "coqui %s model %s loaded on %s: %d instance(s), %d voice(s), %d Hz, "
            "batches of up to %d, compile %s",
            architecture,
            files.folder,
            device,
            len(copies),
            len(voices),
            sample_rate,
            self._max_batch if self._batcher is not None else 1,
            self._compile_mode,
        )

    def _vits_batcher(self, copies: Sequence[Any]) -> VitsBatcher:
        """One runner per copy, its stages in the compile mode, behind one batcher."""
        buckets = self._buckets
        shapes = len(buckets.batch) * len(buckets.tokens) * (1 + len(buckets.frames))
        runners = [
            VitsRunner(
                copy,
                make_stages(self._compile_mode, copy, self._graph_precision, shapes),
                buckets,
                self._precision,
            )
            for copy in copies
        ]
        return VitsBatcher(
            runners,
            max_batch=self._max_batch,
            window_s=self._batch_window_s,
            on_batch=self._on_batch,
        )

    def _xtts_decoder_pool(self, copies: Sequence[Any]) -> XttsDecoders:
        """One continuous-batching decoder per XTTS copy, its KV cache in half precision
        when the model runs in it."""
        import torch

        cache_dtype = torch.float16 if self._uses_half() else None
        return XttsDecoders(
            [
                XttsDecoder(
                    copy,
                    max_streams=self._xtts_max_streams,
                    precision=self._precision,
                    cache_dtype=cache_dtype,
                    name=f"xtts-decoder-{index}",
                )
                for index, copy in enumerate(copies)
            ]
        )

    def warm_up(self) -> None:
        """Speak one sentence on every copy, so no request pays for a first inference.

        Raises RuntimeError when the model makes audio that is not finite (a model that
        overflows in half precision does): better unready than serving noise.
        """
        voice = self._by_name[self.default_voice.casefold()]
        if self._batcher is not None:
            template = self._vits_request(_WARM_UP_TEXT, voice, 1.0)
            try:
                warmed = self._batcher.warm_up(template)
            except Exception as error:
                if self._compile_mode == "off":
                    raise
                raise RuntimeError(
                    f"coqui VITS warm-up in compile mode {self._compile_mode} failed: {error} "
                    "(CHORUS_COQUI_COMPILE=off runs it eagerly)"
                ) from error
        else:
            warmed = self._loaded_copies.warm_up(
                _WARM_UP_TEXT, lambda copy, text, sink: self._speak(copy, text, voice, 1.0, sink)
            )
        if not warmed:
            hint = " (try CHORUS_HALF_PRECISION=false)" if self._uses_half() else ""
            raise RuntimeError(f"coqui model made non-finite audio in warm-up{hint}")

    def close(self) -> None:
        """Stop the batcher, drop the model copies and give their GPU memory back."""
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._xtts_decoders is not None:
            self._xtts_decoders.close()
            self._xtts_decoders = None
        self._copies = None
        if self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def voices(self) -> Sequence[VoiceInfo]:
        """The model's voices (see the class docstring), known once it is loaded."""
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
        """Speak one sentence with ``voice`` on an idle copy of the model, feeding ``sink``.

        Blocks while every copy is busy. A sentence with no letter or digit (emoji,
        punctuation), or none the voice has a symbol for, has nothing to say and makes no
        audio: models read such text as nothing, or as noise. A sentence longer than XTTS
        speaks at once is spoken in parts (services.tts.engines.xtts_text). ``sink``
        returning False stops XTTS between chunks. ``words`` (VITS only) gets the words
        before the sentence's audio.
        """
        check_speaking_rate(speaking_rate)
        self._check_loaded()
        chosen = self._by_name.get(voice.name.casefold())
        if chosen is None:
            raise EngineError(f"coqui engine has no voice {voice.name!r}")
        if not any(character.isalnum() for character in text):
            return
        if self._architecture != "xtts" and not _vits_reads_a_word(
            self._loaded_copies.all[0], text, chosen
        ):
            return
        batcher = self._batcher
        if batcher is not None:
            speech = batcher.speak(self._vits_request(text, chosen, speaking_rate))
            model = self._loaded_copies.all[0]
            _deliver_vits(model, text, chosen, speech, sink, words)
            return
        if self._xtts_decoders is not None:
            # The copy is shared: its decoder batches this sentence with others.
            xtts_copy = self._xtts_decoders.least_loaded().model
            self._speak(xtts_copy, text, chosen, speaking_rate, sink)
            return
        with self._loaded_copies.borrow() as copy:
            self._speak(copy, text, chosen, speaking_rate, sink, words)

    def _vits_request(self, text: str, voice: _Voice, rate: float) -> VitsRequest:
        # Any copy reads the text alike: they share one config and tokenizer.
        return vits_request(self._loaded_copies.all[0], text, voice.speaker, voice.language, rate)

    def _speak(
        self,
        model: Any,
        text: str,
        voice: _Voice,
        rate: float,
        sink: ChunkSink,
        words: WordSink | None = None,
    ) -> None:
        import torch

        with torch.inference_mode(), self._precision():
            if self._architecture == "xtts":
                decoders = self._xtts_decoders
                decoder = decoders.for_model(model) if decoders is not None else None
                _speak_xtts(model, text, voice, rate, sink, decoder)
            else:
                _speak_vits(model, text, voice, rate, sink, words)

    def _uses_half(self) -> bool:
        return self._half_precision and self._device.startswith("cuda")

    def _precision(self) -> AbstractContextManager[Any]:
        """float16 autocast on CUDA when asked for: matrix work in half precision, while
        autocast keeps the reductions and exponentials VITS's flows need in float32."""
        if not self._uses_half():
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type="cuda", dtype=torch.float16)

    def _graph_precision(self) -> AbstractContextManager[Any]:
        """``_precision`` for a CUDA graph capture: autocast's cache of half-precision
        weights must not outlive the capture."""
        if not self._uses_half():
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type="cuda", dtype=torch.float16, cache_enabled=False)

    @property
    def _loaded_copies(self) -> ModelCopies[Any]:
        self._check_loaded()
        assert self._copies is not None
        return self._copies

    def _check_loaded(self) -> None:
        if self._copies is None:
            raise EngineError("coqui engine used before load() or after close()")


def _vits_reads_a_word(model: Any, text: str, voice: _Voice) -> bool:
    """Whether ``model``'s tokenizer keeps a letter or digit of ``text``: a character
    tokenizer drops the characters it has no symbol for (Chinese for an English voice),
    and VITS cannot run on the lone blank left of a sentence made of them. (A phonemizer
    says something for any letter, and costs a call: it is not asked twice.)"""
    tokenizer = model.tokenizer
    if tokenizer.use_phonemes:
        return True
    return any(
        tokenizer.characters.id_to_char(token).isalnum()
        for token in tokenizer.text_to_ids(text, language=voice.language)
    )


def _speak_vits(
    model: Any,
    text: str,
    voice: _Voice,
    rate: float,
    sink: ChunkSink,
    words: WordSink | None = None,
) -> None:
    """One sentence at once, through Coqui's own ``synthesize``: VITS has no intermediate
    audio to stream."""
    # Set on every call: the copy is borrowed, and the last caller may have changed it.
    model.length_scale = model.args.length_scale / rate
    outputs = model.synthesize(text, speaker=voice.speaker, language=voice.language)
    speech = VitsSpeech(
        audio=np.asarray(outputs["wav"], dtype=np.float32),
        frames_per_token=outputs["outputs"]["durations"].float().cpu().numpy().reshape(-1),
        tokens=tuple(int(token) for token in outputs["text_inputs"].reshape(-1).tolist()),
    )
    _deliver_vits(model, text, voice, speech, sink, words)


def _deliver_vits(
    model: Any,
    text: str,
    voice: _Voice,
    speech: VitsSpeech,
    sink: ChunkSink,
    words: WordSink | None,
) -> None:
    """A VITS sentence's words, then its audio and the pause after it, to the sinks."""
    audio = speech.audio
    made = audio.size
    if model.config.audio.get("do_trim_silence") and model.ap is not None:
        # As Coqui's Synthesizer does: cut silence longer than 0.8 s off the end.
        audio = audio[: model.ap.find_endpoint(audio)]
    if words is not None:
        for word in _vits_words(model, text, voice, speech, made):
            words(
                TimedWord(
                    word.char_start,
                    word.char_end,
                    min(word.start_sample, audio.size),
                    min(word.end_sample, audio.size),
                )
            )
    sink(np.concatenate((audio, np.zeros(_SENTENCE_PAUSE_SAMPLES, dtype=np.float32))))


def _vits_words(
    model: Any, text: str, voice: _Voice, speech: VitsSpeech, made: int
) -> list[TimedWord]:
    """The words of ``text`` placed by the durations VITS used (frames per input token)
    on its ``made`` samples."""
    tokenizer = model.tokenizer
    tokens = list(speech.tokens)
    frames = np.rint(speech.frames_per_token)
    frame_starts = np.concatenate(([0], np.cumsum(frames))).astype(np.int64)
    hop = made // max(1, int(frame_starts[-1]))
    spoken, token_of = _token_symbols(tokenizer, tokens)
    spans = word_spans(text)
    alone = []
    for start, end in spans:
        ids = tokenizer.text_to_ids(text[start:end], language=voice.language)
        alone.append(_token_symbols(tokenizer, ids)[0])
    ranges = word_symbol_ranges(align_words(spoken, alone), len(spans))

    def sample_at(token: int) -> int:
        return int(frame_starts[min(token, frame_starts.size - 1)]) * hop

    return timed_words(
        spans,
        ranges,
        start_of=lambda symbol: sample_at(token_of[symbol]),
        end_of=lambda symbol: sample_at(token_of[symbol] + 1),
    )


def _token_symbols(tokenizer: Any, tokens: list[int]) -> tuple[str, list[int]]:
    """The characters (or phonemes) ``tokens`` stand for, without the blank, begin and
    end tokens, and the index in ``tokens`` of each."""
    characters = tokenizer.characters
    special = {
        getattr(characters, name, None) for name in ("blank_id", "bos_id", "eos_id", "pad_id")
    }
    symbols: list[str] = []
    token_of: list[int] = []
    for index, token in enumerate(tokens):
        if token in special:
            continue
        symbol = characters.id_to_char(token)
        if len(symbol) == 1:
            symbols.append(symbol)
            token_of.append(index)
    return "".join(symbols), token_of


def _speak_xtts(
    model: Any,
    text: str,
    voice: _Voice,
    rate: float,
    sink: ChunkSink,
    decoder: XttsDecoder | None = None,
) -> None:
    """Chunks as XTTS's streaming decoder makes them, then the sentence's pause; with
    ``decoder``, its GPT decoding is done there, in a batch with other sentences."""
    conditioning = model.speaker_manager.speakers[voice.speaker]
    latents, embedding = conditioning["gpt_cond_latent"], conditioning["speaker_embedding"]
    assert voice.language is not None  # XTTS voices always have one
    for part in xtts_parts(text, _xtts_fits(model, voice.language)):
        if decoder is None:
            chunks = model.inference_stream(part, voice.language, latents, embedding, speed=rate)
        else:
            chunks = xtts_audio(decoder, part, voice.language, latents, embedding, speed=rate)
        with contextlib.closing(chunks):
            for chunk in chunks:
                # Copied: on the CPU the chunk is a view into a tensor XTTS goes on using.
                if not sink(chunk.detach().float().cpu().numpy().copy()):
                    return
    sink(np.zeros(_SENTENCE_PAUSE_SAMPLES, dtype=np.float32))


def _xtts_fits(model: Any, language: str) -> Callable[[str], bool]:
    """Whether a text is one XTTS speaks at once in ``language``: within the language's
    character limit (checked first: the tokenizer warns past it) and its token limit,
    read as ``inference_stream`` reads it (stripped, lower case)."""
    language = language.split("-")[0]
    tokenizer = model.tokenizer
    char_limit = int(tokenizer.char_limits.get(language, _XTTS_DEFAULT_CHAR_LIMIT))
    max_tokens = int(model.args.gpt_max_text_tokens)

    def fits(text: str) -> bool:
        sentence = text.strip().lower()
        return (
            len(sentence) <= char_limit
            and len(tokenizer.encode(sentence, lang=language)) < max_tokens
        )

    return fits


def _model_voices(model: Any, architecture: str, folder: str) -> list[_Voice]:
    """One voice per speaker (and per language, for a multilingual model)."""
    manager = getattr(model, "speaker_manager", None)
    speakers: list[str | None] = list(manager.speaker_names) if manager is not None else []
    if architecture == "xtts" and not speakers:
        raise ValueError(
            f"XTTS model in {folder} has no speakers_xtts.pth: its built-in speakers are "
            "the voices the coqui engine offers"
        )
    languages: list[str] = list(model.language_manager.language_names)
    multilingual = len(languages) > 1
    voices: list[_Voice] = []
    seen: set[str] = set()
    for speaker in speakers or [None]:
        for language in languages:
            base = speaker or DEFAULT_VOICE
            name = f"{base}/{language}" if multilingual else base
            if name.casefold() in seen:
                continue
            seen.add(name.casefold())
            voices.append(
                _Voice(
                    info=VoiceInfo(name=name, languages=(language,)),
                    speaker=speaker,
                    # A single-language VITS takes no language; XTTS always needs one.
                    language=language if multilingual or architecture == "xtts" else None,
                )
            )
    return voices
