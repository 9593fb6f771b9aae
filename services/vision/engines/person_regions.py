"""People as regions of a person-probability map: its connected foreground regions, each
split among the faces inside it.

A segmentation model marks everyone as one class, so two people who touch (arm in arm, one
shoulder in front of another) come out as one region. Where a region holds several faces,
each of its pixels goes to the face nearest it across the image, in units of that face's
width: people in a photo stand side by side far more often than one above another.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.vision.engines.base import Box, Matte

FOREGROUND = 0.5
# A face belongs to the region covering most of its box, if that is at least this share.
_FACE_COVERED = 0.3


@dataclass(frozen=True)
class Region:
    """One person's part of the foreground: its box, mean probability, and the index of
    the face it was split for (None for a region with no face)."""

    box: Box
    probability: float
    face: int | None


def person_regions(probability: Matte, faces: list[Box], min_area: float) -> list[Region]:
    """The regions of ``probability`` above ``FOREGROUND``, one per face inside (boxes in
    the map's pixels); a region with no face counts only when it covers ``min_area`` of
    the map or more."""
    height, width = probability.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (probability > FOREGROUND).astype(np.uint8), connectivity=8
    )
    owners: dict[int, list[int]] = {}
    for index, face in enumerate(faces):
        label = _covering(labels, face)
        if label:
            owners.setdefault(label, []).append(index)
    found: list[Region] = []
    for label in range(1, count):
        members = owners.get(label, [])
        if not members and stats[label, cv2.CC_STAT_AREA] < min_area * height * width:
            continue
        rows, columns = np.nonzero(labels == label)
        confidence = float(probability[rows, columns].mean())
        if not members:
            found.append(Region(_bounds(rows, columns), confidence, None))
            continue
        centres = np.array([(faces[i].x_min + faces[i].x_max) / 2 for i in members])
        widths = np.array([max(1.0, faces[i].x_max - faces[i].x_min) for i in members])
        nearest = np.argmin(np.abs(columns[:, np.newaxis] - centres) / widths, axis=1)
        for slot, member in enumerate(members):
            mine = nearest == slot
            if mine.any():
                found.append(Region(_bounds(rows[mine], columns[mine]), confidence, member))
    return found


def _covering(labels: np.ndarray, face: Box) -> int:
    """The region label covering the most of ``face``'s box (0: none covers enough)."""
    height, width = labels.shape
    top, bottom = int(max(0, face.y_min)), int(min(height, np.ceil(face.y_max)))
    left, right = int(max(0, face.x_min)), int(min(width, np.ceil(face.x_max)))
    inside = labels[top:bottom, left:right].ravel()
    if inside.size == 0:
        return 0
    votes = np.bincount(inside)
    votes[0] = 0
    best = int(np.argmax(votes))
    return best if votes[best] >= _FACE_COVERED * inside.size else 0


def _bounds(rows: np.ndarray, columns: np.ndarray) -> Box:
    """The box of the given pixels (their far edges included)."""
    return Box(
        float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)
    )
