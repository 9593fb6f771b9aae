"""Text arriving in fragments (a language model's reply, token by token), cut into clauses
as soon as each is complete, so that speech can start before the reply is finished.

A clause is complete at a sentence end (. ! ? and their CJK forms) or a clause mark
(, ; : and dashes) followed by white space, or at a line break: only the white space
after a mark says it ends the clause ("3.5" and "U.S.A" go on; "Dr. Smith" is cut early,
which costs a pause, no words). What is left waits for more text, a flush or the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A mark followed by white space, or a line break: where a clause may end.
_CLAUSE_END = re.compile(
    r"[.!?,;:\u2013\u2014\u3002\uff01\uff1f\u3001\uff0c]+[\"')\]\u201d\u2019]*\s|\n"
)


@dataclass(frozen=True)
class Clause:
    """Complete text to speak, and where it starts in all the text received."""

    text: str
    start: int
    """Offset of ``text``'s first character (code points) in the text received."""


class ClauseAssembler:
    """Collects fragments; hands out each clause once it is complete."""

    def __init__(self, max_pending_chars: int) -> None:
        self._max_pending_chars = max_pending_chars
        self._pending = ""
        self._pending_start = 0

    @property
    def received(self) -> int:
        """Characters received so far."""
        return self._pending_start + len(self._pending)

    @property
    def pending_chars(self) -> int:
        """Characters received and not yet handed out."""
        return len(self._pending)

    def add(self, fragment: str) -> list[Clause]:
        """Take ``fragment``; the clauses it completes. OverflowError when more text would
        be pending than the limit (the caller sends faster than it can be spoken)."""
        if len(self._pending) + len(fragment) > self._max_pending_chars:
            raise OverflowError(
                f"{len(self._pending) + len(fragment)} characters would be waiting to be "
                f"spoken, over the limit of {self._max_pending_chars}"
            )
        self._pending += fragment
        clauses = []
        while (end := _CLAUSE_END.search(self._pending)) is not None:
            clause = self._take(end.end())
            if clause is not None:
                clauses.append(clause)
        return clauses

    def flush(self) -> Clause | None:
        """Everything pending, complete or not (None when only white space is)."""
        return self._take(len(self._pending))

    def drop(self) -> int:
        """Forget the pending text (an interrupt); how many characters were dropped."""
        dropped = len(self._pending)
        self._take(dropped)
        return dropped

    def _take(self, length: int) -> Clause | None:
        text, self._pending = self._pending[:length], self._pending[length:]
        start = self._pending_start
        self._pending_start += length
        stripped = text.strip()
        if not stripped:
            return None
        return Clause(stripped, start + (len(text) - len(text.lstrip())))
