from services.common.sentences import split_sentences


def test_splits_on_sentence_ends_and_blank_lines() -> None:
    text = "Hello there. How are you?  Fine!\n\nA new paragraph"
    assert split_sentences(text) == ["Hello there.", "How are you?", "Fine!", "A new paragraph"]


def test_text_without_an_end_is_one_sentence() -> None:
    assert split_sentences("  no full stop here  ") == ["no full stop here"]


def test_blank_text_has_no_sentences() -> None:
    assert split_sentences(" \n\t ") == []


def test_decimal_points_do_not_split() -> None:
    assert split_sentences("It costs 3.50 today.") == ["It costs 3.50 today."]
