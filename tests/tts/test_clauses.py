"""Fragments cut into clauses as soon as each is complete."""

from __future__ import annotations

import pytest

from services.tts.clauses import Clause, ClauseAssembler

TOKENS = ["Hello", " there", ",", " how", " are", " you", "?", " I", " have", " 3.5", " apples"]


def test_a_clause_ends_at_a_mark_once_white_space_follows_it() -> None:
    assembler = ClauseAssembler(1000)
    clauses = [clause for token in TOKENS for clause in assembler.add(token)]
    assert clauses == [Clause("Hello there,", 0), Clause("how are you?", 13)]
    assert assembler.flush() == Clause("I have 3.5 apples", 26)
    assert assembler.flush() is None


def test_every_character_is_in_one_clause_at_its_offset() -> None:
    text = "First line\nSecond: a list; then — a dash. And a question? Yes! The end"
    assembler = ClauseAssembler(1000)
    clauses = [clause for character in text for clause in assembler.add(character)]
    last = assembler.flush()
    assert last is not None
    clauses.append(last)
    for clause in clauses:
        assert text[clause.start : clause.start + len(clause.text)] == clause.text
    assert " ".join(clause.text for clause in clauses).split() == text.split()


def test_drop_forgets_the_pending_text_and_offsets_go_on() -> None:
    assembler = ClauseAssembler(1000)
    assert assembler.add("Never mind this") == []
    assert assembler.drop() == len("Never mind this")
    assert assembler.add("Now this. ") == [Clause("Now this.", 15)]


def test_more_pending_text_than_the_limit_is_refused() -> None:
    assembler = ClauseAssembler(10)
    assembler.add("0123456789")
    with pytest.raises(OverflowError, match="over the limit of 10"):
        assembler.add("x")
