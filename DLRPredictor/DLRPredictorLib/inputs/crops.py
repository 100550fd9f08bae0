"""Lesion crops: the square window around a lesion, resized and z-scored, as the CNN sees it.

Training and prediction cut their crops here alike (numpy only: no torch). Geometry uses
(row, column) indexing like :class:`base.case.LesionSlice`; a crop box may extend beyond the
image, where the window is filled with zeros (never shifted), so a lesion at the border stays
centred in its crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..base.case import LesionSlice
from ..base.errors import ConfigError, InputError, LesionError
from .resample import resize_bilinear

# A ResNet downsamples 32-fold: a smaller input leaves its last stage (layer4) without a cell.
MIN_CROP_SIZE = 32

CropBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class CropSpec:
    """How a lesion crop is cut and resized.

    Attributes:
        margin_fraction: context added on each side, as a fraction of the lesion box side.
        size: output side length in pixels (the CNN input size).
        square: cut a square box (keeps the lesion's aspect ratio after resizing).
    """

    margin_fraction: float = 0.15
    size: int = 224
    square: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin_fraction) and self.margin_fraction >= 0):
            raise ConfigError(
                f"crop margin_fraction must be a finite number >= 0, got {self.margin_fraction}"
            )
        if int(self.size) != self.size or self.size < MIN_CROP_SIZE:
            raise ConfigError(f"crop size must be an integer >= {MIN_CROP_SIZE}, got {self.size}")


def lesion_crop_box(bbox: CropBox, spec: CropSpec) -> CropBox:
    """The crop box around a lesion bounding box, centred on it, possibly leaving the image.

    Args:
        bbox: lesion box (row0, row1, col0, col1), end-exclusive.
        spec: margin and squareness.

    Returns:
        (row0, row1, col0, col1) in slice coordinates; may be negative or beyond the image.

    Raises:
        LesionError: empty or inverted bounding box.
    """
    r0, r1, c0, c1 = (int(v) for v in bbox)
    h, w = r1 - r0, c1 - c0
    if h <= 0 or w <= 0:
        raise LesionError(f"lesion bounding box {tuple(bbox)} is empty; check the lesion mask")
    side_h, side_w = (max(h, w), max(h, w)) if spec.square else (h, w)
    scale = 1.0 + 2.0 * float(spec.margin_fraction)
    out_h = max(side_h, math.floor(side_h * scale + 0.5))
    out_w = max(side_w, math.floor(side_w * scale + 0.5))
    # Integer centring: the box always contains the lesion; an odd extra pixel goes to the end.
    row0 = r0 - (out_h - h) // 2
    col0 = c0 - (out_w - w) // 2
    return (row0, row0 + out_h, col0, col0 + out_w)


def _bbox_from_mask(mask2d: np.ndarray) -> CropBox:
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    if rows.size == 0:
        raise LesionError("the lesion mask is empty; delineate the lesion before computing features")
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def padded_window(image2d: np.ndarray, box: CropBox) -> np.ndarray:
    """The image inside ``box``, zeros where the box leaves the image (no shifting)."""
    r0, r1, c0, c1 = box
    rows, cols = image2d.shape
    out = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 < sr1 and sc0 < sc1:
        out[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = image2d[sr0:sr1, sc0:sc1]
    return out


def zscore(crop: np.ndarray) -> np.ndarray:
    """Per-image z-score; a constant image becomes all zeros.

    Args:
        crop: 2D array.

    Returns:
        float32 array with mean 0 and standard deviation 1 (or all zeros).
    """
    values = np.asarray(crop, dtype=np.float64)
    mean, std = values.mean(), values.std()
    if not np.isfinite(std) or std < 1e-6:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - mean) / std).astype(np.float32)


def crop_from_arrays(
    image2d: np.ndarray,
    mask2d: np.ndarray | None,
    bbox: CropBox | None,
    spec: CropSpec,
) -> tuple[np.ndarray, CropBox]:
    """Normalised lesion crop from plain arrays (the training and inference path alike).

    Args:
        image2d: (rows, cols) luminance.
        mask2d: (rows, cols) lesion mask; used only to find the box when ``bbox`` is None.
        bbox: lesion box (row0, row1, col0, col1), end-exclusive, or None to take it from the mask.
        spec: margin, output size, squareness.

    Returns:
        (crop, box): float32 (size, size) z-scored crop, and the crop box in slice coordinates.

    Raises:
        InputError: image not 2D or not finite, or mask of another shape.
        LesionError: no box given and the mask is empty.
    """
    image = np.asarray(image2d)
    if image.ndim != 2:
        raise InputError(f"a lesion crop needs a 2D image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InputError("the image contains NaN or infinite values; check the image file")
    if bbox is None:
        if mask2d is None:
            raise LesionError("no lesion mask or bounding box was given for the crop")
        mask = np.asarray(mask2d)
        if mask.shape != image.shape:
            raise InputError(f"lesion mask shape {mask.shape} differs from image shape {image.shape}")
        bbox = _bbox_from_mask(mask != 0)
    box = lesion_crop_box(bbox, spec)
    window = padded_window(image, box)
    crop = resize_bilinear(window, (int(spec.size), int(spec.size)))
    return zscore(crop), box


def lesion_crop(lesion: LesionSlice, spec: CropSpec | None = None) -> tuple[np.ndarray, CropBox]:
    """Normalised square crop around a lesion, ready for ``deep.deep_model.DeepModel``.

    Args:
        lesion: the representative slice with its mask and bounding box.
        spec: crop settings; defaults to ``CropSpec()`` (15 % margin, 224 px).

    Returns:
        (crop, box): float32 (size, size) z-scored crop, and the crop box
        (row0, row1, col0, col1) in slice coordinates (may extend beyond the image).

    Raises:
        InputError, LesionError: unusable image or lesion box.
    """
    return crop_from_arrays(lesion.image, lesion.mask, lesion.bbox, spec or CropSpec())
