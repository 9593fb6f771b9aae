"""The process's libespeak-ng as the piper engine uses it: IPA phonemes, clause by clause."""

from __future__ import annotations

import pytest

from services.common.errors import EngineError
from services.tts.engines.espeak_library import load_espeak_library

STRESS, LONG = "\u02c8", "\u02d0"  # IPA's primary stress and length marks


def test_phonemes_come_per_clause_in_ipa_without_the_punctuation() -> None:
    clauses = load_espeak_library().phonemes("Hello there, world!", "en-us")
    assert clauses == [f"həl{STRESS}oʊ ð{STRESS}ɛɹ", f"w{STRESS}ɜ{LONG}ld"]


def test_the_voice_chooses_the_pronunciation() -> None:
    library = load_espeak_library()
    assert library.phonemes("tomato", "en-us") != library.phonemes("tomato", "en")


def test_a_nul_in_the_text_does_not_cut_it_short() -> None:
    assert load_espeak_library().phonemes("one\0two", "en-us") == [f"w{STRESS}ʌn t{STRESS}u{LONG}"]


def test_an_unknown_voice_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="selecting voice 'xx-nowhere'"):
        load_espeak_library().phonemes("Hello.", "xx-nowhere")


def test_the_library_is_one_per_process() -> None:
    assert load_espeak_library() is load_espeak_library(chunk_ms=200)
