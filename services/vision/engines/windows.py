"""Overlapping windows along one side of an image, for models that see a fixed shape."""

from __future__ import annotations

import math


def windows(length: int, window: int, most: int) -> list[tuple[int, int]]:
    """Spans (start, size) of windows that together cover ``length`` pixels, evenly spaced
    and overlapping by at least half a window, so anything up to half a window wide lies
    whole inside one of them.

    Windows are ``window`` pixels, or wider where more than ``most`` would be needed: a
    thin strip of an image then costs ``most`` model runs, not one per few pixels.
    """
    size = min(length, max(window, math.ceil(2 * length / (most + 1))))
    if size >= length:
        return [(0, length)]
    count = 1 + math.ceil((length - size) / (size / 2))
    return [(round(i * (length - size) / (count - 1)), size) for i in range(count)]
