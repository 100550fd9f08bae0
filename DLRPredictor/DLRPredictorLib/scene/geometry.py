"""Geometry between :class:`ImageVolume` (SimpleITK, LPS) and volume nodes (RAS).

``IJKToRAS = diag(-1, -1, 1) @ direction @ diag(spacing)``, origin with x and y negated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.errors import InputError

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras_matrix(volume: ImageVolume) -> np.ndarray:
    """The 4x4 IJKToRAS matrix of an ImageVolume's LPS geometry.

    Args:
        volume: image with SimpleITK (LPS) spacing, origin and direction.

    Returns:
        float64 (4, 4) matrix mapping (i, j, k, 1) to RAS millimetres.
    """
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(np.asarray(volume.spacing, dtype=float))
    m[:3, 3] = _LPS_TO_RAS @ np.asarray(volume.origin, dtype=float)
    return m


def lps_geometry(ijk_to_ras: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Spacing, origin and direction (LPS, SimpleITK order) of an IJKToRAS matrix.

    Args:
        ijk_to_ras: 4x4 matrix.

    Returns:
        (spacing (3,), origin (3,), direction (9,) row-major).
    """
    lps = _LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    direction = lps / spacing
    origin = _LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)[:3, 3]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in origin),
        tuple(float(d) for d in direction.ravel()),
    )


def node_ijk_to_ras(node: Any) -> np.ndarray:
    """The 4x4 IJKToRAS matrix of a volume node (its parent transform not applied).

    Args:
        node: a vtkMRMLVolumeNode.

    Returns:
        float64 (4, 4) matrix.
    """
    import slicer
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def node_shape_kji(node: Any) -> tuple[int, int, int]:
    """The (slices, rows, columns) shape of a volume node's image data.

    Args:
        node: a vtkMRMLVolumeNode.

    Returns:
        (k, j, i) dimensions.

    Raises:
        InputError: the node holds no image data.
    """
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume '{node.GetName()}' has no image data: load an image into it first")
    i, j, k = image.GetDimensions()
    return (k, j, i)
