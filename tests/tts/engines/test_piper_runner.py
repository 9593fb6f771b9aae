"""How a piece's latent frames are cut into windows for the decoder."""

from __future__ import annotations

import pytest

from services.tts.engines.piper_runner import FIRST_WINDOW_FRAMES, MIN_REST_FRAMES, window_bounds


@pytest.mark.parametrize("frames", [FIRST_WINDOW_FRAMES + MIN_REST_FRAMES, 100, 2000])
def test_a_sentences_first_piece_comes_in_a_short_window_then_the_rest(frames: int) -> None:
    assert window_bounds(frames, lead=True) == [
        (0, FIRST_WINDOW_FRAMES),
        (FIRST_WINDOW_FRAMES, frames),
    ]


@pytest.mark.parametrize(
    "frames", [1, FIRST_WINDOW_FRAMES, FIRST_WINDOW_FRAMES + MIN_REST_FRAMES - 1]
)
def test_a_first_piece_too_short_for_two_windows_comes_whole(frames: int) -> None:
    assert window_bounds(frames, lead=True) == [(0, frames)]


@pytest.mark.parametrize("frames", [1, 100, 2000])
def test_later_pieces_come_whole(frames: int) -> None:
    assert window_bounds(frames, lead=False) == [(0, frames)]
