"""The fast guided filter on images whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from services.vision.engines.guided_filter import fast_guided_filter


def step_guide(height: int = 64, width: int = 64, edge: int = 37) -> np.ndarray:
    """Dark blue on the left of column ``edge``, bright orange from it on."""
    guide = np.empty((height, width, 3), np.uint8)
    guide[:, :edge] = (20, 30, 90)
    guide[:, edge:] = (230, 140, 40)
    return guide


def test_a_flat_guide_gives_the_box_mean() -> None:
    """With nothing to follow, the filter is a plain box blur of the source."""
    rng = np.random.default_rng(3)
    source = rng.random((40, 50)).astype(np.float32)

    filtered = fast_guided_filter(np.full((40, 50, 3), 128, np.uint8), source, 2, 1e-3, 1)

    # Interior pixels: the mean of the two overlapping box means of the 5x5 windows.
    assert abs(float(filtered.mean()) - float(source.mean())) < 0.02
    assert filtered.std() < source.std() / 2


def test_a_source_that_is_a_linear_function_of_the_guide_passes_through() -> None:
    rng = np.random.default_rng(5)
    guide = rng.integers(0, 256, (48, 48, 3), np.uint8)
    source = (0.2 + 0.5 * guide[..., 0] / 255 - 0.3 * guide[..., 2] / 255).astype(np.float32)

    filtered = fast_guided_filter(guide, source, 3, 1e-6, 1)

    np.testing.assert_allclose(filtered, source, atol=0.01)


@pytest.mark.parametrize("subsample", [1, 4])
def test_a_blurred_mask_is_snapped_to_the_guides_edge(subsample: int) -> None:
    """A mask blurred over 16 pixels across a colour edge crosses 0.5 at that edge, in one
    jump, where the blurred mask rose by 1/16 a pixel."""
    edge = 37
    guide = step_guide(edge=edge)
    columns = np.arange(64, dtype=np.float32)
    blurred = np.clip((columns - 29) / 16, 0, 1)[np.newaxis].repeat(64, axis=0).astype(np.float32)

    row = fast_guided_filter(guide, blurred, 8, 1e-3, subsample)[32]

    steps = np.diff(row)
    assert int(np.argmax(steps)) == edge - 1
    assert steps.max() > 0.4
    assert row[:edge].max() < 0.5 < row[edge:].min()


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 1)])
def test_tiny_images_keep_their_shape(shape: tuple[int, int]) -> None:
    source = np.full(shape, 0.7, np.float32)

    filtered = fast_guided_filter(np.zeros((*shape, 3), np.uint8), source, 4, 1e-3, 4)

    assert filtered.shape == shape
    np.testing.assert_allclose(filtered, 0.7, atol=1e-4)


def test_rejects_a_guide_of_another_size() -> None:
    with pytest.raises(ValueError, match="guide must be RGB"):
        fast_guided_filter(
            np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12), np.float32), 2, 1e-3, 1
        )
