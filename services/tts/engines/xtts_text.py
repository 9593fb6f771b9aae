"""Cutting a sentence into parts XTTS speaks well: within its character limit for the
language, and fewer text tokens than its GPT takes.

XTTS reads at most ``gpt_max_text_tokens`` (402 for XTTS v2) tokens at once and fails on
more, and past the character limit of a language (250 for English) its audio may be cut
short; a sentence from a language model can run past both (a long list without a full
stop, a URL, a long number spelled out). Such a sentence is cut, between words, into the
longest parts that fit, preferring a cut after a clause mark; a single word too long
alone is cut where it must be. A sentence that fits is left whole.
"""

from __future__ import annotations

from collections.abc import Callable

_CLAUSE_MARKS = (",", ";", ":", ".", "!", "?", "\u2026", "\u2014", "\u2013")


def xtts_parts(text: str, fits: Callable[[str], bool]) -> list[str]:
    """``text`` as parts that each ``fits``, in order; ``[text]`` when it fits whole."""
    if fits(text):
        return [text]
    parts: list[str] = []
    words = text.split()
    while words:
        taken = _longest_fitting(len(words), _words_fit(words, fits))
        if taken == 0:  # one word too long alone
            parts.extend(_word_pieces(words[0], fits))
            words = words[1:]
            continue
        if taken < len(words):
            taken = _after_a_clause(words, taken)
        parts.append(" ".join(words[:taken]))
        words = words[taken:]
    return parts


def _words_fit(words: list[str], fits: Callable[[str], bool]) -> Callable[[int], bool]:
    """Whether the first n ``words`` fit, as a function of n."""
    return lambda count: fits(" ".join(words[:count]))


def _characters_fit(word: str, fits: Callable[[str], bool]) -> Callable[[int], bool]:
    """Whether the first n characters of ``word`` fit, as a function of n."""
    return lambda count: fits(word[:count])


def _longest_fitting(most: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [0, most] with ``fits(n)`` (0 when even 1 does not fit), for a
    ``fits`` true up to some n and false beyond: a binary search, so a long sentence
    costs a few tokenizations a part, not one a word."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _after_a_clause(words: list[str], taken: int) -> int:
    """Where to cut after the first ``taken`` words (which fit): after the last of them
    that ends a clause, if it is in their second half, else after all of them."""
    for end in range(taken, taken // 2, -1):
        if words[end - 1].endswith(_CLAUSE_MARKS):
            return end
    return taken


def _word_pieces(word: str, fits: Callable[[str], bool]) -> list[str]:
    """``word`` cut into the longest runs of characters that fit (one at least)."""
    pieces: list[str] = []
    while word:
        taken = max(1, _longest_fitting(len(word), _characters_fit(word, fits)))
        pieces.append(word[:taken])
        word = word[taken:]
    return pieces
