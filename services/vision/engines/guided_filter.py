"""The fast guided filter (He and Sun, "Fast Guided Filter", 2015), with a colour guide.

The guided filter (He, Sun and Tang, "Guided Image Filtering", 2010) smooths a source image
(here a coarse matte) while making its edges follow the edges of a guide image (the photo),
so a mask computed at a low resolution takes on the photo's hair and shoulder outlines. In
every window the output is a linear function of the guide's colour; the fast variant fits
those functions on a copy subsampled by ``subsample`` and applies them at full resolution,
which costs about ``subsample**2`` less for nearly the same result.

Everything is box filters (``cv2.boxFilter``), so the time does not depend on the radius.
``opencv-python-headless`` has no ``cv2.ximgproc.guidedFilter``, hence this module.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float32]

# The six distinct products of the guide's channels (its covariance is symmetric).
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def fast_guided_filter(
    guide: npt.NDArray[np.uint8], source: Float, radius: int, eps: float, subsample: int
) -> Float:
    """``source`` (float, shape (height, width)) filtered with the RGB ``guide`` (uint8,
    shape (height, width, 3)).

    ``radius`` is the window's half side in full-resolution pixels; ``eps`` the
    regularisation in units of the guide's variance on a 0-1 scale (larger: smoother, fewer
    edges carried over); ``subsample`` the factor of the coarse copy (1: the exact filter).
    """
    if guide.shape[:2] != source.shape or guide.ndim != 3 or guide.shape[2] != 3:
        raise ValueError(
            f"guide must be RGB of the source's size, got {guide.shape} for {source.shape}"
        )
    height, width = source.shape
    coarse_size = (max(1, round(width / subsample)), max(1, round(height / subsample)))
    full = guide.astype(np.float32) / 255.0
    colour = _resize(full, coarse_size)
    target = _resize(source.astype(np.float32), coarse_size)
    window = 2 * max(1, round(radius / subsample)) + 1

    def mean(values: Float) -> Float:
        # Reflected borders: at the image edge the window mirrors what is inside, so the
        # edge pixels get a full window of real colours rather than zeros.
        return np.asarray(
            cv2.boxFilter(values, -1, (window, window), borderType=cv2.BORDER_REFLECT),
            np.float32,
        )

    mean_colour = mean(colour)
    mean_target = mean(target)
    products = np.stack([colour[..., i] * colour[..., j] for i, j in _PAIRS], axis=-1)
    covariance = mean(products) - np.stack(
        [mean_colour[..., i] * mean_colour[..., j] for i, j in _PAIRS], axis=-1
    )
    cross = mean(colour * target[..., np.newaxis]) - mean_colour * mean_target[..., np.newaxis]
    slope = _solve_symmetric(covariance, cross, eps)
    offset = mean_target - np.einsum("...c,...c->...", slope, mean_colour)
    # Each pixel lies in many windows: average their linear functions, then apply them to
    # the full-resolution guide.
    mean_slope = _resize(mean(slope), (width, height))
    mean_offset = _resize(mean(offset), (width, height))
    filtered: Float = np.einsum("...c,...c->...", mean_slope, full) + mean_offset
    return filtered.astype(np.float32)


def _resize(values: Float, size: tuple[int, int]) -> Float:
    """``values`` resized to ``size`` (width, height), keeping a channel axis it had."""
    if values.shape[1::-1] == size:
        return values
    resized = np.asarray(cv2.resize(values, size, interpolation=cv2.INTER_LINEAR), np.float32)
    # OpenCV drops a single channel's axis; a one-pixel result may lose it too.
    return resized.reshape(size[1], size[0], *values.shape[2:])


def _solve_symmetric(covariance: Float, cross: Float, eps: float) -> Float:
    """Per pixel, x with (C + eps I) x = cross, C the symmetric 3x3 matrix whose distinct
    entries ``covariance`` holds in ``_PAIRS`` order; by Cramer's rule, vectorised."""
    rr, rg, rb, gg, gb, bb = (covariance[..., k] for k in range(6))
    rr, gg, bb = rr + eps, gg + eps, bb + eps
    # The adjugate of a symmetric matrix is symmetric: six cofactors.
    c_rr = gg * bb - gb * gb
    c_rg = gb * rb - rg * bb
    c_rb = rg * gb - gg * rb
    c_gg = rr * bb - rb * rb
    c_gb = rg * rb - rr * gb
    c_bb = rr * gg - rg * rg
    determinant = rr * c_rr + rg * c_rg + rb * c_rb
    x, y, z = cross[..., 0], cross[..., 1], cross[..., 2]
    solved = np.stack(
        [
            c_rr * x + c_rg * y + c_rb * z,
            c_rg * x + c_gg * y + c_gb * z,
            c_rb * x + c_gb * y + c_bb * z,
        ],
        axis=-1,
    )
    result: Float = (solved / determinant[..., np.newaxis]).astype(np.float32)
    return result
