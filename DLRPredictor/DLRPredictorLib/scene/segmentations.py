"""Lesion masks <-> segmentation and labelmap nodes, always in the reference image's (k, j, i) grid.

Uses the static Segmentations logic methods, never the ``slicer.mrmlScene`` global, and adds no
temporary nodes. A segment or labelmap on another grid is resampled (nearest neighbour) into the
image's grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import LesionError
from .geometry import node_ijk_to_ras, node_shape_kji
from .volumes import is_node, refuse_node


def lesion_segment_id(
    segmentation_node: Any,
    segment_id: Any,
    argument: str = "segmentation_node",
    id_argument: str = "segment_id",
) -> str:
    """Check a segmentation node and a segment id given by a caller; the id of the lesion segment.

    Args:
        segmentation_node: what was given as the segmentation.
        segment_id: the segment id given, or None / "" for the only segment.
        argument, id_argument: the two arguments' names, for messages.

    Returns:
        ``segment_id``, or the id of the segmentation's only segment.

    Raises:
        InputError: not a segmentation node; a segment id that is not text.
        LesionError: no such segment (the message gives the id when a segment has that name), or
            no id given for a segmentation that does not have exactly one segment.
    """
    if not is_node(segmentation_node, "vtkMRMLSegmentationNode"):
        raise refuse_node(segmentation_node, argument, "a segmentation node (the lesion)")
    if segment_id is not None and not isinstance(segment_id, str):
        raise refuse_node(segment_id, id_argument, "the segment's id as text (or None for the only segment)")
    seg_name = segmentation_node.GetName()
    segmentation = segmentation_node.GetSegmentation()
    if not segment_id:
        count = segmentation.GetNumberOfSegments()
        if count != 1:
            raise LesionError(
                f"segmentation '{seg_name}' has {count} segments: choose the lesion segment ({id_argument})"
            )
        return str(segmentation.GetNthSegmentID(0))
    if segmentation.GetSegment(segment_id) is None:
        by_name = segmentation.GetSegmentIdBySegmentName(segment_id)
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        hint = (
            f"'{segment_id}' is the name of segment '{by_name}': give its id"
            if by_name
            else f"its segment ids are {', '.join(repr(i) for i in ids) or 'none'}"
        )
        raise LesionError(f"{id_argument} '{segment_id}' is not a segment of '{seg_name}': {hint}")
    return segment_id


def oriented_image_from_mask(mask: np.ndarray, reference_volume_node: Any) -> Any:
    """A binary vtkOrientedImageData of a mask on the reference volume's grid.

    Args:
        mask: (k, j, i) array in the reference volume's grid; non-zero is inside.
        reference_volume_node: the volume whose IJKToRAS places the mask.

    Returns:
        The oriented image (unsigned char, 1 inside), e.g. for
        ``AddSegmentFromBinaryLabelmapRepresentation``.
    """
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
    shape = node_shape_kji(reference_volume_node)
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
    shape = node_shape_kji(reference_volume_node)
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
        oriented_image_from_mask(mask, reference_volume_node), segment_name, tuple(float(c) for c in color)
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
        node_shape_kji(labelmap_node) == node_shape_kji(reference_volume_node)
        and np.allclose(node_ijk_to_ras(labelmap_node), node_ijk_to_ras(reference_volume_node), atol=1e-6)
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
