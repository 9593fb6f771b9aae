"""Test photos with known people: scikit-image's astronaut with regions drawn by hand on it,
and photos of two and four people built from it.

Regions are polygons of (x, y) vertices in pixels, read off the 512x512 astronaut drawn
over a 20-pixel grid. The helmet she holds (lower right) is neither person nor
background: segmentation models keep what people hold, so tests leave it out of both.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from skimage import data

from services.vision.engines.base import Box, Detection, Image
from services.vision.engines.person_boxes import intersection

Polygon = tuple[tuple[int, int], ...]
Mask = npt.NDArray[np.bool_]

SIDE = 512
# Her outline, hair to the bottom edge, without the helmet.
PERSON: Polygon = (
    (225, 13), (262, 17), (290, 36), (301, 70), (300, 105), (284, 124), (272, 148), (296, 180),
    (305, 238), (335, 254), (353, 282), (363, 340), (300, 345), (285, 380), (280, 512),
    (24, 512), (20, 440), (24, 360), (37, 300), (58, 255), (110, 200), (118, 180), (183, 152),
    (176, 124), (157, 100), (151, 62), (167, 30), (195, 16),
)  # fmt: skip
# Inside her for sure: face and hair, and the suit's torso.
FACE: Polygon = ((185, 40), (265, 40), (285, 90), (262, 135), (198, 135), (168, 90))
TORSO: Polygon = (
    (70, 300), (140, 240), (290, 240), (340, 275), (348, 330), (280, 350), (262, 500),
    (50, 500), (45, 360),
)  # fmt: skip
# Background for sure: the wall between her head and the shuttle, the wall left of her
# hair, the black table below the shuttle, the top-right corner, the top of the flag.
BACKGROUND: tuple[Polygon, ...] = (
    ((312, 10), (368, 10), (350, 190), (316, 170)),
    ((70, 0), (150, 0), (140, 60), (95, 110)),
    ((372, 287), (512, 287), (512, 330), (372, 330)),
    ((470, 0), (512, 0), (512, 270), (470, 270)),
    ((0, 0), (55, 0), (55, 190), (0, 190)),
)
HELMET: Polygon = ((285, 335), (512, 335), (512, 512), (285, 512))
PERSON_BOX = Box(20, 13, 363, 512)


@dataclass(frozen=True)
class Placed:
    """Where one astronaut went in a built photo: her square's corner and side, mirrored
    or not."""

    left: int
    top: int
    side: int
    mirrored: bool

    def polygon(self, polygon: Polygon) -> Polygon:
        """``polygon`` of the astronaut, moved to where she is in the built photo."""
        factor = self.side / SIDE
        return tuple(
            (
                round(self.left + (SIDE - x if self.mirrored else x) * factor),
                round(self.top + y * factor),
            )
            for x, y in polygon
        )

    def box(self) -> Box:
        """Her person box in the built photo."""
        return bounds(self.polygon(PERSON))

    def face_centre(self) -> tuple[float, float]:
        """The middle of her face in the built photo."""
        face = bounds(self.polygon(FACE))
        return (face.x_min + face.x_max) / 2, (face.y_min + face.y_max) / 2


def bounds(polygon: Polygon) -> Box:
    """The box around ``polygon``."""
    xs, ys = zip(*polygon, strict=True)
    return Box(min(xs), min(ys), max(xs), max(ys))


def holds(box: Box, point: tuple[float, float]) -> bool:
    """Whether ``point`` (x, y) lies inside ``box``."""
    return box.x_min <= point[0] <= box.x_max and box.y_min <= point[1] <= box.y_max


def finds(detection: Detection, placed: Placed, people: tuple[Placed, ...]) -> bool:
    """Whether ``detection`` is a box of the astronaut at ``placed`` alone, of all
    ``people`` in the photo: it holds her face and no other's, and most (80%) of her."""
    box = detection.box
    return (
        holds(box, placed.face_centre())
        and not any(holds(box, other.face_centre()) for other in people if other != placed)
        and intersection(placed.box(), box) > 0.8 * placed.box().area
    )


def astronaut() -> Image:
    """scikit-image's 512x512 RGB portrait."""
    return np.ascontiguousarray(data.astronaut(), np.uint8)


def mask(polygons: tuple[Polygon, ...], height: int, width: int) -> Mask:
    """The pixels inside any of ``polygons``."""
    filled = np.zeros((height, width), np.uint8)
    cv2.fillPoly(filled, [np.array(polygon, np.int32) for polygon in polygons], 1)
    return filled.astype(bool)


def build(width: int, height: int, placements: tuple[Placed, ...], ground: int = 200) -> Image:
    """A ``width`` x ``height`` photo, plain grey, with the astronaut at each placement (cut
    off where she reaches beyond the frame's bottom, as people are in photos)."""
    photo = np.full((height, width, 3), ground, np.uint8)
    for placed in placements:
        portrait = cv2.resize(astronaut(), (placed.side, placed.side), interpolation=cv2.INTER_AREA)
        if placed.mirrored:
            portrait = portrait[:, ::-1]
        visible = min(placed.side, height - placed.top)
        photo[placed.top : placed.top + visible, placed.left : placed.left + placed.side] = (
            portrait[:visible]
        )
    return photo


# Two people apart (a gap of 140 pixels), and two touching, shoulder to shoulder.
TWO_APART = (Placed(60, 140, 420, False), Placed(620, 140, 420, True))
TWO_TOUCHING = (Placed(0, 0, 512, False), Placed(512, 0, 512, True))
# Four people side by side in a wide (3.2:1) photo, as in a group picture.
FOUR_IN_A_ROW = tuple(Placed(i * 320, 80, 320, i % 2 == 1) for i in range(4))


def two_apart() -> Image:
    """Two astronauts with a gap between them (1100x560)."""
    return build(1100, 560, TWO_APART)


def two_touching() -> Image:
    """The astronaut and her mirror image side by side, touching (1024x512)."""
    return build(1024, 512, TWO_TOUCHING)


def four_in_a_row() -> Image:
    """Four astronauts side by side (1280x400)."""
    return build(1280, 400, FOUR_IN_A_ROW, ground=120)
