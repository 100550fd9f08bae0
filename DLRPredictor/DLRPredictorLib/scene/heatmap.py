"""The Grad-CAM heatmap as a volume on the image's exact grid, shown as the foreground overlay."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.errors import InputError
from .geometry import node_ijk_to_ras, node_shape_kji
from .tables import TABLE_KIND_ATTRIBUTE
from .volumes import get_or_create_node

#: Heat colour map of the Grad-CAM overlay (black, red, yellow, white). A built-in Slicer colour
#: node present both in the application and in a plain slicer-core scene; the file-based ones
#: (Inferno, ColdToHotRainbow) exist only in the application.
HEATMAP_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
#: Heatmap voxels below this value are transparent, so that the image stays unchanged where the
#: network paid no attention (and outside the lesion crop, where the heatmap is zero).
HEATMAP_HIDE_BELOW = 1e-6
#: Attribute of the heatmap volume naming the score it explains ("dl-signature" or "cnn-head").
HEATMAP_KIND_ATTRIBUTE = "DLRPredictor.HeatmapKind"


def set_foreground(scene: Any, volume_node: Any, background_node: Any, opacity: float) -> int:
    """Show a volume as the foreground layer over a background in every slice view of the scene.

    Args:
        scene: the MRML scene (its vtkMRMLSliceCompositeNodes; none are created).
        volume_node: the foreground volume (None clears the foreground).
        background_node: the background volume, or None to keep the current background.
        opacity: foreground opacity in 0..1.

    Returns:
        The number of slice composite nodes updated (three in the application, often zero in
        plain Python).

    Raises:
        InputError: opacity outside 0..1.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise InputError(f"heatmap opacity must be between 0 and 1, got {opacity}")
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    count = composites.GetNumberOfItems()
    for index in range(count):
        composite = composites.GetItemAsObject(index)
        if background_node is not None:
            composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(volume_node.GetID() if volume_node is not None else None)
        composite.SetForegroundOpacity(float(opacity))
    return count


def write_heatmap(
    scene: Any,
    heatmap: np.ndarray,
    reference_volume_node: Any,
    name: str,
    opacity: float = 0.5,
    *,
    node: Any = None,
    color_node_id: str = HEATMAP_COLOR_NODE_ID,
    kind: str | None = None,
) -> Any:
    """Create or update the heatmap volume on the reference image's grid and show it as overlay.

    Args:
        scene: the MRML scene.
        heatmap: (k, j, i) values in 0..1, same shape as the reference image.
        reference_volume_node: the image; its IJKToRAS and parent transform are copied exactly.
        name: node name; an existing scalar volume of that name is updated.
        opacity: foreground opacity in every slice view.
        node: an explicit volume node to update instead.
        color_node_id: colour node of the display (default: the built-in heat colour map).
        kind: the score the map explains (``deep.heatmap.HEATMAP_KINDS``), stored as the
            ``HEATMAP_KIND_ATTRIBUTE`` attribute; None leaves the attribute unset.

    Returns:
        The vtkMRMLScalarVolumeNode, window/level 0..1, values below ``HEATMAP_HIDE_BELOW``
        transparent.

    Raises:
        InputError: shape differs from the image, non-finite values, or opacity outside 0..1.
    """
    import slicer

    values = np.asarray(heatmap, dtype=np.float32)
    shape = node_shape_kji(reference_volume_node)
    if values.shape != shape:
        raise InputError(
            f"heatmap shape {values.shape} differs from image '{reference_volume_node.GetName()}' {shape}"
        )
    if not np.all(np.isfinite(values)):
        raise InputError(f"heatmap for '{reference_volume_node.GetName()}' contains non-finite values")
    if not 0.0 <= float(opacity) <= 1.0:
        raise InputError(f"heatmap opacity must be between 0 and 1, got {opacity}")
    if scene.GetNodeByID(color_node_id) is None:
        raise InputError(f"colour map '{color_node_id}' is not in the scene")
    node = node if node is not None else get_or_create_node(scene, "vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.clip(values, 0.0, 1.0)))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(node_ijk_to_ras(reference_volume_node)))
    node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    was_modifying = display.StartModify()
    display.SetAndObserveColorNodeID(color_node_id)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetThreshold(HEATMAP_HIDE_BELOW, 1.0)
    display.ApplyThresholdOn()
    display.EndModify(was_modifying)
    node.SetAttribute(TABLE_KIND_ATTRIBUTE, "heatmap")
    if kind is not None:
        node.SetAttribute(HEATMAP_KIND_ATTRIBUTE, kind)
    set_foreground(scene, node, reference_volume_node, opacity)
    return node
