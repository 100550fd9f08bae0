"""The Slicer module's Qt-free decisions (DLRPredictorLib.module_support) on a real MRML scene.

The module's parameter node is a parameterNodeWrapper, which needs Qt; here ``ParameterNode`` has
the same typed attributes over a real vtkMRMLScriptedModuleNode of the scene. The dialogs of the
dependency check are recorded, since they are Qt; everything they are asked is the module_support
logic under test.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from DLRPredictorLib import module_support as ms
from DLRPredictorLib.models.clinical_variables import ClinicalVariable

MODULE_DIR = Path(__file__).resolve().parents[2]
REQUIREMENTS_PATH = MODULE_DIR / "Resources" / "requirements.txt"


@dataclass
class ParameterNode:
    """DLRPredictorParameterNode's attributes (defaults as declared there) over a real node."""

    parameterNode: Any
    inputVolume: Any = None
    segmentationNode: Any = None
    segmentId: str = ""
    bundlePath: str = ""
    age: float = 0.0
    birads: str = ""
    useClinical: bool = True
    stability: bool = False
    heatmapKind: str = ms.DEFAULT_HEATMAP_KIND
    heatmapOpacity: float = 0.5
    showHeatmap: bool = True
    featuresTable: Any = None
    predictionTable: Any = None
    heatmapVolume: Any = None


@pytest.fixture
def parameter_node(scene) -> ParameterNode:
    return ParameterNode(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "DLRPredictor"))


AGE = ClinicalVariable("age", "numeric", unit="years", minimum=10, maximum=110, description="Age")
BIRADS = ClinicalVariable("birads", "categorical", allowed=("3", "4a", "4b", "5"), required=False)
SIZE = ClinicalVariable("size_mm", "numeric", required=False)
SIDE = ClinicalVariable("side", "categorical", allowed=("left", "right"), description="Side")


# ---------------------------------------------------------------------------------------------
# Clinical values
# ---------------------------------------------------------------------------------------------


def test_clinical_values_round_trip(parameter_node):
    variables = [AGE, BIRADS, SIZE, SIDE]
    assert ms.clinical_values(parameter_node, variables) == {}

    ms.set_clinical_value(parameter_node, AGE, 54)
    ms.set_clinical_value(parameter_node, BIRADS, "4b")
    ms.set_clinical_value(parameter_node, SIZE, 0.0)  # 0 is a real value for a raw numeric variable
    ms.set_clinical_value(parameter_node, SIDE, "left")
    # Typed fields of the bundle; the numbers are stored and read back unchanged (exact).
    assert (parameter_node.age, parameter_node.birads) == (54.0, "4b")
    raw = parameter_node.parameterNode
    assert raw.GetParameter("clinical.side") == "left"
    # Exact: the 0.0 default, stored and read back unchanged.
    assert float(raw.GetParameter("clinical.size_mm")) == 0.0
    assert ms.clinical_values(parameter_node, variables) == {
        "age": 54.0,
        "birads": "4b",
        "size_mm": 0.0,
        "side": "left",
    }

    for variable in variables:
        ms.set_clinical_value(parameter_node, variable, None)
    assert ms.clinical_values(parameter_node, variables) == {}
    # Exact: the 0.0 default, no arithmetic.
    assert (parameter_node.age, parameter_node.birads) == (0.0, "")
    assert raw.GetParameter("clinical.side") == ""


def test_raw_values_are_saved_with_the_scene(scene, parameter_node, tmp_path):
    """Values of other bundles' variables live in the scripted module node, so a saved scene keeps them."""
    from DLRPredictorLib.scene import scene_io

    ms.set_clinical_value(parameter_node, SIZE, 12.5)
    ms.set_clinical_value(parameter_node, SIDE, "right")
    loaded = scene_io.load_scene(scene_io.save_scene(scene, tmp_path / "clinical.mrb"))
    node = loaded.GetFirstNodeByName("DLRPredictor")
    assert node is not None, "the parameter node was not saved"
    restored = ParameterNode(node)
    # Exact: 12.5 stored as text in the parameter node and parsed back.
    assert ms.clinical_values(restored, [SIZE, SIDE]) == {"size_mm": 12.5, "side": "right"}


def test_a_typed_name_with_another_type_uses_a_raw_parameter(parameter_node):
    categorical_age = ClinicalVariable("age", "categorical", allowed=("<40", "40-49", ">=50"))
    assert not ms.has_typed_field(categorical_age)
    ms.set_clinical_value(parameter_node, categorical_age, "40-49")
    # Exact: the 0.0 default, no arithmetic.
    assert parameter_node.age == 0.0
    assert ms.get_clinical_value(parameter_node, categorical_age) == "40-49"


def test_the_bundled_model_uses_the_typed_fields():
    """Every clinical variable of the bundled model has a typed parameter-node field of its type
    (more typed fields may serve other bundles, e.g. age)."""
    from DLRPredictorLib import api

    variables = api.load_predictor().clinical_variables
    assert variables, "the bundled model declares no clinical variable"
    assert {v.name: v.type for v in variables}.items() <= ms.TYPED_CLINICAL_FIELDS.items()
    assert all(ms.has_typed_field(v) for v in variables)


# ---------------------------------------------------------------------------------------------
# Apply's input checks
# ---------------------------------------------------------------------------------------------


def _codes(problems: list[ms.InputProblem]) -> list[str]:
    return [p.code for p in problems]


@pytest.fixture
def inputs(scene, parameter_node):
    """A parameter node with an image, a segmentation and its lesion segment chosen."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Image")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segment_id = segmentation.GetSegmentation().AddEmptySegment("Lesion")
    parameter_node.inputVolume = volume
    parameter_node.segmentationNode = segmentation
    parameter_node.segmentId = segment_id
    return parameter_node


def test_no_parameter_node_is_not_ready():
    assert _codes(ms.input_problems(None, bundle_folder_chosen=False)) == [ms.NOT_READY]


def test_complete_inputs_have_no_problem(inputs):
    assert ms.input_problems(inputs, bundle_folder_chosen=False, clinical_variables=[BIRADS]) == []


def test_missing_image_and_segmentation(parameter_node):
    problems = ms.input_problems(parameter_node, bundle_folder_chosen=False)
    assert _codes(problems) == [ms.NO_IMAGE, ms.NO_SEGMENTATION]


def test_segment_not_chosen_or_deleted(inputs):
    segment_id = inputs.segmentId
    inputs.segmentId = ""
    assert _codes(ms.input_problems(inputs, bundle_folder_chosen=False)) == [ms.NO_SEGMENT]
    inputs.segmentId = segment_id
    inputs.segmentationNode.GetSegmentation().RemoveSegment(segment_id)
    assert _codes(ms.input_problems(inputs, bundle_folder_chosen=False)) == [ms.NO_SEGMENT]


def test_bundle_folder_and_bundle_problem(inputs):
    problems = ms.input_problems(inputs, bundle_folder_chosen=True, bundle_problem="manifest.json changed")
    assert problems == [
        ms.InputProblem(ms.NO_BUNDLE_FOLDER),
        ms.InputProblem(ms.BUNDLE_UNUSABLE, "manifest.json changed"),
    ]
    inputs.bundlePath = "/some/bundle"
    assert ms.input_problems(inputs, bundle_folder_chosen=True) == []


def test_required_clinical_values(inputs):
    variables = [AGE, BIRADS, SIDE]  # age required (description "Age"), birads optional
    assert ms.input_problems(inputs, bundle_folder_chosen=False, clinical_variables=variables) == [
        ms.InputProblem(ms.CLINICAL_MISSING, "Age"),
        ms.InputProblem(ms.CLINICAL_MISSING, "Side"),
    ]
    ms.set_clinical_value(inputs, AGE, 61)
    ms.set_clinical_value(inputs, SIDE, "left")
    assert ms.input_problems(inputs, bundle_folder_chosen=False, clinical_variables=variables) == []
    ms.set_clinical_value(inputs, AGE, None)
    # Without clinical data, or before the bundle is verified, nothing clinical is asked for.
    inputs.useClinical = False
    assert ms.input_problems(inputs, bundle_folder_chosen=False, clinical_variables=variables) == []
    inputs.useClinical = True
    assert ms.input_problems(inputs, bundle_folder_chosen=False, clinical_variables=None) == []


# ---------------------------------------------------------------------------------------------
# Scene: first image, heatmap layer, outputs
# ---------------------------------------------------------------------------------------------


def test_first_image_node_skips_labelmaps_and_the_heatmap(scene):
    assert ms.first_image_node(scene) is None
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Labels")
    heatmap = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Heatmap")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "RGB")
    assert ms.first_image_node(scene).GetID() == heatmap.GetID()
    assert ms.first_image_node(scene, exclude=heatmap).GetID() == rgb.GetID()


def test_node_by_id(scene):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "T")
    assert ms.node_by_id(scene, table.GetID()).GetID() == table.GetID()
    assert ms.node_by_id(scene, "") is None
    assert ms.node_by_id(scene, None) is None
    assert ms.node_by_id(scene, "vtkMRMLTableNode999") is None


@pytest.fixture
def views(scene):
    """Three slice views (the application's Red, Yellow, Green)."""
    return [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", name) for name in ("Red", "Yellow", "Green")]


def test_heatmap_is_shown_over_its_own_image_only(scene, parameter_node, views):
    image = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Image")
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Other image")
    heatmap = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Heatmap")
    heatmap.SetAttribute(ms.HEATMAP_IMAGE_ATTRIBUTE, image.GetID())
    assert ms.heatmap_display_state(parameter_node) is None  # no heatmap yet
    parameter_node.heatmapVolume = heatmap
    parameter_node.heatmapOpacity = 0.3

    parameter_node.inputVolume = image
    state = ms.heatmap_display_state(parameter_node)
    # Exact: the opacity set above, read back (also below).
    assert state == (heatmap.GetID(), image.GetID(), True, 0.3)
    assert ms.update_heatmap_display(scene, state) == 3
    for view in views:
        assert view.GetBackgroundVolumeID() == image.GetID()
        assert view.GetForegroundVolumeID() == heatmap.GetID()
        assert view.GetForegroundOpacity() == pytest.approx(0.3)

    # The user switched to another image: the heatmap computed on the first is taken off.
    parameter_node.inputVolume = other
    state = ms.heatmap_display_state(parameter_node)
    assert state == (heatmap.GetID(), other.GetID(), False, 0.3)
    assert ms.update_heatmap_display(scene, state) == 3
    assert all(view.GetForegroundVolumeID() is None for view in views)

    parameter_node.inputVolume = image
    parameter_node.showHeatmap = False
    assert ms.heatmap_display_state(parameter_node)[2] is False


def test_hiding_leaves_other_foregrounds_and_showing_keeps_a_chosen_background(scene, views):
    image = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Image")
    heatmap = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Heatmap")
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Other")
    red, yellow, green = views
    red.SetForegroundVolumeID(heatmap.GetID())
    red.SetBackgroundVolumeID(other.GetID())  # the user put another background under the heatmap
    yellow.SetForegroundVolumeID(other.GetID())

    assert ms.update_heatmap_display(scene, (heatmap.GetID(), image.GetID(), True, 0.5)) == 3
    assert red.GetBackgroundVolumeID() == other.GetID()
    assert yellow.GetBackgroundVolumeID() == image.GetID()
    assert green.GetBackgroundVolumeID() == image.GetID()

    yellow.SetForegroundVolumeID(other.GetID())
    assert ms.update_heatmap_display(scene, (heatmap.GetID(), image.GetID(), False, 0.5)) == 2
    assert red.GetForegroundVolumeID() is None
    assert yellow.GetForegroundVolumeID() == other.GetID()
    assert green.GetForegroundVolumeID() is None


def test_result_inputs(inputs):
    assert ms.result_inputs(inputs) == (
        inputs.inputVolume.GetID(),
        inputs.segmentationNode.GetID(),
        inputs.segmentId,
    )


def test_prediction_arguments_match_the_api(inputs):
    from DLRPredictorLib import api

    ms.set_clinical_value(inputs, AGE, 47)
    arguments = ms.prediction_arguments(inputs, [AGE, BIRADS])
    accepted = set(inspect.signature(api.predict_nodes).parameters)
    assert set(arguments) <= accepted, sorted(set(arguments) - accepted)
    # Exact: 47 passed on as a float, with no arithmetic.
    assert arguments["clinical"] == {"age": 47.0}
    assert arguments["segment_id"] == inputs.segmentId
    assert arguments["bundle_path"] is None  # "" = the bundled model
    inputs.useClinical = False
    assert ms.prediction_arguments(inputs, [AGE, BIRADS])["clinical"] is None


def test_the_heatmap_kind_setting_is_the_engines(inputs):
    """The module's choices are the engine's kinds, default first; the setting reaches the api."""
    from DLRPredictorLib.deep.heatmap import DEFAULT_HEATMAP, HEATMAP_KINDS

    assert (ms.HEATMAP_KINDS, ms.DEFAULT_HEATMAP_KIND) == (HEATMAP_KINDS, DEFAULT_HEATMAP)
    assert ms.prediction_arguments(inputs, [])["heatmap_kind"] == "dl-signature"
    inputs.heatmapKind = "cnn-head"
    assert ms.prediction_arguments(inputs, [])["heatmap_kind"] == "cnn-head"
    inputs.heatmapKind = ""  # an empty setting means the default
    assert ms.prediction_arguments(inputs, [])["heatmap_kind"] == "dl-signature"


def test_store_prediction_outputs(scene, inputs):
    from types import SimpleNamespace

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Features")
    prediction = scene.AddNewNodeByClass("vtkMRMLTableNode", "Prediction")
    heatmap = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Heatmap")
    result = SimpleNamespace(
        features_table_node_id=table.GetID(),
        prediction_table_node_id=prediction.GetID(),
        heatmap_node_id=heatmap.GetID(),
    )
    ms.store_prediction_outputs(inputs, result)
    assert inputs.featuresTable.GetID() == table.GetID()
    assert inputs.predictionTable.GetID() == prediction.GetID()
    assert heatmap.GetAttribute(ms.HEATMAP_IMAGE_ATTRIBUTE) == inputs.inputVolume.GetID()

    ms.store_prediction_outputs(inputs, SimpleNamespace(**{**vars(result), "heatmap_node_id": None}))
    assert inputs.heatmapVolume is None


@pytest.mark.slow
def test_predict_parameter_node_on_the_phantom(scene, parameter_node, monkeypatch, tmp_path):
    """The logic facade's path: the phantom through the parameter node, twice into the same nodes."""
    from DLRPredictorLib import api
    from DLRPredictorLib.inputs import images, lesion
    from DLRPredictorLib.scene import scene_io
    from DLRPredictorLib.scene.heatmap import HEATMAP_KIND_ATTRIBUTE

    monkeypatch.setenv("DLR_CACHE", str(tmp_path))
    paths = api.phantom_sample_paths()
    volume = images.read_image(paths["image"])
    volume_node = scene_io.add_volume_node(scene, volume, "Phantom")
    segmentation, segment_id = scene_io.add_segmentation_from_mask(
        scene, lesion.read_mask(paths["mask"], volume), volume_node, "Lesion"
    )
    parameter_node.inputVolume = volume_node
    parameter_node.segmentationNode = segmentation
    parameter_node.segmentId = segment_id
    from DLRPredictorLib.inputs.phantom import PHANTOM_CLINICAL

    for variable in api.load_predictor().clinical_variables:  # the phantom's record, as a user enters it
        ms.set_clinical_value(parameter_node, variable, PHANTOM_CLINICAL[0][variable.name])
    steps: list[float] = []

    result = ms.predict_parameter_node(
        parameter_node, progress=lambda fraction, message: steps.append(fraction)
    )
    assert 0.0 <= result.probability <= 1.0
    assert result.model_used.startswith("Combined"), result.model_used  # the clinical values were used
    assert steps and steps[-1] == pytest.approx(1.0)
    outputs = (parameter_node.featuresTable, parameter_node.predictionTable, parameter_node.heatmapVolume)
    assert all(node is not None and scene.GetNodeByID(node.GetID()) is not None for node in outputs)
    assert parameter_node.heatmapVolume.GetAttribute(ms.HEATMAP_IMAGE_ATTRIBUTE) == volume_node.GetID()
    assert parameter_node.heatmapVolume.GetAttribute(HEATMAP_KIND_ATTRIBUTE) == "dl-signature"  # the default
    signature_map = scene_io.image_from_volume_node(parameter_node.heatmapVolume).array.copy()
    nodes_before = scene.GetNumberOfNodes()

    parameter_node.heatmapKind = "cnn-head"  # the setting is honoured on the next prediction
    again = ms.predict_parameter_node(parameter_node)
    assert again.probability == pytest.approx(result.probability)
    assert scene.GetNumberOfNodes() == nodes_before, "re-running must update the same output nodes"
    assert parameter_node.heatmapVolume.GetID() == outputs[2].GetID()
    assert parameter_node.heatmapVolume.GetAttribute(HEATMAP_KIND_ATTRIBUTE) == "cnn-head"
    head_map = scene_io.image_from_volume_node(parameter_node.heatmapVolume).array
    # Two gradients weigh layer4's channels: the maps (values 0..1) differ by far more than rounding.
    assert np.abs(head_map - signature_map).max() > 0.05


# ---------------------------------------------------------------------------------------------
# Sample data
# ---------------------------------------------------------------------------------------------


def test_phantom_sample_source(monkeypatch, tmp_path):
    monkeypatch.setenv("DLR_CACHE", str(tmp_path))
    thumbnail = MODULE_DIR / "Resources" / "Icons" / "DLRPredictor.png"
    source = ms.phantom_sample_source(str(thumbnail))
    image, mask = ms.phantom_sample_files()
    assert Path(image).is_file() and Path(mask).is_file()
    assert Path(image).resolve().is_relative_to(tmp_path.resolve())
    assert source["uris"] == [Path(image).as_uri(), Path(mask).as_uri()]
    assert source["checksums"] == [
        "SHA256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in (image, mask)
    ]
    # Sample Data caches by file name in a folder shared by all modules: names must be ours.
    assert all(name.startswith(ms.SAMPLE_NAME + "_") for name in source["fileNames"])
    assert len(set(source["fileNames"])) == 2
    assert len(source["nodeNames"]) == len(source["loadFileType"]) == len(source["uris"])
    assert Path(source["thumbnailFileName"]).is_file()
    assert source["category"] == ms.SAMPLE_CATEGORY


# ---------------------------------------------------------------------------------------------
# Python dependencies
# ---------------------------------------------------------------------------------------------


@dataclass
class RecordingDialogs:
    """Answers the dialogs with preset replies and records what was asked."""

    accept_packages: bool = True
    accept_torch: bool = True
    requester: str = "DLR Predictor"
    asked: list[tuple[str, Any]] = field(default_factory=list)

    def confirm_packages(self, missing: list[str]) -> bool:
        self.asked.append(("confirm_packages", list(missing)))
        return self.accept_packages

    def install_packages(self, missing: list[str]) -> None:
        self.asked.append(("install_packages", list(missing)))

    def confirm_torch(self) -> bool:
        self.asked.append(("confirm_torch", None))
        return self.accept_torch

    def extension_missing(self, extension: str) -> None:
        self.asked.append(("extension_missing", extension))


def test_missing_requirements(tmp_path):
    requirements = tmp_path / "requirements.txt"
    pytest_version = version("pytest")
    requirements.write_text(
        "# comment\n"
        f"pytest=={pytest_version}  # satisfied\n"
        "pytest>=999  # too old here\n"
        "dlrpredictor-no-such-package>=1\n"
        'dlrpredictor-other-platform>=1; sys_platform == "no-such-platform"\n'
        "-c constraints.txt\n",
        encoding="utf-8",
    )
    assert ms.missing_requirements(str(requirements)) == ["pytest>=999", "dlrpredictor-no-such-package>=1"]


def test_plain_python_has_neither_pip_ensure_nor_pytorch_utils():
    """Outside Slicer the look-ups find nothing (so the pip_install fallback path is the one run)."""
    assert ms.pydeps_module() is None
    assert ms.pytorch_utils_module() is None
    assert ms.importable("json")
    assert not ms.importable("dlrpredictor_no_such_module")


def test_everything_present_asks_nothing():
    """This environment satisfies Resources/requirements.txt and has torch and pyradiomics."""
    dialogs = RecordingDialogs()
    assert ms.ensure_dependencies(str(REQUIREMENTS_PATH), dialogs, need_torch=True)
    assert dialogs.asked == []


@pytest.fixture
def unmet(tmp_path) -> str:
    path = tmp_path / "requirements.txt"
    path.write_text("dlrpredictor-no-such-package>=1,<2\n", encoding="utf-8")
    return str(path)


def test_missing_packages_are_installed_only_after_consent(unmet):
    declined = RecordingDialogs(accept_packages=False)
    assert not ms.ensure_requirements(unmet, declined, pydeps=None)
    assert declined.asked == [("confirm_packages", ["dlrpredictor-no-such-package<2,>=1"])]

    accepted = RecordingDialogs()
    assert ms.ensure_requirements(unmet, accepted, pydeps=None)
    assert [step for step, _ in accepted.asked] == ["confirm_packages", "install_packages"]
    assert accepted.asked[1][1] == ["dlrpredictor-no-such-package<2,>=1"]


class RecordingPydeps:
    """Slicer 5.11+'s slicer.pydeps: it asks the user itself and raises RuntimeError on 'no'."""

    def __init__(self, declines: bool) -> None:
        self.declines = declines
        self.calls: list[tuple[list[str], str]] = []

    def load_requirements(self, path: str) -> list[Any]:
        from packaging.requirements import Requirement

        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]

    def pip_ensure(self, requirements: list[Any], requester: str) -> None:
        self.calls.append(([str(r) for r in requirements], requester))
        if self.declines:
            raise RuntimeError("the user declined")


@pytest.mark.parametrize("declines", [False, True])
def test_pip_ensure_is_used_when_slicer_has_it(unmet, declines):
    pydeps = RecordingPydeps(declines)
    dialogs = RecordingDialogs()
    assert ms.ensure_requirements(unmet, dialogs, pydeps) is not declines
    assert pydeps.calls == [(["dlrpredictor-no-such-package<2,>=1"], "DLR Predictor")]
    assert dialogs.asked == []  # pip_ensure shows its own dialog


class RecordingTorchUtils:
    """The PyTorch extension's PyTorchUtils module: records installTorch's arguments."""

    def __init__(self, installs: bool) -> None:
        self.installs = installs
        self.install_calls: list[dict[str, Any]] = []

    def PyTorchUtilsLogic(self) -> Any:
        return self

    def installTorch(self, **kwargs: Any) -> Any:
        self.install_calls.append(kwargs)
        return object() if self.installs else None


def _without(*names: str):
    return lambda name: name not in names and ms.importable(name)


def test_without_radiomics_the_slicerradiomics_extension_is_named_and_torch_not_asked():
    dialogs = RecordingDialogs()
    assert not ms.ensure_dependencies(str(REQUIREMENTS_PATH), dialogs, is_importable=_without("radiomics"))
    assert dialogs.asked == [("extension_missing", ms.RADIOMICS_EXTENSION)]


def test_prediction_needs_no_torch_training_asks_for_the_extension():
    dialogs = RecordingDialogs()
    torch_utils = RecordingTorchUtils(installs=True)
    ok = ms.ensure_dependencies(
        str(REQUIREMENTS_PATH), dialogs, is_importable=_without("torch"), find_torch_utils=lambda: torch_utils
    )
    assert ok  # applying a bundle runs the network in numpy
    assert dialogs.asked == [] and torch_utils.install_calls == []
    ok = ms.ensure_dependencies(
        str(REQUIREMENTS_PATH),
        dialogs,
        is_importable=_without("torch"),
        find_torch_utils=lambda: None,
        need_torch=True,
    )
    assert not ok
    assert dialogs.asked == [("extension_missing", ms.PYTORCH_EXTENSION)]


@pytest.mark.parametrize(
    ("accept", "installs", "expected"), [(False, True, False), (True, True, True), (True, False, False)]
)
def test_torch_is_installed_by_the_extension_after_consent(accept, installs, expected):
    dialogs = RecordingDialogs(accept_torch=accept)
    torch_utils = RecordingTorchUtils(installs)
    ok = ms.ensure_torch(dialogs, is_importable=_without("torch"), find_torch_utils=lambda: torch_utils)
    assert ok is expected
    assert dialogs.asked == [("confirm_torch", None)]
    if not accept:
        assert torch_utils.install_calls == []
    else:
        assert torch_utils.install_calls == [
            {
                "askConfirmation": False,
                "torchVersionRequirement": ms.TORCH_REQUIREMENT,
                "torchvisionVersionRequirement": ms.TORCHVISION_REQUIREMENT,
            }
        ]


def test_torch_requirement_is_met_here():
    """The version the PyTorch extension is asked for admits the tested torch and torchvision."""
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(ms.TORCH_REQUIREMENT).contains(version("torch").split("+")[0])
    assert SpecifierSet(ms.TORCHVISION_REQUIREMENT).contains(version("torchvision").split("+")[0])
