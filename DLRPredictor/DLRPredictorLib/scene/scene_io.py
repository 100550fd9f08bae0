"""The only MRML user: nodes <-> ImageVolume / masks, result tables, heatmap overlay, scene files.

Works the same in the Slicer application and on a plain-Python scene from
:func:`scene_adapter.create_scene`: every function takes its scene or nodes as arguments and
calls the static Segmentations logic methods, never the ``slicer.mrmlScene`` global, and adds no
temporary nodes.

Geometry: :class:`ImageVolume` is SimpleITK / LPS; volume nodes are RAS.
``IJKToRAS = diag(-1, -1, 1) @ direction @ diag(spacing)``, origin with x and y negated.

Result tables (layout decisions):

- features table: columns ``Image type``, ``Feature Class``, ``Feature Name``, ``Value`` as in
  SlicerRadiomics (its columns are "Image type", "Feature Class", "Feature Name", then one value
  column). Provenance (bundle id, software versions, settings) is stored as node attributes
  ``DLRPredictor.provenance.<key>``: they are saved in the .mrml and keep the feature rows
  uniform for anyone reading the table.
- key-value table: columns ``Name`` and ``Value``.
- Values are text columns. Numbers are written with Python's shortest round-trip ``repr`` so that
  ``float(cell)`` gives back exactly the same number after a save and reload; a double column is
  saved by Slicer's table writer with only 6 significant digits.

Writing: callers compute everything first, then write inside :class:`SceneGuard`. The guard
removes the nodes added inside it when the block raises; a node updated in place is not rolled
back, which is why writing comes only after all computation succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.compat import zip_strict
from ..base.errors import DLRError, InputError, LesionError

# Exactly SlicerRadiomics' exportToTable columns, so tables from both modules read alike.
FEATURE_COLUMNS: tuple[str, ...] = ("Label", "Input image type", "Feature Class", "Feature Name", "Value")
KEY_VALUE_COLUMNS: tuple[str, str] = ("Name", "Value")
PROVENANCE_ATTRIBUTE_PREFIX = "DLRPredictor.provenance."
TABLE_KIND_ATTRIBUTE = "DLRPredictor.table"
#: Heat colour map of the Grad-CAM overlay (black, red, yellow, white). A built-in Slicer colour
#: node present both in the application and in a plain slicer-core scene; the file-based ones
#: (Inferno, ColdToHotRainbow) exist only in the application.
HEATMAP_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
#: Heatmap voxels below this value are transparent, so that the image stays unchanged where the
#: network paid no attention (and outside the lesion crop, where the heatmap is zero).
HEATMAP_HIDE_BELOW = 1e-6

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


# --------------------------------------------------------------------------- geometry


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


def _matrix_of(node: Any) -> np.ndarray:
    import slicer
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def _dimensions_kji(node: Any) -> tuple[int, int, int]:
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume '{node.GetName()}' has no image data: load an image into it first")
    i, j, k = image.GetDimensions()
    return (k, j, i)


# --------------------------------------------------------------------------- nodes


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
    _dimensions_kji(node)
    array = slicer.util.arrayFromVolume(node)
    components = node.GetImageData().GetNumberOfScalarComponents()
    if components not in (1, 3, 4):
        raise InputError(
            f"volume '{node.GetName()}' has {components} components per voxel: "
            "use a grey-level, RGB or RGBA image"
        )
    luminance = images.to_luminance(np.asarray(array), components)
    spacing, origin, direction = lps_geometry(_matrix_of(node))
    return ImageVolume(
        array=np.ascontiguousarray(luminance, dtype=np.float32),
        spacing=spacing,  # type: ignore[arg-type]
        origin=origin,  # type: ignore[arg-type]
        direction=direction,
        description=f"{node.GetClassName()} ({components} component{'s' if components > 1 else ''})",
    )


# --------------------------------------------------------------------------- lesions


def _oriented_image_from_mask(mask: np.ndarray, reference_volume_node: Any) -> Any:
    import slicer
    import vtk
    from vtk.util import numpy_support

    k, j, i = mask.shape
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(i, j, k)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    matrix = vtk.vtkMatrix4x4()
    reference_volume_node.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = (mask > 0).astype(np.uint8).ravel()
    return image


def _in_reference_grid(oriented_image: Any, reference_volume_node: Any) -> np.ndarray:
    """Nearest-neighbour resampling of an oriented image into the reference volume's (k, j, i) grid."""
    import slicer
    from vtk.util import numpy_support

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    reference = logic.CreateOrientedImageDataFromVolumeNode(reference_volume_node)
    resampled = slicer.vtkOrientedImageData()
    # padImage=False: the output covers exactly the reference extent (cropped where the input
    # reaches outside it, zero where the input does not cover it).
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        oriented_image, reference, resampled, False, False
    ):
        raise LesionError(
            f"the lesion could not be resampled into the grid of '{reference_volume_node.GetName()}'"
        )
    shape = _dimensions_kji(reference_volume_node)
    out = np.zeros(shape, dtype=np.int32)
    scalars = resampled.GetPointData().GetScalars()
    if scalars is None:
        return out
    e = resampled.GetExtent()
    data = numpy_support.vtk_to_numpy(scalars).reshape(e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    # Paste by extent: robust even if the output extent is not exactly the reference's.
    lo = [max(e[2 * a], 0) for a in (2, 1, 0)]
    hi = [min(e[2 * a + 1] + 1, shape[n]) for n, a in enumerate((2, 1, 0))]
    if all(h > low for low, h in zip_strict(lo, hi)):
        src = tuple(slice(low - e[2 * a], h - e[2 * a]) for low, h, a in zip_strict(lo, hi, (2, 1, 0)))
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = data[src]
    return out


def add_segmentation_from_mask(
    scene: Any,
    mask: np.ndarray,
    reference_volume_node: Any,
    name: str,
    segment_name: str = "Lesion",
    *,
    color: tuple[float, float, float] = (0.9, 0.2, 0.2),
) -> tuple[Any, str]:
    """Add a segmentation node with one segment drawn from a mask on the reference grid.

    Args:
        scene: the MRML scene.
        mask: (k, j, i) array in the reference volume's grid; non-zero is the lesion.
        reference_volume_node: the image the mask belongs to (its geometry is used).
        name: segmentation node name.
        segment_name: name of the segment.
        color: segment colour (r, g, b) in 0..1.

    Returns:
        (segmentation node, segment id).

    Raises:
        LesionError: mask size differs from the image, or the mask is empty.
    """
    mask = np.asarray(mask)
    shape = _dimensions_kji(reference_volume_node)
    if mask.shape != shape:
        raise LesionError(
            f"the lesion mask for '{name}' has shape {mask.shape} but image "
            f"'{reference_volume_node.GetName()}' has {shape} (slices, rows, columns): "
            "use the mask drawn on this image"
        )
    if not np.any(mask):
        raise LesionError(f"the lesion mask for '{name}' is empty: draw the lesion, then try again")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    if reference_volume_node.GetTransformNodeID():
        node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
    segment_id = node.AddSegmentFromBinaryLabelmapRepresentation(
        _oriented_image_from_mask(mask, reference_volume_node), segment_name, tuple(float(c) for c in color)
    )
    if not segment_id:
        raise LesionError(f"segment '{segment_name}' could not be added to '{name}'")
    return node, segment_id


def mask_from_segment(segmentation_node: Any, segment_id: str, reference_volume_node: Any) -> np.ndarray:
    """The binary mask of one segment in the reference volume's grid.

    Args:
        segmentation_node: vtkMRMLSegmentationNode.
        segment_id: id of the segment (``GetSegmentIdBySegmentName`` gives it from the name).
        reference_volume_node: the image whose (k, j, i) grid the mask is returned in.

    Returns:
        uint8 (k, j, i) array, 1 inside the segment.

    Raises:
        LesionError: unknown segment, empty segment, or a segment outside the image.
    """
    import slicer

    seg_name = segmentation_node.GetName()
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise LesionError(
            f"segmentation '{seg_name}' has no segment with id '{segment_id}': choose the lesion segment"
        )
    segment_name = segment.GetName()
    labelmap_name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    if not segmentation.ContainsRepresentation(labelmap_name):
        segmentation.CreateRepresentation(labelmap_name)
    image = slicer.vtkOrientedImageData()
    ok = slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, image
    )
    empty_message = (
        f"segment '{segment_name}' of '{seg_name}' is empty: "
        "draw the lesion in the Segment Editor, then apply again"
    )
    if not ok or image.GetPointData().GetScalars() is None or image.IsEmpty():
        raise LesionError(empty_message)
    # A shared labelmap holds several segments: this segment is its own label value.
    grid = _in_reference_grid(image, reference_volume_node)
    mask = (grid == segment.GetLabelValue()).astype(np.uint8)
    if not mask.any():
        from vtk.util import numpy_support

        own = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        if not np.any(own == segment.GetLabelValue()):
            raise LesionError(empty_message)
        raise LesionError(
            f"segment '{segment_name}' of '{seg_name}' lies outside image "
            f"'{reference_volume_node.GetName()}': draw the lesion on this image"
        )
    return mask


def mask_from_labelmap(labelmap_node: Any, reference_volume_node: Any) -> np.ndarray:
    """The non-zero voxels of a labelmap as a mask in the reference volume's grid.

    Resampled (nearest neighbour) when the labelmap's grid differs from the image's.

    Args:
        labelmap_node: vtkMRMLLabelMapVolumeNode (any non-zero label is the lesion).
        reference_volume_node: the image whose (k, j, i) grid the mask is returned in.

    Returns:
        uint8 (k, j, i) array, 1 inside the lesion.

    Raises:
        LesionError: the labelmap is empty or does not overlap the image.
    """
    import slicer

    name = labelmap_node.GetName()
    if labelmap_node.GetImageData() is None:
        raise LesionError(f"labelmap '{name}' has no image data: load or draw the lesion first")
    array = slicer.util.arrayFromVolume(labelmap_node)
    if not np.any(array):
        raise LesionError(f"labelmap '{name}' is empty: draw the lesion, then apply again")
    same_grid = (
        _dimensions_kji(labelmap_node) == _dimensions_kji(reference_volume_node)
        and np.allclose(_matrix_of(labelmap_node), _matrix_of(reference_volume_node), atol=1e-6)
        and labelmap_node.GetTransformNodeID() == reference_volume_node.GetTransformNodeID()
    )
    if same_grid:
        return (array != 0).astype(np.uint8)
    image = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap_node)
    mask = (_in_reference_grid(image, reference_volume_node) != 0).astype(np.uint8)
    if not mask.any():
        raise LesionError(
            f"labelmap '{name}' does not overlap image '{reference_volume_node.GetName()}': "
            "use the labelmap drawn on this image"
        )
    return mask


# --------------------------------------------------------------------------- tables


def format_value(value: str | float) -> str:
    """Text of a table cell: strings as they are, numbers so that ``float(text)`` is exact.

    Args:
        value: a string or a number (bool is written as "yes" / "no").

    Returns:
        The cell text.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def _fill_table(node: Any, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    import vtk

    arrays = []
    for column in columns:
        array = vtk.vtkStringArray()
        array.SetName(column)
        arrays.append(array)
    for row in rows:
        for array, text in zip_strict(arrays, row):
            array.InsertNextValue(text)
    table = vtk.vtkTable()
    for array in arrays:
        table.AddColumn(array)
    was_modifying = node.StartModify()
    node.SetAndObserveTable(table)
    node.Modified()
    node.EndModify(was_modifying)


def write_features_table(
    scene: Any,
    rows: list[tuple[str, str, str, float]],
    provenance: dict[str, str],
    name: str,
    *,
    node: Any = None,
    label: str = "Lesion",
) -> Any:
    """Create or update the features table (SlicerRadiomics layout, provenance as attributes).

    Args:
        scene: the MRML scene.
        rows: (image type, feature class, feature name, value), e.g. ("original", "shape2D",
            "Elongation", 0.81).
        provenance: provenance text by key; stored as ``DLRPredictor.provenance.<key>`` attributes
            (previous provenance attributes are removed).
        name: node name; an existing table of that name is updated.
        node: an explicit table node to update instead.
        label: the "Label" column (the lesion segment's name), as SlicerRadiomics writes it.

    Returns:
        The vtkMRMLTableNode.
    """
    node = node if node is not None else get_or_create_node(scene, "vtkMRMLTableNode", name)
    text_rows = [(str(label), str(t), str(c), str(f), format_value(v)) for t, c, f, v in rows]
    _fill_table(node, FEATURE_COLUMNS, text_rows)
    for attribute in list(node.GetAttributeNames() or ()):
        if attribute.startswith(PROVENANCE_ATTRIBUTE_PREFIX):
            node.RemoveAttribute(attribute)
    for key, value in provenance.items():
        node.SetAttribute(PROVENANCE_ATTRIBUTE_PREFIX + str(key), str(value))
    node.SetAttribute(TABLE_KIND_ATTRIBUTE, "features")
    return node


def read_features_table(node: Any) -> list[tuple[str, str, str, float]]:
    """The rows of a table written by :func:`write_features_table`.

    Args:
        node: the features table node.

    Returns:
        (image type, feature class, feature name, value) rows.
    """
    return [
        (
            node.GetCellText(r, 1),
            node.GetCellText(r, 2),
            node.GetCellText(r, 3),
            float(node.GetCellText(r, 4)),
        )
        for r in range(node.GetNumberOfRows())
    ]


def read_provenance(node: Any) -> dict[str, str]:
    """The provenance attributes of a features table.

    Args:
        node: the features table node.

    Returns:
        Provenance text by key.
    """
    return {
        attribute[len(PROVENANCE_ATTRIBUTE_PREFIX) :]: node.GetAttribute(attribute)
        for attribute in (node.GetAttributeNames() or ())
        if attribute.startswith(PROVENANCE_ATTRIBUTE_PREFIX)
    }


def write_key_value_table(
    scene: Any, items: list[tuple[str, str | float]], name: str, node: Any = None
) -> Any:
    """Create or update a two-column ("Name", "Value") table, e.g. the prediction table.

    Args:
        scene: the MRML scene.
        items: (name, value) pairs; numbers are written so that ``float(text)`` is exact.
        name: node name; an existing table of that name is updated.
        node: an explicit table node to update instead.

    Returns:
        The vtkMRMLTableNode.
    """
    node = node if node is not None else get_or_create_node(scene, "vtkMRMLTableNode", name)
    _fill_table(node, KEY_VALUE_COLUMNS, [(str(k), format_value(v)) for k, v in items])
    node.SetAttribute(TABLE_KIND_ATTRIBUTE, "key-value")
    return node


def read_key_value_table(node: Any) -> list[tuple[str, str]]:
    """The (name, value text) rows of a table written by :func:`write_key_value_table`.

    Args:
        node: the table node.

    Returns:
        (name, value text) pairs in table order.
    """
    return [(node.GetCellText(r, 0), node.GetCellText(r, 1)) for r in range(node.GetNumberOfRows())]


# --------------------------------------------------------------------------- heatmap


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

    Returns:
        The vtkMRMLScalarVolumeNode, window/level 0..1, values below ``HEATMAP_HIDE_BELOW``
        transparent.

    Raises:
        InputError: shape differs from the image, non-finite values, or opacity outside 0..1.
    """
    import slicer

    values = np.asarray(heatmap, dtype=np.float32)
    shape = _dimensions_kji(reference_volume_node)
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
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(_matrix_of(reference_volume_node)))
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
    set_foreground(scene, node, reference_volume_node, opacity)
    return node


# --------------------------------------------------------------------------- failure safety


class SceneGuard:
    """Remove every node added inside the block when the block raises, then re-raise.

    Display and storage nodes added with them are removed too, so a failure leaves the node
    count unchanged. Nodes that existed before and were updated in place are not rolled back:
    compute everything first and write only at the end.

    Example::

        with SceneGuard(scene):
            write_features_table(scene, rows, provenance, "features")
            write_heatmap(scene, heatmap, image_node, "heatmap")
    """

    def __init__(self, scene: Any) -> None:
        """Args: scene: the MRML scene to guard."""
        self.scene = scene
        self._ids: set[str] = set()

    def __enter__(self) -> SceneGuard:
        self._ids = set(_node_ids(self.scene))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is not None:
            self.remove_added_nodes()
        return False

    def remove_added_nodes(self) -> int:
        """Remove the nodes added since entry.

        Returns:
            How many nodes the scene lost (removing a node also removes its display and
            storage nodes).
        """
        before = self.scene.GetNumberOfNodes()
        added = [node_id for node_id in _node_ids(self.scene) if node_id not in self._ids]
        # Displayable nodes first: their display / storage nodes then go with them.
        added.sort(key=lambda node_id: not self.scene.GetNodeByID(node_id).IsA("vtkMRMLDisplayableNode"))
        for node_id in added:
            node = self.scene.GetNodeByID(node_id)
            if node is not None:
                self.scene.RemoveNode(node)
        return before - self.scene.GetNumberOfNodes()


def _node_ids(scene: Any) -> list[str]:
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


# --------------------------------------------------------------------------- scene files


def save_scene(scene: Any, path: str | Path) -> Path:
    """Save the scene with all its data as a .mrb bundle, or as a .mrml file with a Data folder.

    The file appears only once complete: it is written under a temporary name in the same folder
    and renamed.

    Args:
        scene: the MRML scene.
        path: ``*.mrb`` (one file), or ``*.mrml`` (the scene file, data in ``Data/`` next to it).

    Returns:
        The written path.

    Raises:
        InputError: unsupported extension. DLRError: the scene could not be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mrb", ".mrml"):
        raise InputError(f"scene file {path.name} must end with .mrb or .mrml")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=path.parent))
    try:
        bundle = staging / f"{path.stem}.mrb"
        if not scene.WriteToMRB(str(bundle)):
            raise DLRError(f"could not write scene {path}: check the folder is writable and has space")
        if suffix == ".mrb":
            os.replace(bundle, path)
        else:
            _unpack_as_mrml(bundle, staging / "unpacked", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _unpack_as_mrml(bundle: Path, folder: Path, path: Path) -> None:
    """Unpack a bundle's data next to ``path`` and move its .mrml there last."""
    with zipfile.ZipFile(bundle) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise DLRError(f"unexpected entry {member!r} in the scene bundle")
        archive.extractall(folder)
    roots = [p for p in folder.iterdir() if p.is_dir()]
    root = roots[0] if len(roots) == 1 else folder
    mrml_files = sorted(root.glob("*.mrml"))
    if not mrml_files:
        raise DLRError(f"could not write scene {path}: the bundle holds no .mrml file")
    for item in root.iterdir():
        if item.suffix.lower() == ".mrml":
            continue
        target = path.parent / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            os.replace(item, target)
    os.replace(mrml_files[0], path)


def load_scene(path: str | Path) -> Any:
    """Load a .mrb or .mrml scene into a fresh plain-Python scene.

    Args:
        path: a scene file written by :func:`save_scene` or by Slicer.

    Returns:
        A new scene from ``scene_adapter.create_scene()`` holding the file's nodes and data.

    Raises:
        InputError: missing file or unsupported extension. DLRError: the file could not be read.
    """
    from . import adapter as scene_adapter

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".mrb", ".mrml"):
        raise InputError(f"scene file {path.name} must end with .mrb or .mrml")
    scene = scene_adapter.create_scene()
    if suffix == ".mrb":
        ok = scene.ReadFromMRB(str(path.resolve()))
    else:
        scene.SetURL(str(path.resolve()))
        ok = scene.Import()
    if not ok:
        scene.Clear(1)
        raise DLRError(f"could not read scene {path}: the file is damaged or not a Slicer scene")
    return scene
