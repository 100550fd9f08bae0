"""scene_io on real MRML nodes: geometry, lesions, tables, heatmap, failure safety, scene files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from DLRPredictorLib.base.case import ImageVolume  # noqa: E402
from DLRPredictorLib.base.errors import InputError, LesionError  # noqa: E402
from DLRPredictorLib.scene import scene_io  # noqa: E402

BT601 = np.array([0.299, 0.587, 0.114])


def _rotated_image(flip_k: bool = True) -> sitk.Image:
    """A 2-slice image with anisotropic spacing, an origin and a rotated direction.

    With ``flip_k`` the slice axis points down: a left-handed index frame.
    """
    # Integer voxel values (exact in float32): read back, they are compared exactly below.
    image = sitk.GetImageFromArray(np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7))
    image.SetSpacing((0.3, 0.45, 2.5))
    image.SetOrigin((12.0, -7.5, 3.25))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0 if flip_k else 1.0))
    return image


def _volume_from_sitk(image: sitk.Image) -> ImageVolume:
    return ImageVolume(
        array=sitk.GetArrayFromImage(image).astype(np.float32),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
    )


def _ijk_to_ras(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _asymmetric_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """An L-shaped lesion plus one corner voxel: any flip or transpose changes it."""
    mask = np.zeros(shape, np.uint8)
    mask[-1, 1:4, 2:6] = 1
    mask[-1, 3, 2:3] = 0
    mask[-1, shape[1] - 1, 0] = 1
    return mask


@pytest.fixture
def image_node(scene):
    return scene_io.add_volume_node(scene, _volume_from_sitk(_rotated_image()), "Image")


# --------------------------------------------------------------------------- volumes


def test_volume_ijk_to_ras_matches_simpleitk_physical_points(scene):
    image = _rotated_image()
    node = scene_io.add_volume_node(scene, _volume_from_sitk(image), "Image")
    matrix = _ijk_to_ras(node)
    for index in [(0, 0, 0), (6, 0, 0), (0, 4, 0), (0, 0, 1), (6, 4, 1), (3, 2, 1)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = matrix @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)
    # Exact: the same float32 voxels copied into the node, no arithmetic.
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(image))
    assert node.GetDisplayNode() is not None


def test_image_from_volume_node_gives_back_the_lps_geometry(scene):
    image = _rotated_image()
    node = scene_io.add_volume_node(scene, _volume_from_sitk(image), "Image")
    back = scene_io.image_from_volume_node(node)
    np.testing.assert_allclose(back.spacing, image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.origin, image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.direction, image.GetDirection(), atol=1e-9)
    # Exact: the same float32 voxels copied back, no arithmetic.
    np.testing.assert_array_equal(back.array, sitk.GetArrayFromImage(image))
    assert back.array.dtype == np.float32


@pytest.mark.parametrize("components", [3, 4])
def test_rgb_vector_volume_gives_bt601_luminance_like_the_scalar_path(scene, components):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(1, 6, 8, components), dtype=np.uint8)
    vector_node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    vector_node.SetSpacing(0.2, 0.3, 1.0)
    slicer.util.updateVolumeFromArray(vector_node, rgb)
    expected = rgb[..., :3].astype(np.float64) @ BT601  # alpha ignored

    from_vector = scene_io.image_from_volume_node(vector_node)
    np.testing.assert_allclose(from_vector.array, expected, atol=1e-3)
    assert from_vector.spacing == pytest.approx((0.2, 0.3, 1.0))

    scalar_node = scene_io.add_volume_node(scene, ImageVolume(array=expected.astype(np.float32)), "grey")
    from_scalar = scene_io.image_from_volume_node(scalar_node)
    np.testing.assert_allclose(from_vector.array, from_scalar.array, atol=1e-3)


def test_lesion_and_heatmap_on_an_rgba_vector_volume(scene):
    """BrEaST images are RGBA: Slicer loads them as vector volumes, used as the reference grid."""
    rgba = np.random.default_rng(3).integers(0, 256, size=(1, 5, 7, 4), dtype=np.uint8)
    vector_node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgba")
    vector_node.SetSpacing(0.5, 0.5, 1.0)
    slicer.util.updateVolumeFromArray(vector_node, rgba)
    mask = _asymmetric_mask((1, 5, 7))
    seg_node, segment_id = scene_io.add_segmentation_from_mask(scene, mask, vector_node, "seg")
    np.testing.assert_array_equal(scene_io.mask_from_segment(seg_node, segment_id, vector_node), mask)
    heat = scene_io.write_heatmap(scene, np.full((1, 5, 7), 0.5, np.float32), vector_node, "heat")
    assert heat.GetImageData().GetDimensions() == (7, 5, 1)
    assert heat.GetImageData().GetNumberOfScalarComponents() == 1
    np.testing.assert_array_equal(_ijk_to_ras(heat), _ijk_to_ras(vector_node))  # a copied matrix: exact


def test_volume_without_image_data_is_an_input_error(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "nothing")
    with pytest.raises(InputError, match="'nothing' has no image data"):
        scene_io.image_from_volume_node(empty)


# --------------------------------------------------------------------------- lesions


def test_segment_from_asymmetric_mask_and_back_is_identical(scene, image_node):
    mask = _asymmetric_mask((2, 5, 7))
    seg_node, segment_id = scene_io.add_segmentation_from_mask(scene, mask, image_node, "Lesion seg")
    assert seg_node.GetSegmentation().GetSegment(segment_id).GetName() == "Lesion"
    back = scene_io.mask_from_segment(seg_node, segment_id, image_node)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)


def test_saved_seg_nrrd_has_the_same_voxels_for_slicerio(scene, image_node, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    image = _rotated_image()
    mask = _asymmetric_mask((2, 5, 7))
    seg_node, _ = scene_io.add_segmentation_from_mask(scene, mask, image_node, "Lesion seg")
    storage = seg_node.CreateDefaultStorageNode()
    path = tmp_path / "lesion.seg.nrrd"
    storage.SetFileName(str(path))
    assert storage.WriteData(seg_node)

    segmentation = slicerio.read_segmentation(str(path))
    voxels = slicerio.segment_mask(segmentation, "Lesion")  # (i, j, k) in the file's own grid
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    # Map every lesion voxel of the file to the image's index grid through physical space.
    rebuilt = np.zeros(mask.shape, np.uint8)
    for i, j, k in np.argwhere(voxels):
        lps = ijk_to_lps @ np.array([i, j, k, 1.0])
        index = image.TransformPhysicalPointToContinuousIndex(tuple(lps[:3]))
        ii, jj, kk = (round(x) for x in index)
        rebuilt[kk, jj, ii] = 1
    np.testing.assert_array_equal(rebuilt, mask)


def test_segment_in_a_shared_labelmap_returns_only_its_own_voxels(scene, image_node):
    lesion = _asymmetric_mask((2, 5, 7))
    other = np.zeros_like(lesion)
    other[0, 0:2, 0:2] = 1
    seg_node, lesion_id = scene_io.add_segmentation_from_mask(scene, lesion, image_node, "seg")
    other_image = scene_io.oriented_image_from_mask(other, image_node)
    other_id = seg_node.AddSegmentFromBinaryLabelmapRepresentation(other_image, "Other", (0.0, 1.0, 0.0))
    segmentation = seg_node.GetSegmentation()
    segmentation.CollapseBinaryLabelmaps(False)
    assert segmentation.GetNumberOfLayers() == 1
    np.testing.assert_array_equal(scene_io.mask_from_segment(seg_node, lesion_id, image_node), lesion)
    np.testing.assert_array_equal(scene_io.mask_from_segment(seg_node, other_id, image_node), other)


def test_empty_segment_raises_a_lesion_error_naming_the_segment(scene, image_node):
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(image_node)
    segment_id = seg_node.GetSegmentation().AddEmptySegment("", "Tumour")
    with pytest.raises(LesionError, match="segment 'Tumour' of 'My segmentation' is empty"):
        scene_io.mask_from_segment(seg_node, segment_id, image_node)


def test_unknown_segment_and_bad_masks_are_lesion_errors(scene, image_node):
    mask = _asymmetric_mask((2, 5, 7))
    seg_node, _ = scene_io.add_segmentation_from_mask(scene, mask, image_node, "seg")
    with pytest.raises(LesionError, match="no segment with id 'missing'"):
        scene_io.mask_from_segment(seg_node, "missing", image_node)
    with pytest.raises(LesionError, match="is empty"):
        scene_io.add_segmentation_from_mask(scene, np.zeros_like(mask), image_node, "empty")
    with pytest.raises(LesionError, match=r"has shape \(1, 5, 7\)"):
        scene_io.add_segmentation_from_mask(scene, mask[:1], image_node, "wrong size")


def _labelmap(scene, array: np.ndarray, volume: ImageVolume, name: str):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(scene_io.ijk_to_ras_matrix(volume)))
    slicer.util.updateVolumeFromArray(node, array)
    return node


def test_labelmap_on_the_same_grid_gives_its_non_zero_voxels(scene, image_node):
    labels = _asymmetric_mask((2, 5, 7)).astype(np.int16) * 3
    node = _labelmap(scene, labels, scene_io.image_from_volume_node(image_node), "labels")
    np.testing.assert_array_equal(scene_io.mask_from_labelmap(node, image_node), labels > 0)


def test_coarser_labelmap_is_resampled_into_the_image_grid(scene):
    image = ImageVolume(array=np.zeros((1, 8, 8), np.float32))
    image_node = scene_io.add_volume_node(scene, image, "fine image")
    coarse = np.zeros((1, 4, 4), np.uint8)
    coarse[0, 1, 1:3] = 1
    coarse[0, 3, 0] = 1
    # 2 mm voxels whose centres sit between two 1 mm voxels: each covers a 2x2 block exactly.
    geometry = ImageVolume(array=coarse, spacing=(2.0, 2.0, 1.0), origin=(0.5, 0.5, 0.0))
    node = _labelmap(scene, coarse, geometry, "coarse labels")
    expected = np.kron(coarse[0], np.ones((2, 2), np.uint8))[None]
    np.testing.assert_array_equal(scene_io.mask_from_labelmap(node, image_node), expected)


def test_labelmap_outside_the_image_is_a_clear_lesion_error(scene):
    image_node = scene_io.add_volume_node(scene, ImageVolume(array=np.zeros((1, 8, 8), np.float32)), "img")
    far = ImageVolume(array=np.ones((1, 4, 4), np.uint8), origin=(500.0, 0.0, 0.0))
    node = _labelmap(scene, np.ones((1, 4, 4), np.uint8), far, "far labels")
    with pytest.raises(LesionError, match="'far labels' does not overlap image 'img'"):
        scene_io.mask_from_labelmap(node, image_node)


# --------------------------------------------------------------------------- tables

FEATURE_ROWS = [
    ("original", "shape2D", "Elongation", 0.8123456789012345),
    ("original", "firstorder", "Mean", 123.25),
    ("wavelet-LH", "glcm", "Contrast", 1.0e-12),
]


def test_features_table_has_the_slicerradiomics_layout_and_exact_values(scene):
    node = scene_io.write_features_table(
        scene, FEATURE_ROWS, {"bundle_id": "dlr-default 1.0", "pyradiomics": "3.1.4"}, "features"
    )
    assert [node.GetColumnName(c) for c in range(node.GetNumberOfColumns())] == [
        "Label",
        "Input image type",
        "Feature Class",
        "Feature Name",
        "Value",
    ]
    assert node.GetNumberOfRows() == 3
    assert (
        node.GetCellText(1, 0),
        node.GetCellText(1, 1),
        node.GetCellText(1, 2),
        node.GetCellText(1, 3),
    ) == (
        "Lesion",
        "original",
        "firstorder",
        "Mean",
    )
    # Exact (here and below): the cells hold repr() text, which reads back as the very same float.
    assert [float(node.GetCellText(r, 4)) for r in range(3)] == [row[3] for row in FEATURE_ROWS]
    assert scene_io.read_features_table(node) == FEATURE_ROWS
    assert node.GetAttribute("DLRPredictor.provenance.bundle_id") == "dlr-default 1.0"
    assert scene_io.read_provenance(node) == {"bundle_id": "dlr-default 1.0", "pyradiomics": "3.1.4"}


def test_rewriting_a_table_by_name_updates_it_without_adding_nodes(scene):
    first = scene_io.write_features_table(scene, FEATURE_ROWS, {"old": "x"}, "features")
    count = scene.GetNumberOfNodes()
    second = scene_io.write_features_table(scene, FEATURE_ROWS[:1], {"new": "y"}, "features")
    assert second.GetID() == first.GetID()
    assert scene.GetNumberOfNodes() == count
    assert scene_io.read_features_table(second) == FEATURE_ROWS[:1]  # repr() round trip: exact
    assert scene_io.read_provenance(second) == {"new": "y"}

    table = scene_io.write_key_value_table(scene, [("a", 1.0)], "prediction")
    count = scene.GetNumberOfNodes()
    again = scene_io.write_key_value_table(scene, [("b", 2.0)], "another name", node=table)
    assert again.GetID() == table.GetID()
    assert scene.GetNumberOfNodes() == count
    assert scene_io.read_key_value_table(again) == [("b", "2.0")]


def test_key_value_table_keeps_text_and_exact_numbers(scene):
    items = [
        ("Probability (malignant)", 1.0 / 3.0),
        ("Predicted label", "malignant"),
        ("Cutoff", 0.41234567890123),
        ("Tiny", 2.5e-17),
        ("Count", 7),
    ]
    node = scene_io.write_key_value_table(scene, items, "prediction")
    assert [node.GetColumnName(c) for c in range(node.GetNumberOfColumns())] == ["Name", "Value"]
    rows = scene_io.read_key_value_table(node)
    assert [name for name, _ in rows] == [name for name, _ in items]
    assert rows[1][1] == "malignant"
    for (_, text), (_, value) in zip(rows, items, strict=True):
        if not isinstance(value, str):
            assert float(text) == value  # repr() round trip: exact


# --------------------------------------------------------------------------- heatmap


def _add_slice_views(scene) -> list:
    """The three slice composite nodes that the application's layout creates."""
    return [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", name) for name in ("Red", "Yellow", "Green")]


def test_heatmap_has_the_image_grid_colour_map_and_is_the_foreground(scene, image_node):
    composites = _add_slice_views(scene)
    heat = np.linspace(0, 1, 70, dtype=np.float32).reshape(2, 5, 7)
    node = scene_io.write_heatmap(scene, heat, image_node, "Grad-CAM", opacity=0.4)

    assert node.GetImageData().GetDimensions() == image_node.GetImageData().GetDimensions()
    np.testing.assert_array_equal(_ijk_to_ras(node), _ijk_to_ras(image_node))  # a copied matrix: exact
    assert node.GetSpacing() == pytest.approx(image_node.GetSpacing())
    assert node.GetOrigin() == pytest.approx(image_node.GetOrigin())
    np.testing.assert_allclose(slicer.util.arrayFromVolume(node), heat)

    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == scene_io.HEATMAP_COLOR_NODE_ID
    assert scene.GetNodeByID(display.GetColorNodeID()) is not None
    assert display.GetAutoWindowLevel() == 0
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 1.0))
    # Zero (no attention, outside the lesion crop) is transparent; any positive value shows.
    assert display.GetApplyThreshold() == 1
    assert 0.0 < display.GetLowerThreshold() < 0.01
    assert display.GetUpperThreshold() >= 1.0
    for composite in composites:
        assert composite.GetForegroundVolumeID() == node.GetID()
        assert composite.GetBackgroundVolumeID() == image_node.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.4)


def test_rewriting_the_heatmap_by_name_updates_the_same_node(scene, image_node):
    first = scene_io.write_heatmap(scene, np.zeros((2, 5, 7), np.float32), image_node, "Grad-CAM")
    count = scene.GetNumberOfNodes()
    second = scene_io.write_heatmap(scene, np.full((2, 5, 7), 0.75, np.float32), image_node, "Grad-CAM")
    assert second.GetID() == first.GetID()
    assert scene.GetNumberOfNodes() == count
    np.testing.assert_allclose(slicer.util.arrayFromVolume(second), 0.75)


def test_heatmap_without_slice_views_creates_none_and_rejects_bad_input(scene, image_node):
    scene_io.write_heatmap(scene, np.zeros((2, 5, 7), np.float32), image_node, "Grad-CAM")
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode") == 0
    with pytest.raises(InputError, match="heatmap shape"):
        scene_io.write_heatmap(scene, np.zeros((1, 5, 7), np.float32), image_node, "Grad-CAM")
    with pytest.raises(InputError, match="opacity"):
        scene_io.write_heatmap(scene, np.zeros((2, 5, 7), np.float32), image_node, "Grad-CAM", opacity=1.5)


# --------------------------------------------------------------------------- failure safety


def test_scene_guard_removes_nodes_added_before_an_exception(scene, image_node):
    before_ids = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    with pytest.raises(RuntimeError, match="late failure"), scene_io.SceneGuard(scene):
        scene_io.write_features_table(scene, FEATURE_ROWS, {}, "features")
        scene_io.write_heatmap(scene, np.zeros((2, 5, 7), np.float32), image_node, "Grad-CAM")
        scene_io.add_segmentation_from_mask(scene, _asymmetric_mask((2, 5, 7)), image_node, "seg")
        assert scene.GetNumberOfNodes() > len(before_ids)
        raise RuntimeError("late failure")
    after_ids = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    assert after_ids == before_ids
    assert scene.GetNodeByID(image_node.GetID()) is image_node


def test_scene_guard_keeps_nodes_when_the_block_succeeds(scene):
    with scene_io.SceneGuard(scene):
        node = scene_io.write_key_value_table(scene, [("a", "b")], "kept")
    assert scene.GetNodeByID(node.GetID()) is node


# --------------------------------------------------------------------------- scene files


def _full_scene(scene, flip_k: bool = False):
    image = _rotated_image(flip_k)
    image_node = scene_io.add_volume_node(scene, _volume_from_sitk(image), "Image")
    mask = _asymmetric_mask((2, 5, 7))
    scene_io.add_segmentation_from_mask(scene, mask, image_node, "Lesion segmentation")
    scene_io.write_features_table(scene, FEATURE_ROWS, {"bundle_id": "b;1:x"}, "features")
    items = [("Probability", 1.0 / 3.0), ("Label", "benign")]
    scene_io.write_key_value_table(scene, items, "prediction")
    heat = np.linspace(0, 1, 70, dtype=np.float32).reshape(2, 5, 7)
    scene_io.write_heatmap(scene, heat, image_node, "Grad-CAM")
    return sitk.GetArrayFromImage(image), mask, items, heat


def _check_reloaded(loaded, image_array, mask, items, heat) -> None:
    image_node = loaded.GetFirstNodeByName("Image")
    # Exact: float32 voxels saved and reloaded unchanged.
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(image_node), image_array)
    seg_node = loaded.GetFirstNodeByName("Lesion segmentation")
    segment_id = seg_node.GetSegmentation().GetSegmentIdBySegmentName("Lesion")
    np.testing.assert_array_equal(scene_io.mask_from_segment(seg_node, segment_id, image_node), mask)
    # Exact: the numbers are stored as repr() text (scene_io.format_value) and read back.
    assert scene_io.read_features_table(loaded.GetFirstNodeByName("features")) == FEATURE_ROWS
    assert scene_io.read_provenance(loaded.GetFirstNodeByName("features")) == {"bundle_id": "b;1:x"}
    rows = scene_io.read_key_value_table(loaded.GetFirstNodeByName("prediction"))
    assert float(rows[0][1]) == items[0][1] and rows[1] == ("Label", "benign")  # repr() text: exact
    heat_node = loaded.GetFirstNodeByName("Grad-CAM")
    # Exact: float32 voxels stored and read back as float32; both matrices are read by the same
    # reader from headers written by the same writer from one and the same matrix.
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(heat_node), heat)
    np.testing.assert_array_equal(_ijk_to_ras(heat_node), _ijk_to_ras(image_node))
    assert heat_node.GetDisplayNode().GetColorNodeID() == scene_io.HEATMAP_COLOR_NODE_ID


@pytest.mark.parametrize("file_name", ["case.mrb", "case.mrml"])
def test_scene_saved_and_reloaded_keeps_tables_volumes_and_segments(scene, tmp_path, file_name):
    expected = _full_scene(scene)
    path = scene_io.save_scene(scene, tmp_path / "out" / file_name)
    names = sorted(p.name for p in path.parent.iterdir())
    # Atomic write: no temporary file or folder is left next to the result.
    assert names == (["case.mrb"] if file_name.endswith(".mrb") else ["Data", "case.mrml"])
    loaded = scene_io.load_scene(path)
    try:
        _check_reloaded(loaded, *expected)
    finally:
        loaded.Clear(1)


def test_a_reloaded_scene_can_be_saved_again(scene, tmp_path):
    expected = _full_scene(scene)
    first = scene_io.load_scene(scene_io.save_scene(scene, tmp_path / "first.mrb"))
    try:
        second_path = scene_io.save_scene(first, tmp_path / "second.mrb")
    finally:
        first.Clear(1)
    second = scene_io.load_scene(second_path)
    try:
        _check_reloaded(second, *expected)
    finally:
        second.Clear(1)


def test_left_handed_image_reloads_with_reversed_slices_at_the_same_place(scene, tmp_path):
    """Slicer's NRRD reader makes a left-handed index frame right-handed by reversing k.

    Voxels stay at the same physical place and the lesion and heatmap follow the image, so
    code must read masks and heatmaps in the grid of the volume node it has, never assume a
    reloaded array has the original index order.
    """
    image_array, mask, _, heat = _full_scene(scene, flip_k=True)
    original_matrix = _ijk_to_ras(scene.GetFirstNodeByName("Image"))
    loaded = scene_io.load_scene(scene_io.save_scene(scene, tmp_path / "left.mrb"))
    try:
        image_node = loaded.GetFirstNodeByName("Image")
        # Exact: float32 voxels saved and reloaded, only reordered.
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(image_node), image_array[::-1])
        last_slice = original_matrix @ np.array([0.0, 0.0, image_array.shape[0] - 1, 1.0])
        np.testing.assert_allclose(
            _ijk_to_ras(image_node) @ np.array([0.0, 0.0, 0.0, 1.0]), last_slice, atol=1e-6
        )
        seg_node = loaded.GetFirstNodeByName("Lesion segmentation")
        segment_id = seg_node.GetSegmentation().GetSegmentIdBySegmentName("Lesion")
        np.testing.assert_array_equal(
            scene_io.mask_from_segment(seg_node, segment_id, image_node), mask[::-1]
        )
        heat_node = loaded.GetFirstNodeByName("Grad-CAM")
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(heat_node), heat[::-1])  # stored float32
        np.testing.assert_allclose(_ijk_to_ras(heat_node), _ijk_to_ras(image_node), atol=1e-9)
    finally:
        loaded.Clear(1)


def test_scene_file_errors_are_clear(scene, tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        scene_io.load_scene(tmp_path / "missing.mrb")
    with pytest.raises(InputError, match=r"must end with \.mrb or \.mrml"):
        scene_io.save_scene(scene, tmp_path / "scene.zip")


def test_get_or_create_node_matches_the_exact_class(scene):
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "same name")
    scalar = scene_io.get_or_create_node(scene, "vtkMRMLScalarVolumeNode", "same name")
    assert scalar.GetID() != label.GetID()
    assert scalar.GetClassName() == "vtkMRMLScalarVolumeNode"
    assert scene_io.get_or_create_node(scene, "vtkMRMLScalarVolumeNode", "same name") is scalar
