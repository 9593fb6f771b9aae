"""Cutting sentences into pieces: short first, at clause punctuation, then bounded."""

from __future__ import annotations

import pytest

from services.tts.engines.sentence_pieces import (
    FIRST_PIECE_MAX_WORDS,
    PIECE_MAX_WORDS,
    Piece,
    split_pieces,
)


def test_pieces_end_at_clause_punctuation_which_they_keep_as_marks() -> None:
    assert split_pieces("Well; I think so: yes, fine.") == [
        Piece("Well", ";"),
        Piece("I think so", ":"),
        Piece("yes", ","),
        Piece("fine", "."),
    ]


def test_a_short_first_clause_is_the_first_piece() -> None:
    assert split_pieces("Hello there, thanks for calling.") == [
        Piece("Hello there", ","),
        Piece("thanks for calling", "."),
    ]


def test_a_long_first_clause_is_cut_before_a_phrase_within_a_few_words() -> None:
    assert split_pieces("Chorus turns text into speech that streams out as it is made.") == [
        Piece("Chorus turns text", "", flows_on=True),
        Piece("into speech that streams out as it is made", "."),
    ]


def test_without_a_phrase_start_the_first_piece_is_cut_at_its_limit() -> None:
    pieces = split_pieces("Seven quick brown foxes jumped merrily today.")
    assert pieces[0] == Piece("Seven quick brown foxes", "", flows_on=True)
    assert len(pieces[0].text.split()) == FIRST_PIECE_MAX_WORDS


def test_no_cut_leaves_a_one_word_fragment() -> None:
    assert split_pieces("This is Chorus speaking now.") == [
        Piece("This is Chorus speaking now", ".")
    ]


def test_later_long_clauses_are_bounded() -> None:
    words = " ".join(f"w{i}" for i in range(60))
    pieces = split_pieces(f"Hi, {words}.")
    assert [len(piece.text.split()) for piece in pieces] == [1, 20, 20, 20]
    assert all(len(piece.text.split()) <= PIECE_MAX_WORDS for piece in pieces)
    assert [piece.flows_on for piece in pieces] == [False, True, True, False]
    assert " ".join(piece.text for piece in pieces[1:]) == words


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("It costs 3,000 dollars.", [Piece("It costs 3,000 dollars", ".")]),
        ("We meet at 10:30 today.", [Piece("We meet at 10:30 today", ".")]),
        ("A well-known fact.", [Piece("A well-known fact", ".")]),
        ("Wait \u2014 really?!", [Piece("Wait", ","), Piece("really", "?")]),
        ("Yes - or no.", [Piece("Yes", ","), Piece("or no", ".")]),
        ("Well\u2026 maybe.", [Piece("Well", "."), Piece("maybe", ".")]),
        ('He said, "hello."', [Piece("He said", ","), Piece('"hello', ".")]),
        ("No full stop", [Piece("No full stop", "")]),
    ],
)
def test_punctuation_inside_words_and_numbers_does_not_cut(
    sentence: str, expected: list[Piece]
) -> None:
    assert split_pieces(sentence) == expected


def test_nothing_to_say_is_no_piece() -> None:
    assert split_pieces("... \u2014 !") == []
    assert split_pieces("") == []
