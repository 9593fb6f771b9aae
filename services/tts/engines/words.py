"""Word timings from what engines know: where each word starts (espeak's word events) or how
long each input symbol lasts (the durations of a VITS, piper's and Coqui's).

Both kinds end in TimedWords for the words of the sentence (``word_spans``), every word
exactly once: an engine's own notion of a word may differ (espeak reports "10:30" as two
words and ``$5.50`` as five, and phonemises "as it is" as one), so its marks are mapped
onto those words rather than passed on as they come.

- ``WordClock`` takes marks as a synthesis reports them (a word starts at this character
  and this sample; speech pauses here) and hands each word on once it has ended.
- ``align_words`` maps the symbols a model spoke (phonemes, characters) back to the
  words they came from, by aligning them with each word's own symbols.

A word an engine gives no mark or symbol of its own for is placed as well as can be
(see WordClock and ``timed_words``): that part is approximate.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Callable, Sequence

from services.tts.engines.base import TimedWord, WordSink, word_spans

IGNORED_SYMBOLS = frozenset("\u02c8\u02cc\u02d0\u02d1\u203f\u0361")
"""Marks that change how a phoneme is said but say nothing themselves (stress, length,
ties): left out when symbols are aligned, so that a word said with other stress in its
sentence than alone still matches."""


class WordClock:
    """Turns a synthesis's marks into the TimedWords of its sentence, each once it ends.

    A word starts at the first mark inside it and ends at the next mark outside it (the
    next word's start, or a pause). Words with no mark of their own were said either
    after a mark outside every word (espeak-ng marks "- and" at the dash: that mark is
    the first one's start) or together with the word before (espeak-ng marks "as it is",
    which it says as one word, at "as": that word's time is shared out among them by
    their length in characters, an approximation). So a word is handed on once the next
    marked word starts. ``pending_start`` is where the earliest word not yet handed on
    starts: audio from there on must wait.
    """

    def __init__(self, text: str, words: WordSink) -> None:
        self._spans = word_spans(text)
        self._starts = [start for start, _ in self._spans]
        self._words = words
        self._next = 0  # the first word not yet handed on
        self._open: tuple[int, int] | None = None  # (word, start) being said
        # (word, start, end, where the stretch it was said in ended in the text) said
        self._ended: tuple[int, int, int, int] | None = None
        self._stray: int | None = None  # a mark outside words since the last word ended

    @property
    def pending_start(self) -> int | None:
        """The start sample of the earliest word not yet handed on (or of a mark that may
        start the next one), None when there is none."""
        if self._ended is not None:
            return self._ended[1]
        if self._open is not None:
            return self._open[1]
        return self._stray

    def word(self, char: int, sample: int) -> None:
        """The engine starts saying what is at code point ``char`` at ``sample``."""
        index = bisect.bisect_right(self._starts, char) - 1
        if index < 0 or char >= self._spans[index][1]:
            self.pause(sample, char)
            if self._stray is None:
                self._stray = sample
            return
        if self._open is not None and self._open[0] == index:
            return
        self.pause(sample, char)
        if index >= self._next:
            self._settle(index, sample)
            self._open = (index, sample)

    def pause(self, sample: int, char: int | None = None) -> None:
        """Speech stops at ``sample`` (a clause's end, at code point ``char`` when known):
        the word being said has ended."""
        if self._open is None:
            return
        index, start = self._open
        self._open = None
        self._ended = (
            index,
            start,
            sample,
            len(self._spans) if char is None else self._word_at(char),
        )

    def finish(self, sample: int) -> None:
        """The sentence's audio ended at ``sample``: hand on every word not yet handed on."""
        self.pause(sample)
        self._settle(len(self._spans), sample)

    def _settle(self, index: int, sample: int) -> None:
        """Hand on every word before ``index``, which starts at ``sample``."""
        ended, self._ended = self._ended, None
        stray, self._stray = self._stray, None
        if ended is not None:
            said, start, end, limit = ended
            stop = min(index, limit)
            if stray is None and said + 1 < stop:
                self._share(said, stop, start, end)
            else:
                self._emit(said, start, end)
        while self._next < index:
            # Unmarked, after a stray mark (or with no word to share): from that mark,
            # the others zero-length where the next word starts.
            begin = sample if stray is None else min(stray, sample)
            stray = None
            self._emit(self._next, begin, sample)

    def _word_at(self, char: int) -> int:
        """The first word that starts at or after code point ``char``."""
        return bisect.bisect_left(self._starts, char)

    def _share(self, first: int, stop: int, start: int, end: int) -> None:
        """Words ``first`` to ``stop`` (not included) said in one stretch: shared out."""
        lengths = [b - a for a, b in self._spans[first:stop]]
        total = sum(lengths)
        done = 0
        for index, length in zip(range(first, stop), lengths, strict=True):
            begin = start + (end - start) * done // total
            done += length
            self._emit(index, begin, start + (end - start) * done // total)

    def _emit(self, index: int, start: int, end: int) -> None:
        char_start, char_end = self._spans[index]
        self._words(TimedWord(char_start, char_end, start, max(start, end)))
        self._next = index + 1


def align_words(spoken: str, words: Sequence[str], separator: str = " ") -> list[int | None]:
    """Which word each symbol of ``spoken`` says: an index into ``words``, or None for
    separators and for what says no word (pauses, punctuation).

    ``spoken`` is what a model was given for some words (espeak's phonemes of a clause,
    a tokenizer's characters), ``words`` each word's own symbols, made alone. The two
    differ where context changes a word (stress, reduced vowels, words run together:
    espeak-ng says "as it is" as one phoneme word): symbols are matched in order,
    ignoring separators and IGNORED_SYMBOLS, and each symbol left unmatched goes with the
    matched symbols beside it in its own separator-delimited group. The result never
    goes back to an earlier word.
    """
    spoken_keys, spoken_at = _keys(spoken, separator)
    target: list[str] = []
    owner: list[int] = []
    for index, word in enumerate(words):
        keys, _ = _keys(word, separator)
        target.extend(keys)
        owner.extend([index] * len(keys))
    labels: list[int | None] = [None] * len(spoken)
    matcher = difflib.SequenceMatcher(None, spoken_keys, target, autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            labels[spoken_at[block.a + offset]] = owner[block.b + offset]
    _fill_groups(spoken, labels, separator, len(words))
    latest = -1
    for position, label in enumerate(labels):
        if label is not None:
            latest = max(latest, label)
            labels[position] = latest
    return labels


def _keys(symbols: str, separator: str) -> tuple[list[str], list[int]]:
    """The symbols that take part in matching, and where each is in ``symbols``."""
    keys: list[str] = []
    at: list[int] = []
    for position, symbol in enumerate(symbols):
        if symbol not in separator and symbol not in IGNORED_SYMBOLS:
            keys.append(symbol)
            at.append(position)
    return keys, at


def _fill_groups(spoken: str, labels: list[int | None], separator: str, count: int) -> None:
    """Give unmatched symbols the label of the next matched one in their group (a stress
    mark goes with the vowel after it), else of the one before. Groups with no match at
    all go, in order, to the words between their neighbours that got no symbols (espeak-ng
    says "a" one way in a sentence, another alone), else with the group before them."""
    groups: list[list[int]] = [[]]
    for position, symbol in enumerate(spoken):
        if symbol in separator:
            groups.append([])
        else:
            groups[-1].append(position)
    groups = [group for group in groups if group]
    unmatched: list[list[int]] = []
    previous = -1
    for group in groups:
        if all(labels[position] is None for position in group):
            unmatched.append(group)
            continue
        following: int | None = None
        for position in reversed(group):
            if labels[position] is None:
                labels[position] = following
            else:
                following = labels[position]
        before: int | None = None
        for position in group:
            if labels[position] is None:
                labels[position] = before
            else:
                before = labels[position]
        first = labels[group[0]]
        assert first is not None
        _place(unmatched, labels, previous, first)
        unmatched = []
        last = labels[group[-1]]
        assert last is not None
        previous = last
    _place(unmatched, labels, previous, count)


def _place(groups: list[list[int]], labels: list[int | None], before: int, after: int) -> None:
    """Label unmatched ``groups`` lying between words ``before`` and ``after``."""
    if not groups:
        return
    free = list(range(before + 1, after))
    for index, group in enumerate(groups):
        if free:
            label = free[min(index, len(free) - 1)]
        elif before >= 0:
            label = before
        else:
            label = after
        for position in group:
            labels[position] = label


def word_symbol_ranges(labels: Sequence[int | None], count: int) -> list[tuple[int, int] | None]:
    """For each of ``count`` words, the [first, last + 1) positions of its symbols in
    ``labels`` (from ``align_words``), None for a word with no symbol."""
    ranges: list[tuple[int, int] | None] = [None] * count
    for position, label in enumerate(labels):
        if label is None:
            continue
        known = ranges[label]
        ranges[label] = (position, position + 1) if known is None else (known[0], position + 1)
    return ranges


def timed_words(
    spans: Sequence[tuple[int, int]],
    ranges: Sequence[tuple[int, int] | None],
    start_of: Callable[[int], int],
    end_of: Callable[[int], int],
    offset: int = 0,
) -> list[TimedWord]:
    """TimedWords of the words at ``spans`` (code points in the sentence) from their
    symbol ``ranges``: a word starts at ``start_of`` its first symbol and ends at
    ``end_of`` its last (samples from the start of what the symbols were spoken in),
    plus ``offset``; a word with no symbols is zero-length where the next one starts."""
    timed: list[TimedWord | None] = []
    for (char_start, char_end), symbols in zip(spans, ranges, strict=True):
        if symbols is None:
            timed.append(None)
            continue
        start = start_of(symbols[0]) + offset
        end = max(start, end_of(symbols[1] - 1) + offset)
        timed.append(TimedWord(char_start, char_end, start, end))
    result: list[TimedWord] = []
    for index, word in enumerate(timed):
        if word is not None:
            result.append(word)
            continue
        later = next((w.start_sample for w in timed[index + 1 :] if w is not None), None)
        at = later if later is not None else (result[-1].end_sample if result else offset)
        char_start, char_end = spans[index]
        result.append(TimedWord(char_start, char_end, at, at))
    return result
