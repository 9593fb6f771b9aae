"""Shaping the edges of separately made pieces so that they join without clicks or gaps."""

from __future__ import annotations

import numpy as np

from services.tts.engines.base import PcmChunk
from services.tts.engines.piece_joins import FADE_MS, KEPT_SILENCE_MS, Edge, join_edges

RATE = 22050


def tone(seconds: float, hz: float = 220.0) -> PcmChunk:
    n = np.arange(round(seconds * RATE))
    wave: PcmChunk = (0.5 * np.sin(2 * np.pi * hz * n / RATE + 1.0)).astype(np.float32)
    return wave


def silence(seconds: float) -> PcmChunk:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def test_every_piece_fades_in_and_out_so_joins_cannot_click() -> None:
    raw = tone(0.5)  # starts and ends far from zero: joined raw, it would click
    assert abs(raw[0]) > 0.3
    shaped = join_edges(raw, RATE, Edge.PAUSE, Edge.PAUSE)
    assert shaped.size == raw.size
    fade = RATE * FADE_MS // 1000
    assert abs(shaped[0]) < 0.01
    assert abs(shaped[-1]) < 0.01
    # Only the edges change, and the ramp never jumps by more than the tone itself does.
    np.testing.assert_array_equal(shaped[fade:-fade], raw[fade:-fade])
    assert np.abs(np.diff(shaped)).max() <= np.abs(np.diff(raw)).max() + 1e-6


def test_edges_inside_a_piece_are_left_as_they_are() -> None:
    raw = np.concatenate((silence(0.04), tone(0.5), silence(0.2)))
    np.testing.assert_array_equal(join_edges(raw, RATE, Edge.INSIDE, Edge.INSIDE), raw)
    fade = RATE * FADE_MS // 1000
    first_window = join_edges(tone(0.3), RATE, Edge.PAUSE, Edge.INSIDE)
    assert abs(first_window[0]) < 0.01
    np.testing.assert_array_equal(first_window[fade:], tone(0.3)[fade:])
    last_window = join_edges(raw, RATE, Edge.INSIDE, Edge.FLOW)
    assert last_window[:100].tolist() == raw[:100].tolist()
    assert last_window.size < raw.size


def test_at_punctuation_the_models_pause_is_kept() -> None:
    raw = np.concatenate((silence(0.04), tone(0.5), silence(0.22)))
    shaped = join_edges(raw, RATE, Edge.PAUSE, Edge.PAUSE)
    assert shaped.size == raw.size


def test_at_a_cut_between_words_the_silence_is_trimmed_to_a_word_gap() -> None:
    raw = np.concatenate((silence(0.04), tone(0.5), silence(0.2)))
    kept = RATE * KEPT_SILENCE_MS // 1000
    frame = RATE * 5 // 1000  # silence is found by 5 ms frames: at most one more is kept

    end_trimmed = join_edges(raw, RATE, Edge.PAUSE, Edge.FLOW)
    assert leading_zeros(end_trimmed) == round(0.04 * RATE)
    assert kept <= leading_zeros(end_trimmed[::-1]) <= kept + frame

    start_trimmed = join_edges(raw, RATE, Edge.FLOW, Edge.PAUSE)
    assert kept <= leading_zeros(start_trimmed) <= kept + frame
    assert leading_zeros(start_trimmed[::-1]) == round(0.2 * RATE)


def leading_zeros(audio: PcmChunk) -> int:
    return int(np.flatnonzero(audio)[0])


def test_silence_alone_is_left_whole() -> None:
    raw = silence(0.3)
    assert join_edges(raw, RATE, Edge.FLOW, Edge.FLOW).size == raw.size


def test_a_piece_shorter_than_two_fades_is_faded_without_error() -> None:
    shaped = join_edges(tone(0.004), RATE, Edge.PAUSE, Edge.PAUSE)
    assert shaped.size == round(0.004 * RATE)
    assert abs(shaped[0]) < 0.1
    assert abs(shaped[-1]) < 0.1
