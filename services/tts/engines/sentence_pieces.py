"""Cutting a sentence into pieces that an engine speaks one after the other.

A model that makes a whole input at once (Piper's VITS) can only send audio once a piece
is made, so the first piece sets the time to first audio. Pieces end where a speaker
pauses anyway, at clause punctuation (``, ; : — …``), and the first piece is kept to a few
words: a longer first clause is cut between words, before a word that starts a phrase
("Chorus turns text | into speech that streams out as it is made."). Later pieces may be
longer, since earlier audio is playing while they are made, but are still bounded, which
bounds the memory and the time of one model call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FIRST_PIECE_MAX_WORDS = 4
"""The first piece's most words: about a second of speech, made in tens of ms."""

PIECE_MAX_WORDS = 20
"""Any later piece's most words: about six seconds of speech."""

MIN_PIECE_WORDS = 2
"""Fewest words on either side of a cut between words: no one-word fragments."""

# Words before which an English phrase may start (conjunctions, relative words,
# prepositions): where a cut between words sounds least abrupt. Ambiguous words (so, as,
# like, yet) are left out. In other languages no word matches and cuts fall at the limit.
# fmt: off
_PHRASE_STARTS = frozenset({
    "and", "but", "or", "nor", "because", "although", "though", "while", "whereas", "when",
    "whenever", "where", "wherever", "if", "unless", "until", "since", "after", "before",
    "that", "which", "who", "whom", "whose", "what", "how", "why", "than", "to", "of", "in",
    "on", "at", "for", "with", "without", "from", "into", "onto", "about", "over", "under",
    "through", "between", "during", "by", "against", "among", "across", "toward", "towards",
    "within",
})
# fmt: on

# Clause ends: , ; : . ! ? or an ellipsis followed by a space or the end, after any closing
# quotes (not "3,000" or "10:30"), dashes and a spaced hyphen.
_CLAUSE_END = re.compile(
    r"(?P<mark>[,;:]+|[.!?\u2026]+)(?=[\"'\u201d\u2019)\]]*(?:\s|$))"
    r"|\s*(?P<dash>[\u2013\u2014]+|(?<=\s)--?(?=\s))\s*"
)
_WORD = re.compile(r"\S+")
# Quotes and brackets around a word, which do not change what the word is.
_QUOTES = "\"'()[]\u201c\u201d\u2018\u2019"
# Marks as the models know them (Piper's phoneme_id_map holds , ; : . ! ?).
_MARKS = {"\u2026": ".", "\u2013": ",", "\u2014": ",", "-": ","}


@dataclass(frozen=True)
class Piece:
    """A run of words spoken in one model call."""

    text: str
    """The words, without the punctuation that ends them."""
    mark: str
    """The punctuation that ends the piece (one of , ; : . ! ?), or "" for none."""
    flows_on: bool = False
    """Cut between words with no punctuation: the next piece goes on with the phrase."""
    span: tuple[int, int] = field(default=(0, 0), compare=False)
    """Where its words are in the sentence: [first word's start, last word's end)."""


def split_pieces(sentence: str) -> list[Piece]:
    """The pieces of ``sentence``, in order; none when it has no letter or digit."""
    pieces: list[Piece] = []
    for start, end, mark in _clauses(sentence):
        limit = FIRST_PIECE_MAX_WORDS if not pieces else PIECE_MAX_WORDS
        runs = [run.span() for run in _WORD.finditer(sentence, start, end)]
        words = [sentence[a:b] for a, b in runs]
        while len(words) > limit and len(words) - limit >= MIN_PIECE_WORDS:
            cut = _phrase_break(words, limit)
            span = (runs[0][0], runs[cut - 1][1])
            pieces.append(Piece(" ".join(words[:cut]), "", flows_on=True, span=span))
            words, runs = words[cut:], runs[cut:]
            limit = PIECE_MAX_WORDS
        pieces.append(Piece(" ".join(words), mark, span=(runs[0][0], runs[-1][1])))
    return pieces


def _clauses(sentence: str) -> list[tuple[int, int, str]]:
    """(start, end, mark) of each clause that has something to say: its text is
    ``sentence[start:end]``, without the whitespace around it."""
    clauses: list[tuple[int, int, str]] = []
    start = 0
    for end in _CLAUSE_END.finditer(sentence):
        punctuation = end.group("mark") or end.group("dash") or ""
        mark = _MARKS.get(punctuation[0], punctuation[0])
        _add(clauses, sentence, start, end.start(), mark)
        start = end.end()
    _add(clauses, sentence, start, len(sentence), "")
    return clauses


def _add(
    clauses: list[tuple[int, int, str]], sentence: str, start: int, end: int, mark: str
) -> None:
    text = sentence[start:end]
    if any(character.isalnum() for character in text):
        stripped = text.strip()
        first = start + text.index(stripped)
        clauses.append((first, first + len(stripped), mark))
    elif clauses and mark and not clauses[-1][2]:
        # Punctuation after nothing to say ends the clause before: "Wait (please) ..."
        clauses[-1] = (clauses[-1][0], clauses[-1][1], mark)


def _phrase_break(words: list[str], limit: int) -> int:
    """Where to cut ``words`` (more than ``limit``): the number of words before the cut.

    The last phrase start within the limit that leaves both sides at least
    MIN_PIECE_WORDS long; else the limit itself.
    """
    for cut in range(limit, MIN_PIECE_WORDS - 1, -1):
        if words[cut].strip(_QUOTES).casefold() in _PHRASE_STARTS:
            return cut
    return limit
