"""Contour variants of a 2D lesion mask: erosion, dilation, moment-matched ellipse, random jitter.

The trainer learns from these outlines next to the exact one (``training.data.make_variant``),
and a prediction can be repeated on an eroded or dilated outline to see how much the score
depends on the precise contour. Every function takes and returns a 2D uint8 0/1 mask on the
same grid; scipy.ndimage is imported only when a function that needs it is called.
"""

from __future__ import annotations

import numpy as np

from ..base.errors import LesionError
from .lesion import largest_component


def _disk(radius_px: float) -> np.ndarray:
    reach = int(np.floor(radius_px))
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    return (yy * yy + xx * xx) <= radius_px * radius_px


def erode_mask(mask2d: np.ndarray, radius_px: float) -> np.ndarray:
    """Shrink a 2D lesion by a disk of ``radius_px`` pixels (contour moved inwards).

    The image edge is not treated as lesion boundary (a lesion cut by the border is not eroded
    from the border side).

    Args:
        mask2d: 2D mask; non-zero is lesion.
        radius_px: disk radius in pixels (0 returns a copy).

    Returns:
        uint8 0/1 mask.

    Raises:
        LesionError: the erosion removes the whole lesion.
    """
    from scipy import ndimage  # on request only: scipy.ndimage costs 0.3 s to import

    binary = np.asarray(mask2d) != 0
    if radius_px <= 0:
        return binary.astype(np.uint8)
    eroded = ndimage.binary_erosion(binary, structure=_disk(radius_px), border_value=1)
    if not eroded.any():
        raise LesionError(
            f"eroding the lesion by {radius_px:g} pixels removes it completely; use a smaller radius"
        )
    return eroded.astype(np.uint8)


def dilate_mask(mask2d: np.ndarray, radius_px: float) -> np.ndarray:
    """Grow a 2D lesion by a disk of ``radius_px`` pixels (contour moved outwards).

    Args:
        mask2d: 2D mask; non-zero is lesion.
        radius_px: disk radius in pixels (0 returns a copy).

    Returns:
        uint8 0/1 mask, clipped to the image.
    """
    from scipy import ndimage  # on request only: scipy.ndimage costs 0.3 s to import

    binary = np.asarray(mask2d) != 0
    if radius_px <= 0:
        return binary.astype(np.uint8)
    return ndimage.binary_dilation(binary, structure=_disk(radius_px)).astype(np.uint8)


def ellipse_mask(mask2d: np.ndarray) -> np.ndarray:
    """The ellipse with the lesion's centroid and second moments (a smooth-outline surrogate).

    A uniform ellipse with semi-axes a, b has variances a²/4 and b²/4 along its axes, so pixels
    with Mahalanobis distance² <= 4 under the lesion's covariance form the matching ellipse.

    Args:
        mask2d: 2D mask; non-zero is lesion.

    Returns:
        uint8 0/1 ellipse mask, clipped to the image.

    Raises:
        LesionError: the mask is empty.
    """
    binary = np.asarray(mask2d) != 0
    rr, cc = np.nonzero(binary)
    if rr.size == 0:
        raise LesionError("the lesion mask is empty; there is no outline to fit an ellipse to")
    centre = np.array([rr.mean(), cc.mean()])
    # + 1/12: the variance of a uniform unit pixel, so single rows/columns are not degenerate.
    cov = np.cov(np.vstack([rr, cc]), bias=True) + np.eye(2) / 12.0
    inverse = np.linalg.inv(cov)
    yy, xx = np.mgrid[0 : binary.shape[0], 0 : binary.shape[1]]
    dy, dx = yy - centre[0], xx - centre[1]
    dist2 = inverse[0, 0] * dy * dy + 2.0 * inverse[0, 1] * dy * dx + inverse[1, 1] * dx * dx
    ellipse = dist2 <= 4.0
    if not ellipse.any():
        ellipse[round(float(centre[0])), round(float(centre[1]))] = True
    return ellipse.astype(np.uint8)


def jitter_contour(
    mask2d: np.ndarray,
    rng: np.random.Generator,
    amplitude_px: float = 2.0,
    smoothness: float = 8.0,
) -> np.ndarray:
    """Randomly perturb a lesion outline with a smooth displacement (inter-reader variation).

    The signed distance to the outline is offset by a Gaussian-smoothed random field scaled to
    at most ``amplitude_px``; the zero level set is the new outline. The largest connected part is
    kept and holes are filled, so the result is one solid region.

    Args:
        mask2d: 2D mask; non-zero is lesion.
        rng: random generator (the result is deterministic for its state).
        amplitude_px: largest outline displacement in pixels.
        smoothness: Gaussian sigma (pixels) of the random field; larger gives smoother outlines.

    Returns:
        uint8 0/1 mask.

    Raises:
        LesionError: the mask is empty or the perturbation removes it.
    """
    from scipy import ndimage  # on request only: scipy.ndimage costs 0.3 s to import

    binary = np.asarray(mask2d) != 0
    if not binary.any():
        raise LesionError("the lesion mask is empty; there is no outline to perturb")
    inside = ndimage.distance_transform_edt(binary)
    outside = ndimage.distance_transform_edt(~binary)
    signed = np.where(binary, inside - 0.5, 0.5 - outside)
    field = ndimage.gaussian_filter(rng.standard_normal(binary.shape), sigma=max(float(smoothness), 0.5))
    peak = float(np.abs(field).max())
    if peak > 0:
        field *= float(amplitude_px) / peak
    jittered = (signed + field) > 0
    kept, count = largest_component(jittered)
    if count == 0:
        raise LesionError(
            f"a contour jitter of {amplitude_px:g} pixels removed the lesion; use a smaller one"
        )
    return ndimage.binary_fill_holes(kept).astype(np.uint8)
