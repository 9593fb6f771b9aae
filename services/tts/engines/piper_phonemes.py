"""Piper's input for a piece of text: espeak-ng's IPA phonemes, then their ids.

espeak-ng leaves punctuation out of its phonemes, while Piper's voices were trained with
it (a comma is a pause, a question mark a rising end), so the piece's mark is put back
after its phonemes, as Piper's own phonemizer does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from services.tts.engines.espeak_library import EspeakLibrary
from services.tts.engines.piper_voice import BOS, EOS, PAD
from services.tts.engines.sentence_pieces import Piece

# espeak-ng wraps a word it reads in another language in that language's code: "(fr)".
_LANGUAGE_SWITCH = re.compile(r"\([^)]*\)")
# Marks that end a clause but not the sentence: Piper puts a space (a word gap) after them.
_CLAUSE_MARKS = frozenset(",;:")


def piece_phonemes(library: EspeakLibrary, espeak_voice: str, piece: Piece) -> str:
    """The phonemes of ``piece`` as Piper reads them: IPA from espeak-ng's
    ``espeak_voice``, without language switches, ending with the piece's mark
    (``mark_phonemes``)."""
    return text_phonemes(library, espeak_voice, piece.text) + mark_phonemes(piece)


def text_phonemes(library: EspeakLibrary, espeak_voice: str, text: str) -> str:
    """The phonemes of ``text``'s words, clause after clause, without language switches
    (also what one word says alone, to find it again in its piece's phonemes)."""
    return _LANGUAGE_SWITCH.sub("", " ".join(library.phonemes(text, espeak_voice)))


def mark_phonemes(piece: Piece) -> str:
    """What ends ``piece``'s phonemes: its mark, and a space after a clause mark."""
    return piece.mark + (" " if piece.mark in _CLAUSE_MARKS else "")


def phoneme_ids(phonemes: str, table: Mapping[str, tuple[int, ...]]) -> npt.NDArray[np.int64]:
    """The model's input ids: ``^``, then for each code point of the NFD-decomposed
    phonemes its ids followed by the pad ``_``, then ``$``.

    Code points that ``table`` (the voice's phoneme_id_map) does not hold are skipped, as
    Piper skips them: the voice was never trained on them.
    """
    return located_phoneme_ids(phonemes, table)[0]


def located_phoneme_ids(
    phonemes: str, table: Mapping[str, tuple[int, ...]]
) -> tuple[npt.NDArray[np.int64], str, list[int]]:
    """``phoneme_ids``, with the NFD-decomposed phonemes and where each of their code
    points' ids start: code point ``i`` is ids ``[starts[i], starts[i + 1])`` (its own and
    the pad after it; none for one that is skipped). ``starts`` has one entry more than
    the code points: where the ``$`` starts."""
    pad = table[PAD]
    ids: list[int] = list(table[BOS])
    decomposed = unicodedata.normalize("NFD", phonemes)
    starts: list[int] = []
    for phoneme in decomposed:
        starts.append(len(ids))
        known = table.get(phoneme)
        if known is not None:
            ids.extend(known)
            ids.extend(pad)
    starts.append(len(ids))
    ids.extend(table[EOS])
    return np.array([ids], dtype=np.int64), decomposed, starts
