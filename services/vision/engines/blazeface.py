"""Faces found by MediaPipe's BlazeFace short-range model, at two scales.

The model takes a 128x128 RGB image in [-1, 1] and scores 896 fixed anchors: one per
cell, twice, on a 16x16 grid (stride 8) and six times on an 8x8 grid (stride 16), the SSD
anchors of MediaPipe's ``face_detection_short_range`` graph (``fixed_anchor_size``: every
anchor is a unit square, so only its centre matters). For each anchor, ``regressors`` holds
the box centre's offset from the anchor and the box's width and height, in pixels of the
128-pixel input (then six key points, unused here); ``classificators`` a logit.

Short range means faces of about an eighth of the input or more: measured on the
astronaut shrunk into a canvas, a face 24 input pixels wide scores 0.92, 17 pixels 0.77 and
12 pixels 0.22. So besides the whole image (letterboxed, as MediaPipe does), the model also
looks at overlapping tiles two thirds of the long side across (or the short side, if less;
at most five along a side), which finds faces down to about a twelfth of the long side:
the people of a group photo. A 512x512 photo costs five passes of about 2.5 ms.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from services.vision.engines.base import Box, Detection, Image
from services.vision.engines.mediapipe_files import MediaPipeNet
from services.vision.engines.person_boxes import clip, iou
from services.vision.engines.scores import logistic
from services.vision.engines.windows import windows

MODEL = "face_detection_short_range.tflite"
INPUT = 128
_GRIDS = ((16, 2), (8, 6))  # cells per side, anchors per cell
_TILE_SHARE = 2 / 3
_MOST_TILES = 5
# MediaPipe's graph clips logits to +-100 before its sigmoid; so does this.
_LOGIT_CLIP = 100.0
# Overlapping boxes for one face, from neighbouring anchors, from tiles and from the whole
# image, are merged as MediaPipe merges them: boxes reaching IoU 0.3 with the best one are
# averaged, weighted by score.
_SAME_FACE_IOU = 0.3


def anchors() -> npt.NDArray[np.float32]:
    """The 896 anchor centres (x, y), in [0, 1] of the input, in the model's output order."""
    centres = [
        ((column + 0.5) / cells, (row + 0.5) / cells)
        for cells, per_cell in _GRIDS
        for row in range(cells)
        for column in range(cells)
        for _ in range(per_cell)
    ]
    return np.asarray(centres, np.float32)


def tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The views (left, top, right, bottom) the model looks at besides the whole image:
    none for an image of at most 1.5 inputs, where the faces tiles would add are too few
    pixels; at most ``_MOST_TILES`` a side."""
    long_side, short_side = max(width, height), min(width, height)
    if long_side <= 1.5 * INPUT:
        return []
    side = min(short_side, math.ceil(_TILE_SHARE * long_side))
    return [
        (left, top, left + tile_width, top + tile_height)
        for top, tile_height in windows(height, side, _MOST_TILES)
        for left, tile_width in windows(width, side, _MOST_TILES)
    ]


class BlazeFace:
    """Faces in an image, with BlazeFace's own scores; safe to call from several threads."""

    def __init__(self, directory: Path, min_score: float) -> None:
        """Read the model from ``directory`` at ``load()``; faces scoring below
        ``min_score`` are dropped."""
        self._directory = directory
        self._min_score = min_score
        self._anchors = anchors()
        self._net: MediaPipeNet | None = None

    def load(self) -> None:
        """Read the model; FileNotFoundError names it when it is missing."""
        self._net = MediaPipeNet(self._directory, MODEL)

    def faces(self, image: Image) -> list[Detection]:
        """Faces in the RGB ``image`` (boxes in its pixels, label "face"), best first."""
        height, width = image.shape[:2]
        found = self._run(image, (0, 0, width, height))
        for view in tiles(width, height):
            # A face a tile cuts lies whole in a neighbouring tile (they overlap by half) or
            # is large enough for the whole image: a tile keeps only the faces inside it,
            # save on the image's own edges.
            found += [
                face for face in self._run(image, view) if _inside(face.box, view, width, height)
            ]
        return [
            Detection(clip(face.box, width, height), face.score, face.label)
            for face in _merge(found)
        ]

    def _run(self, image: Image, view: tuple[int, int, int, int]) -> list[Detection]:
        """Faces in the ``view`` (left, top, right, bottom) of ``image``, letterboxed into the
        input; boxes in pixels of ``image``, not clipped."""
        if self._net is None:
            raise RuntimeError("BlazeFace.faces called before load()")
        left, top, right, bottom = view
        height, width = bottom - top, right - left
        scale = INPUT / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = np.zeros((INPUT, INPUT, 3), np.uint8)
        canvas[: size[1], : size[0]] = cv2.resize(
            image[top:bottom, left:right], size, interpolation=cv2.INTER_AREA
        )
        blob = cv2.dnn.blobFromImage(canvas, 1 / 127.5, (INPUT, INPUT), (127.5, 127.5, 127.5))
        logits, regressors = self._net.run(
            np.asarray(blob, np.float32), ("classificators", "regressors")
        )
        scores = logistic(np.clip(logits.reshape(-1), -_LOGIT_CLIP, _LOGIT_CLIP))
        kept = np.flatnonzero(scores >= self._min_score)
        boxes = regressors.reshape(-1, 16)[kept, :4]
        centres = self._anchors[kept] * INPUT + boxes[:, :2]
        corners = np.concatenate([centres - boxes[:, 2:] / 2, centres + boxes[:, 2:] / 2], axis=1)
        corners = corners / scale + [left, top, left, top]
        return [
            Detection(Box(x0, y0, x1, y1), score, "face")
            for (x0, y0, x1, y1), score in zip(corners.tolist(), scores[kept].tolist(), strict=True)
            if x1 > x0 and y1 > y0
        ]


def _inside(box: Box, view: tuple[int, int, int, int], width: int, height: int) -> bool:
    """Whether ``box`` stays inside ``view`` on every side where the view is not at the edge
    of the ``width`` x ``height`` image (beyond which nothing could be cut off)."""
    left, top, right, bottom = view
    return (
        (left == 0 or box.x_min >= left)
        and (top == 0 or box.y_min >= top)
        and (right == width or box.x_max <= right)
        and (bottom == height or box.y_max <= bottom)
    )


def _merge(faces: list[Detection]) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression: the best face and every box reaching
    ``_SAME_FACE_IOU`` with it become one face, their boxes averaged by score; best first."""
    remaining = sorted(faces, key=lambda face: face.score, reverse=True)
    merged: list[Detection] = []
    while remaining:
        best = remaining[0]
        same = [iou(best.box, face.box) >= _SAME_FACE_IOU for face in remaining]
        cluster = [face for face, in_cluster in zip(remaining, same, strict=True) if in_cluster]
        remaining = [
            face for face, in_cluster in zip(remaining, same, strict=True) if not in_cluster
        ]
        weights = np.array([face.score for face in cluster])
        corners = np.array([[f.box.x_min, f.box.y_min, f.box.x_max, f.box.y_max] for f in cluster])
        average = (weights @ corners / weights.sum()).tolist()
        merged.append(Detection(Box(*average), best.score, "face"))
    return merged
