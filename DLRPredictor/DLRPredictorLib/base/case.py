"""Core data types passed between the layers: an image volume and the lesion slice used."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageVolume:
    """A luminance image as a (k, j, i) float32 array with SimpleITK (LPS) geometry.

    2D images are single-slice volumes of shape (1, rows, cols).

    Attributes:
        array: float32 voxel values, indexed (slice, row, column) like SimpleITK and
            ``slicer.util.arrayFromVolume``.
        spacing: voxel size in mm along (i, j, k) = (column, row, slice).
        origin: physical position of voxel (0, 0, 0) in LPS mm.
        direction: 3x3 direction cosines, row-major, LPS (as ``sitk.Image.GetDirection``).
        description: short provenance text without paths or patient identifiers.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns)."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]


@dataclass
class LesionSlice:
    """The 2D slice that features are computed on, with its lesion mask.

    Attributes:
        image: float32 (rows, cols) luminance of the representative slice.
        mask: uint8 (rows, cols), 1 inside the lesion.
        spacing: pixel size in mm along (column, row).
        slice_index: index k of this slice in the source volume.
        bbox: lesion bounding box (row0, row1, col0, col1), end-exclusive, without margin.
        warnings: notes for the reader about how the lesion was taken (several disconnected
            parts, lesion touching the image border, ...); empty when nothing is unusual.
    """

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float]
    slice_index: int
    bbox: tuple[int, int, int, int]
    warnings: tuple[str, ...] = ()
