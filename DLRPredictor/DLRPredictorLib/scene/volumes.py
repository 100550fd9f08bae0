"""Volume nodes <-> :class:`ImageVolume`, and finding or adding a node by class and name.

A volume node is written with the ImageVolume's exact geometry (``geometry``); reading one gives
float32 luminance, so that grey-level, RGB and RGBA images all predict alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.errors import InputError
from ..inference.input_checks import describe
from .geometry import ijk_to_ras_matrix, lps_geometry, node_ijk_to_ras, node_shape_kji

#: The node classes that each node argument of ``api.predict_nodes`` takes, most specific first.
NODE_ARGUMENTS = (
    ("vtkMRMLSegmentationNode", "segmentation_node"),
    ("vtkMRMLLabelMapVolumeNode", "labelmap_node"),
    ("vtkMRMLScalarVolumeNode", "volume_node"),  # vector (RGB) volumes are scalar volumes too
    ("vtkMRMLTableNode", "features_table_node or prediction_table_node"),
)


def is_node(value: Any, class_name: str) -> bool:
    """Whether a value is an MRML node of this class (or a subclass); False for any other object."""
    is_a = getattr(value, "IsA", None)
    return callable(is_a) and bool(is_a(class_name))


def refuse_node(value: Any, argument: str, expected: str) -> InputError:
    """The error for a value that is not the node an argument takes, saying where it belongs.

    Args:
        value: what was given.
        argument: the argument's name.
        expected: what it takes, e.g. "a segmentation node (the lesion)".
    """
    hint = ""
    for class_name, belongs in NODE_ARGUMENTS:
        if is_node(value, class_name):
            if argument not in belongs.split(" or "):
                hint = f"; that node belongs in {belongs}"
            break
    return InputError(f"{argument} must be {expected}, got {describe(value)}{hint}")


def check_volume_node(node: Any, argument: str = "volume_node", *, labelmap: bool = False) -> None:
    """Refuse what cannot be read as the image (or, with ``labelmap``, as a lesion labelmap).

    Args:
        node: the node given.
        argument: its argument name, for the message.
        labelmap: the node is a lesion labelmap (a labelmap or single-component scalar volume)
            rather than the image (a scalar or vector volume, not a labelmap).

    Raises:
        InputError: None, not a volume node, a labelmap as the image or a colour volume as the
            labelmap, a node without image data.
    """
    if labelmap:
        expected = "a labelmap volume node (the lesion)"
        wrong_kind = is_node(node, "vtkMRMLVectorVolumeNode")
    else:
        expected = "a scalar or vector volume node (the ultrasound image)"
        wrong_kind = is_node(node, "vtkMRMLLabelMapVolumeNode")
    if node is None:
        raise InputError(f"{argument} is missing: it must be {expected}")
    if wrong_kind or not is_node(node, "vtkMRMLScalarVolumeNode"):
        raise refuse_node(node, argument, expected)
    if node.GetImageData() is None:
        raise InputError(
            f"{argument}: volume '{node.GetName()}' has no image data: load an image into it first"
        )


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
