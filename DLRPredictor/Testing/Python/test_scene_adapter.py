"""The plain-Python MRML scene behaves like the application's (real slicer-core, no fakes)."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from DLRPredictorLib.base.case import ImageVolume  # noqa: E402
from DLRPredictorLib.scene import adapter as scene_adapter  # noqa: E402
from DLRPredictorLib.scene import scene_io  # noqa: E402


def test_module_logics_are_registered_on_the_application_logic(scene):
    logics = scene_adapter.get_logics(scene)
    expected = {
        "Colors": "vtkSlicerColorLogic",
        "Data": "vtkSlicerDataModuleLogic",
        "Volumes": "vtkSlicerVolumesLogic",
        "Segmentations": "vtkSlicerSegmentationsModuleLogic",
        "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
        "Tables": "vtkSlicerTablesLogic",
    }
    for name, class_name in expected.items():
        registered = logics.app_logic.GetModuleLogic(name)
        assert registered is not None, name
        assert registered.GetClassName() == class_name
        assert registered.GetMRMLScene() is scene
    assert logics.app_logic.GetColorLogic().GetClassName() == "vtkSlicerColorLogic"


def test_default_colour_nodes_and_module_node_classes_exist(scene):
    for node_id in ("vtkMRMLColorTableNodeGrey", scene_io.HEATMAP_COLOR_NODE_ID):
        assert scene.GetNodeByID(node_id) is not None, node_id
    # Node classes registered by the module logics (needed to import saved scenes).
    for class_name in ("vtkMRMLSegmentationNode", "vtkMRMLSegmentEditorNode", "vtkMRMLTableNode"):
        assert scene.CreateNodeByClass(class_name) is not None, class_name


def test_removing_a_volume_removes_its_display_node_like_the_application(scene):
    before = scene.GetNumberOfNodes()
    node = scene_io.add_volume_node(scene, ImageVolume(array=np.ones((1, 3, 4), np.float32)), "v")
    display_id = node.GetDisplayNode().GetID()
    assert scene.GetNumberOfNodes() > before
    scene.RemoveNode(node)
    assert scene.GetNodeByID(display_id) is None
    assert scene.GetNumberOfNodes() == before


def test_segment_editor_node_survives_save_and_reload(scene, tmp_path):
    scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "editor")
    path = scene_io.save_scene(scene, tmp_path / "editor.mrb")
    loaded = scene_io.load_scene(path)
    try:
        node = loaded.GetFirstNodeByName("editor")
        assert node is not None and node.GetClassName() == "vtkMRMLSegmentEditorNode"
    finally:
        loaded.Clear(1)


def test_get_logics_rejects_a_foreign_scene():
    foreign = slicer.vtkMRMLScene()
    with pytest.raises(KeyError, match="create_scene"):
        scene_adapter.get_logics(foreign)


def test_install_globals_lets_slicer_util_helpers_work(scene):
    had = {name: hasattr(slicer, name) for name in ("mrmlScene", "modules")}
    try:
        scene_adapter.install_globals(scene)
        assert slicer.mrmlScene is scene
        seg_logic = slicer.modules.segmentations.logic()
        assert seg_logic.GetClassName() == "vtkSlicerSegmentationsModuleLogic"
        assert slicer.modules.volumes.logic().GetClassName() == "vtkSlicerVolumesLogic"

        image = ImageVolume(array=np.zeros((1, 5, 6), np.float32), spacing=(0.4, 0.6, 1.0))
        volume_node = scene_io.add_volume_node(scene, image, "img")
        mask = np.zeros((1, 5, 6), np.uint8)
        mask[0, 1:3, 2:5] = 1
        mask[0, 4, 0] = 1
        seg_node, segment_id = scene_io.add_segmentation_from_mask(scene, mask, volume_node, "seg")
        assert slicer.util.getNode("seg") is seg_node
        # arrayFromSegmentBinaryLabelmap reads slicer.mrmlScene and slicer.modules.segmentations.
        nodes_before = scene.GetNumberOfNodes()
        exported = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, segment_id, volume_node)
        np.testing.assert_array_equal(exported > 0, mask > 0)
        # Its temporary labelmap and display node are gone again (Data logic, as in the app).
        assert scene.GetNumberOfNodes() == nodes_before
        # updateSegmentBinaryLabelmapFromArray also needs slicer.modules.volumes.
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            mask[:, ::-1].copy(), seg_node, segment_id, volume_node
        )
        np.testing.assert_array_equal(
            scene_io.mask_from_segment(seg_node, segment_id, volume_node), mask[:, ::-1]
        )
    finally:
        for name, existed in had.items():
            if not existed and hasattr(slicer, name):
                delattr(slicer, name)


def test_in_slicer_application_is_false_in_plain_python():
    assert scene_adapter.in_slicer_application() is False
