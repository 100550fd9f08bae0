"""The logic API on real MRML nodes and arrays, with a real bundle trained on synthetic cases.

What is pinned: an RGB vector volume and its luminance scalar volume predict alike; the output
nodes (SlicerRadiomics-style features table, prediction table, Grad-CAM volume on the image grid)
are created once and updated in place; a failure leaves the scene exactly as it was; the
contributions add up to the logits they explain; stability and the array API agree with the node
API; a labelmap lesion equals the same lesion as a segment.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import slicer
from DLRPredictorLib import api
from DLRPredictorLib.base.errors import ClinicalValueError, LesionError
from DLRPredictorLib.inputs import contours, phantom
from DLRPredictorLib.scene import scene_io

# SlicerRadiomics' exportToTable columns, written out here rather than taken from scene_io.
SLICER_RADIOMICS_COLUMNS = ("Label", "Input image type", "Feature Class", "Feature Name", "Value")
CLINICAL = {"age": 57, "birads": "4b"}


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


@pytest.fixture(scope="module")
def case():
    """A synthetic B-mode image (integer grey values 0-255) with its lesion mask."""
    return phantom.make_phantom(seed=11, shape=(96, 128), spacing_mm=0.1)


def _scalar_node(scene, volume, name="Image"):
    return scene_io.add_volume_node(scene, volume, name)


def _rgb_node(scene, volume, name="RGB image"):
    """A vector volume with R = G = B = the grey image: its luminance is the grey image itself."""
    grey = volume.array.astype(np.uint8)
    assert np.array_equal(grey.astype(np.float32), volume.array)  # integer grey levels: exact in float32
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(scene_io.ijk_to_ras_matrix(volume)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1)))
    return node


def _segmentation(scene, mask, volume_node, name="Lesion segmentation"):
    return scene_io.add_segmentation_from_mask(scene, mask, volume_node, name, "Lesion")


def _ijk_to_ras(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def _table_cells(node) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(node.GetCellText(r, c) for c in range(node.GetNumberOfColumns()))
        for r in range(node.GetNumberOfRows())
    )


def _snapshot(scene) -> dict[str, tuple]:
    """Every node's class, name, attributes and data (table cells, voxel arrays)."""
    state = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        attributes = tuple(sorted((a, node.GetAttribute(a)) for a in (node.GetAttributeNames() or ())))
        data: object = None
        if node.IsA("vtkMRMLTableNode"):
            data = (
                tuple(node.GetColumnName(c) for c in range(node.GetNumberOfColumns())),
                _table_cells(node),
            )
        elif node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
            data = slicer.util.arrayFromVolume(node).copy()
        state[node.GetID()] = (node.GetClassName(), node.GetName(), attributes, data)
    return state


def _assert_same_scene(before: dict[str, tuple], after: dict[str, tuple], what: str) -> None:
    assert list(after) == list(before), what  # no node added or removed
    for node_id, (cls, name, attributes, data) in before.items():
        cls2, name2, attributes2, data2 = after[node_id]
        assert (cls2, name2, attributes2) == (cls, name, attributes), (what, node_id)
        if isinstance(data, np.ndarray):
            # Exact: the same node's voxels read twice; nothing may have written to them.
            assert np.array_equal(data2, data), (what, node_id)
        else:
            assert data2 == data, (what, node_id)


# --------------------------------------------------------------------------- inputs


def test_rgb_vector_volume_predicts_like_its_luminance_scalar_volume(scene, tiny_bundle, case):
    volume, mask = case
    scalar = _scalar_node(scene, volume)
    rgb = _rgb_node(scene, volume)
    assert rgb.GetImageData().GetNumberOfScalarComponents() == 3
    seg, segment_id = _segmentation(scene, mask, scalar)

    from_scalar = api.predict_nodes(scalar, seg, segment_id, bundle_path=tiny_bundle, output_prefix="grey")
    from_rgb = api.predict_nodes(rgb, seg, segment_id, bundle_path=tiny_bundle, output_prefix="rgb")

    assert from_rgb.probability == pytest.approx(from_scalar.probability, rel=1e-12, abs=1e-15)
    assert from_rgb.signature_scores == pytest.approx(from_scalar.signature_scores, rel=1e-12, abs=1e-15)
    assert from_rgb.label == from_scalar.label
    # The heatmap of the RGB input lies on the RGB node's grid, as a one-component volume.
    heat = scene.GetNodeByID(from_rgb.heatmap_node_id)
    assert heat.GetImageData().GetDimensions() == rgb.GetImageData().GetDimensions()
    assert heat.GetImageData().GetNumberOfScalarComponents() == 1
    # Exact: write_heatmap copies the reference node's IJKToRAS matrix (no arithmetic on it).
    np.testing.assert_array_equal(_ijk_to_ras(heat), _ijk_to_ras(rgb))


def test_labelmap_lesion_predicts_like_the_same_segment(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Lesion labelmap")
    labelmap.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(_ijk_to_ras(image)))
    slicer.util.updateVolumeFromArray(labelmap, (mask * 3).astype(np.uint8))  # any non-zero label

    from_segment = api.predict_nodes(image, seg, segment_id, bundle_path=tiny_bundle, output_prefix="seg")
    from_labelmap = api.predict_nodes(
        image, labelmap_node=labelmap, bundle_path=tiny_bundle, output_prefix="lm"
    )

    assert from_labelmap.probability == pytest.approx(from_segment.probability, rel=1e-12, abs=1e-15)
    assert from_labelmap.signature_scores == pytest.approx(
        from_segment.signature_scores, rel=1e-12, abs=1e-15
    )


def test_predict_arrays_equals_predict_nodes_for_the_same_image(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)

    from_nodes = api.predict_nodes(image, seg, segment_id, clinical=CLINICAL, bundle_path=tiny_bundle)
    from_arrays = api.predict_arrays(
        volume.array[0], mask[0], spacing_mm=0.1, clinical=CLINICAL, bundle_path=tiny_bundle
    )

    assert from_arrays.probability == pytest.approx(from_nodes.probability, rel=1e-12, abs=1e-15)
    assert from_arrays.signature_scores == pytest.approx(from_nodes.signature_scores, rel=1e-12, abs=1e-15)
    assert from_arrays.model_used == from_nodes.model_used
    assert from_arrays.heatmap is not None and from_arrays.heatmap.shape == (1, 96, 128)
    # The array API's heatmap is the one written into the scene's heatmap volume.
    written = slicer.util.arrayFromVolume(scene.GetNodeByID(from_nodes.heatmap_node_id))
    np.testing.assert_allclose(written, np.clip(from_arrays.heatmap, 0, 1), atol=1e-6)


# --------------------------------------------------------------------------- outputs


def test_output_nodes_are_created_and_hold_the_result(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)
    n_before = scene.GetNumberOfNodes()

    # The CNN head's map: the tiny bundle's DL signature sees no evidence for malignancy in any
    # cell of this lesion, so its (default) map is flat (test_signature_cam.py checks that kind).
    res = api.predict_nodes(image, seg, segment_id, bundle_path=tiny_bundle, heatmap_kind="cnn-head")
    assert scene.GetNumberOfNodes() > n_before

    features = scene.GetNodeByID(res.features_table_node_id)
    assert features.IsA("vtkMRMLTableNode")
    columns = tuple(features.GetColumnName(c) for c in range(features.GetNumberOfColumns()))
    assert columns == SLICER_RADIOMICS_COLUMNS
    rows = {(r[1], r[2], r[3]): r[4] for r in _table_cells(features)}
    assert len(rows) == features.GetNumberOfRows() > 20  # one row per feature, no duplicates
    assert {r[0] for r in _table_cells(features)} == {"Lesion"}
    # The same features computed through the array API, read back exactly from the text cells.
    # Bit-identical: both APIs call Predictor.predict on the same float32 pixels, mask and spacing, and
    # pyradiomics runs on one SimpleITK thread; the cells hold repr() text (exact round trip).
    reference = api.predict_arrays(volume.array[0], mask[0], spacing_mm=0.1, bundle_path=tiny_bundle)
    assert (
        float(rows[("original", "shape2D", "Elongation")])
        == reference.features["original_shape2D_Elongation"]
    )
    # Exact, as above: repr() text of the number the same code path computed.
    assert float(rows[("original", "firstorder", "Mean")]) == reference.features["original_firstorder_Mean"]

    prediction = scene.GetNodeByID(res.prediction_table_node_id)
    items = dict(scene_io.read_key_value_table(prediction))
    probability_rows = [k for k in items if k.startswith("Probability (")]
    assert len(probability_rows) == 1
    # Exact: the table holds this result's own numbers as repr() text (scene_io.format_value).
    assert float(items[probability_rows[0]]) == res.probability
    assert items["Predicted label"] == res.label
    assert items["Model used"] == res.model_used
    # Exact: the cutoff and scores are this result's own numbers as repr() text (round trip).
    assert float(items["Cutoff (frozen at training)"]) == res.cutoff
    for name, value in res.signature_scores.items():
        assert float(items[f"Score {name}"]) == value

    heat = scene.GetNodeByID(res.heatmap_node_id)
    assert heat.IsA("vtkMRMLScalarVolumeNode") and not heat.IsA("vtkMRMLLabelMapVolumeNode")
    assert heat.GetImageData().GetDimensions() == image.GetImageData().GetDimensions()
    np.testing.assert_array_equal(_ijk_to_ras(heat), _ijk_to_ras(image))  # a copied matrix: exact
    values = slicer.util.arrayFromVolume(heat)
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0.0
    # Grad-CAM is computed on a crop around the lesion: nothing lights up far from it (the crop's
    # margin is a fraction of the lesion's size; one lesion size on every side bounds it).
    rows, cols = np.nonzero(mask[0])
    side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    centre_row, centre_col = (rows.max() + rows.min()) / 2, (cols.max() + cols.min()) / 2
    _, hot_rows, hot_cols = np.nonzero(values > 0)
    assert np.all(np.abs(hot_rows - centre_row) <= side) and np.all(np.abs(hot_cols - centre_col) <= side)


def test_rerun_updates_the_same_nodes(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)

    first = api.predict_nodes(image, seg, segment_id, bundle_path=tiny_bundle)
    ids_after_first = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    second = api.predict_nodes(image, seg, segment_id, clinical=CLINICAL, bundle_path=tiny_bundle)
    ids_after_second = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]

    assert ids_after_second == ids_after_first
    assert (second.features_table_node_id, second.prediction_table_node_id, second.heatmap_node_id) == (
        first.features_table_node_id,
        first.prediction_table_node_id,
        first.heatmap_node_id,
    )
    # The table now holds the second answer (combined model), not the first (image only).
    assert first.model_used != second.model_used
    items = dict(scene_io.read_key_value_table(scene.GetNodeByID(second.prediction_table_node_id)))
    assert items["Model used"] == second.model_used


def test_a_failure_leaves_the_scene_unchanged(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)
    empty_seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Empty segmentation")
    empty_seg.SetReferenceImageGeometryParameterFromVolumeNode(image)
    empty_id = empty_seg.GetSegmentation().AddEmptySegment("Lesion")
    # Outputs exist before the failures (with the combined model's answer, which an image-only
    # partial answer would visibly replace).
    api.predict_nodes(image, seg, segment_id, clinical=CLINICAL, bundle_path=tiny_bundle)
    before = _snapshot(scene)
    lesion_args = {"segmentation_node": seg, "segment_id": segment_id}
    failures = [
        (
            "empty segment",
            {"segmentation_node": empty_seg, "segment_id": empty_id},
            CLINICAL,
            LesionError,
            "empty",
        ),
        ("age 250", lesion_args, {**CLINICAL, "age": 250}, ClinicalValueError, "250"),
        ("BI-RADS 7", lesion_args, {**CLINICAL, "birads": "7"}, ClinicalValueError, "'7'"),
        ("unknown variable", lesion_args, {**CLINICAL, "weight": 70}, ClinicalValueError, "weight"),
    ]
    for what, lesion_input, clinical, error, match in failures:
        with pytest.raises(error, match=match):
            api.predict_nodes(image, clinical=clinical, bundle_path=tiny_bundle, **lesion_input)
        _assert_same_scene(before, _snapshot(scene), what)


# --------------------------------------------------------------------------- explanation


def _terms_by_model(contributions: list[tuple[str, float]]) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for name, value in contributions:
        model, sep, term = name.partition(": ")
        assert sep and term, name
        groups.setdefault(model, []).append(value)
    return groups


def test_image_only_contributions_add_up_to_each_signature_logit(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)

    res = api.predict_nodes(image, seg, segment_id, bundle_path=tiny_bundle)

    assert "image only" in res.model_used
    assert any("image-only" in w for w in res.warnings)  # the reader is told why
    # Exact: the same number, reported twice (the model's own when a recalibration step reports another)
    own = res.probability if res.probability_uncalibrated is None else res.probability_uncalibrated
    assert own == res.signature_scores["dlr"]
    groups = _terms_by_model(res.contributions)
    assert "combined" not in groups
    assert {"dlr", "rad", "dl"} <= set(groups)
    for model, values in groups.items():
        assert math.fsum(values) == pytest.approx(_logit(res.signature_scores[model]), abs=1e-6), model
    assert math.fsum(groups["dlr"]) == pytest.approx(_logit(own), abs=1e-6)


def test_combined_contributions_add_up_to_the_probability_logit(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)

    res = api.predict_nodes(image, seg, segment_id, clinical=CLINICAL, bundle_path=tiny_bundle)

    assert res.model_used.startswith("Combined")
    assert "image only" not in res.model_used
    assert res.probability == res.signature_scores["combined"]  # exact: the same number, reported twice
    groups = _terms_by_model(res.contributions)
    assert math.fsum(groups["combined"]) == pytest.approx(_logit(res.probability), abs=1e-6)
    # The image-only terms are still explained alongside.
    assert math.fsum(groups["dlr"]) == pytest.approx(_logit(res.signature_scores["dlr"]), abs=1e-6)
    assert res.total_points is not None
    assert res.total_points == pytest.approx(math.fsum(res.nomogram_points.values()), abs=1e-9)


def test_stability_reports_the_perturbed_contours_and_label_changes(scene, tiny_bundle, case):
    volume, mask = case
    image = _scalar_node(scene, volume)
    seg, segment_id = _segmentation(scene, mask, image)

    res = api.predict_nodes(image, seg, segment_id, bundle_path=tiny_bundle, stability=True)

    st = res.stability
    assert st is not None
    # "as drawn" is the prediction's own probability, copied: exact.
    assert st.perturbations[0] == "as drawn" and st.probabilities[0] == res.probability
    assert len(st.perturbations) == len(st.probabilities) >= 3
    assert len(set(st.perturbations)) == len(st.perturbations)
    assert all(0.0 <= p <= 1.0 for p in st.probabilities)
    assert st.spread == pytest.approx(max(st.probabilities) - min(st.probabilities), abs=1e-15)
    assert st.label_changes == (len({p >= res.cutoff for p in st.probabilities}) > 1)
    # A perturbation's probability is what predicting that contour directly gives.
    dilated = contours.dilate_mask(mask[0], 1)
    assert "dilate 1 px" in st.perturbations
    direct = api.predict_arrays(
        volume.array[0], dilated, spacing_mm=0.1, bundle_path=tiny_bundle, heatmap=False
    )
    got = st.probabilities[st.perturbations.index("dilate 1 px")]
    assert got == pytest.approx(direct.probability, rel=1e-9)
    # The spread is shown in the prediction table too.
    items = dict(scene_io.read_key_value_table(scene.GetNodeByID(res.prediction_table_node_id)))
    assert float(items["Stability spread"]) == st.spread  # repr() text of this very number: exact
    assert items["Stability label changes"] == ("yes" if st.label_changes else "no")
