"""Volume nodes <-> :class:`ImageVolume`, and finding or adding a node by class and name.

A volume node is written with the ImageVolume's exact geometry (``geometry``); reading one gives
float32 luminance, so that grey-level, RGB and RGBA images all predict alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.errors import InputError
from .geometry import ijk_to_ras_matrix, lps_geometry, node_ijk_to_ras, node_shape_kji


def get_or_create_node(scene: Any, class_name: str, name: str) -> Any:
    """The first node of exactly this class with this name, or a new one added to the scene.

    Args:
        scene: the MRML scene.
        class_name: MRML class, e.g. "vtkMRMLTableNode" (subclasses do not match).
        name: node name.

    Returns:
        The existing or new node.
    """
    nodes = scene.GetNodesByClassByName(class_name, name)
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetClassName() == class_name:
            return node
    return scene.AddNewNodeByClass(class_name, name)


def add_volume_node(scene: Any, volume: ImageVolume, name: str) -> Any:
    """Add an ImageVolume as a scalar volume node with the right IJKToRAS.

    Args:
        scene: the MRML scene.
        volume: (k, j, i) image with LPS geometry.
        name: node name.

    Returns:
        The new vtkMRMLScalarVolumeNode, with a default (grey, auto window/level) display node.
    """
    import slicer

    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise InputError(f"image '{name}' must be a (slices, rows, columns) array, got shape {array.shape}")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(volume)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array, dtype=np.float32))
    node.CreateDefaultDisplayNodes()
    return node


def image_from_volume_node(node: Any) -> ImageVolume:
    """Read a scalar or vector (RGB / RGBA) volume node as a luminance ImageVolume.

    Args:
        node: vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode (a parent transform is ignored).

    Returns:
        float32 (k, j, i) luminance (BT.601 for colour, alpha ignored) with LPS geometry.

    Raises:
        InputError: no node, no image data, or an unsupported number of components.
    """
    import slicer

    from ..inputs import images

    if node is None:
        raise InputError("no input volume: choose the ultrasound image")
    node_shape_kji(node)
    array = slicer.util.arrayFromVolume(node)
    components = node.GetImageData().GetNumberOfScalarComponents()
    if components not in (1, 3, 4):
        raise InputError(
            f"volume '{node.GetName()}' has {components} components per voxel: "
            "use a grey-level, RGB or RGBA image"
        )
    luminance = images.to_luminance(np.asarray(array), components)
    spacing, origin, direction = lps_geometry(node_ijk_to_ras(node))
    return ImageVolume(
        array=np.ascontiguousarray(luminance, dtype=np.float32),
        spacing=spacing,  # type: ignore[arg-type]
        origin=origin,  # type: ignore[arg-type]
        direction=direction,
        description=f"{node.GetClassName()} ({components} component{'s' if components > 1 else ''})",
    )
