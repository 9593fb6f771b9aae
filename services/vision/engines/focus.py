"""The part of an image a matting model looks at when told where the subject is."""

from __future__ import annotations

import math

from services.vision.engines.base import Box


def focus_region(focus: Box, margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """The pixel rows and columns (top, bottom, left, right) around ``focus``, grown by
    ``margin`` times its width and height on each side and cut to the image; empty (bottom
    <= top or right <= left) when ``focus`` lies outside it."""
    margin_x = (focus.x_max - focus.x_min) * margin
    margin_y = (focus.y_max - focus.y_min) * margin
    left = min(width, max(0, math.floor(focus.x_min - margin_x)))
    right = min(width, max(0, math.ceil(focus.x_max + margin_x)))
    top = min(height, max(0, math.floor(focus.y_min - margin_y)))
    bottom = min(height, max(0, math.ceil(focus.y_max + margin_y)))
    return top, bottom, left, right
