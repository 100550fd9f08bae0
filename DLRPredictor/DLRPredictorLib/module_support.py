"""Qt-free decisions of the Slicer module (DLRPredictor.py), testable on a plain-Python MRML scene.

The module file keeps only what needs Qt or the Slicer application: the module description, the
parameter node class, the widget, the logic facade and the self-test. Everything else it decides
lives here: the phantom sample's registration data, which Python packages are missing and the order
in which they are asked for, the clinical values kept in the parameter node, what keeps Apply
disabled, the first image of a scene, the heatmap layer of the slice views, and how a prediction's
output nodes are stored back into the parameter node.

The module imports this file at load time, so it imports only the standard library at the top;
DLRPredictorLib's engine (numpy, torch, pyradiomics, ...) is imported inside the functions that
need it. User-visible text stays in the module, where it is translated: this file returns codes.

``parameter_node`` arguments are the module's ``DLRPredictorParameterNode`` (a parameterNodeWrapper)
or any object with the same attributes: the typed parameters (``inputVolume``, ``segmentationNode``,
``segmentId``, ``bundlePath``, ``age``, ``birads``, ``useClinical``, ``stability``, ``heatmapKind``,
``heatmapOpacity``, ``showHeatmap``, ``featuresTable``, ``predictionTable``, ``heatmapVolume``) and
``parameterNode``, the underlying vtkMRMLScriptedModuleNode.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# -- sample data -------------------------------------------------------------------------------

SAMPLE_CATEGORY = "DLR Predictor"
SAMPLE_NAME = "DLRPredictorPhantom"

# -- heatmap ------------------------------------------------------------------------------------

# The scores the drawn heatmap can explain, default first: ``deep.heatmap.HEATMAP_KINDS``, spelled
# out here because the module imports this file at load time, before the engine (numpy) is
# imported; test_module_support checks that the two lists agree.
HEATMAP_KINDS = ("dl-signature", "cnn-head")
DEFAULT_HEATMAP_KIND = HEATMAP_KINDS[0]

# -- clinical values -----------------------------------------------------------------------------

# Common clinical variables have typed parameter-node fields (the bundled model's birads; age, which
# bundles trained with it declare); values of other variables a bundle declares are kept as raw
# parameters under this prefix.
CLINICAL_PARAMETER_PREFIX = "clinical."
# Age is a float field: 0 stands for "not given" (no patient of this application is 0 years old).
NOT_GIVEN_NUMBER = 0.0
# Clinical variables with typed parameter-node fields, and their types.
TYPED_CLINICAL_FIELDS = {"age": "numeric", "birads": "categorical"}

# -- scene ---------------------------------------------------------------------------------------

# Attribute of the heatmap volume: ID of the image it was computed on.
HEATMAP_IMAGE_ATTRIBUTE = "DLRPredictor.ImageID"
# Node classes the module accepts as the ultrasound image (not labelmaps, not other subclasses).
IMAGE_NODE_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode")

# -- dependencies --------------------------------------------------------------------------------

# Versions asked of the PyTorch extension: the oldest that the deep-feature code is written for.
TORCH_REQUIREMENT = ">=2.1"
TORCHVISION_REQUIREMENT = ">=0.16"
# Extensions that bring what pip must not install into Slicer (see Resources/requirements.txt).
RADIOMICS_EXTENSION = "SlicerRadiomics"
PYTORCH_EXTENSION = "PyTorch"


# ---------------------------------------------------------------------------------------------
# Sample data
# ---------------------------------------------------------------------------------------------


def phantom_sample_files() -> tuple[str, str]:
    """Image and lesion-mask files (NRRD) of the embedded synthetic phantom.

    Returns:
        (image path, mask path); written to a cache folder by DLRPredictorLib on first call.

    Raises:
        KeyError: the library returned no image or mask path.
    """
    from . import api

    paths = api.phantom_sample_paths()
    image = paths.get("image") or paths.get("image_nrrd")
    mask = paths.get("mask") or paths.get("mask_nrrd")
    if image is None or mask is None:
        raise KeyError(f"the phantom sample has no image and mask file: {sorted(paths)}")
    return str(image), str(mask)


def phantom_sample_source(thumbnail: str) -> dict[str, Any]:
    """Keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for the phantom.

    Writes the phantom files (see phantom_sample_files). The caller adds ``customDownloader``,
    the function that loads the two files into the application's scene.

    Args:
        thumbnail: the PNG shown on the Sample Data button.

    Returns:
        category, sampleName, thumbnailFileName, uris, fileNames, nodeNames, loadFileType and
        checksums.
    """
    from .bundle.verify import sha256_file

    image, mask = phantom_sample_files()
    return {
        "category": SAMPLE_CATEGORY,
        "sampleName": SAMPLE_NAME,
        "thumbnailFileName": str(thumbnail),
        "uris": [Path(image).as_uri(), Path(mask).as_uri()],
        # Prefixed names: the Sample Data cache folder is shared with every other module.
        "fileNames": [f"{SAMPLE_NAME}_{Path(image).name}", f"{SAMPLE_NAME}_{Path(mask).name}"],
        "nodeNames": [SAMPLE_NAME, SAMPLE_NAME + "Lesion"],
        "loadFileType": ["VolumeFile", "SegmentationFile"],
        # Checksums make the cache refresh its copy when a new version writes a different phantom.
        "checksums": [f"SHA256:{sha256_file(image)}", f"SHA256:{sha256_file(mask)}"],
    }


# ---------------------------------------------------------------------------------------------
# Python dependencies (asked for when Apply is pressed, never installed silently or at import)
# ---------------------------------------------------------------------------------------------


class DependencyDialogs(Protocol):
    """What ensure_dependencies asks of the user interface (dialogs and pip, in the module)."""

    requester: str  # the name shown by Slicer's pip_ensure dialog

    def confirm_packages(self, missing: list[str]) -> bool:
        """Ask before installing these requirements with pip; True = install."""
        ...

    def install_packages(self, missing: list[str]) -> None:
        """Install the requirements with pip (Slicer 5.10 and older, which lack pip_ensure)."""
        ...

    def confirm_torch(self) -> bool:
        """Ask before the PyTorch extension downloads torch; True = install."""
        ...

    def extension_missing(self, extension: str) -> None:
        """Tell the user to install RADIOMICS_EXTENSION or PYTORCH_EXTENSION and restart."""
        ...


def importable(name: str) -> bool:
    """Whether a top-level module can be imported, found without importing it."""
    return importlib.util.find_spec(name) is not None


def _module_with(names: Sequence[str], attributes: Sequence[str]) -> Any:
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if all(hasattr(module, attribute) for attribute in attributes):
            return module
    return None


def pydeps_module() -> Any:
    """Slicer's package helper with ``pip_ensure`` (Slicer 5.11+), or None in older versions."""
    return _module_with(("slicer.pydeps", "slicer.packaging"), ("pip_ensure", "load_requirements"))


def pytorch_utils_module() -> Any:
    """The PyTorch extension's PyTorchUtils module, or None when the extension is not installed."""
    return _module_with(("PyTorchUtils",), ("PyTorchUtilsLogic",))


def missing_requirements(requirements_path: str) -> list[str]:
    """Requirements of the file that the running Python does not satisfy.

    Args:
        requirements_path: a requirements.txt (one requirement a line, ``#`` comments, markers).

    Returns:
        ``name<specifier>`` strings, ready for pip, of the requirements to install.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    with open(requirements_path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            try:
                installed = version(requirement.name)
            except PackageNotFoundError:
                installed = None
            if installed is None or not requirement.specifier.contains(installed, prereleases=True):
                missing.append(f"{requirement.name}{requirement.specifier}")
    return missing


def ensure_requirements(requirements_path: str, dialogs: DependencyDialogs, pydeps: Any) -> bool:
    """Install the missing requirements of the file after the user agreed.

    Args:
        requirements_path: the module's Resources/requirements.txt.
        dialogs: the user interface.
        pydeps: pydeps_module(): Slicer 5.11+ checks, asks and installs itself; None: older
            Slicer, where missing_requirements, dialogs.confirm_packages and
            dialogs.install_packages do it.

    Returns:
        True when the requirements are satisfied now; False when the user declined.
    """
    if pydeps is not None:
        try:
            pydeps.pip_ensure(pydeps.load_requirements(requirements_path), requester=dialogs.requester)
        except RuntimeError:
            # pip_ensure raises RuntimeError when the user declines the installation.
            return False
        return True
    missing = missing_requirements(requirements_path)
    if not missing:
        return True
    if not dialogs.confirm_packages(missing):
        return False
    dialogs.install_packages(missing)
    return True


def ensure_torch(
    dialogs: DependencyDialogs,
    is_importable: Callable[[str], bool] = importable,
    find_torch_utils: Callable[[], Any] = pytorch_utils_module,
) -> bool:
    """Make torch importable through the PyTorch extension, after asking.

    Only training a network needs torch (a prediction applies the ResNet in numpy,
    DLRPredictorLib.deep.resnet_numpy); the extension installs a matching torchvision with it, which
    is harmless.

    Args:
        dialogs: the user interface.
        is_importable: importable(), replaceable to exercise the branches.
        find_torch_utils: pytorch_utils_module(), replaceable likewise.

    Returns:
        True when torch is available now; False when the extension is missing (the user was told)
        or the user declined.
    """
    if is_importable("torch"):
        return True
    torch_utils = find_torch_utils()
    if torch_utils is None:
        dialogs.extension_missing(PYTORCH_EXTENSION)
        return False
    if not dialogs.confirm_torch():
        return False
    torch = torch_utils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False,
        torchVersionRequirement=TORCH_REQUIREMENT,
        torchvisionVersionRequirement=TORCHVISION_REQUIREMENT,
    )
    return torch is not None


def ensure_dependencies(
    requirements_path: str,
    dialogs: DependencyDialogs,
    is_importable: Callable[[str], bool] = importable,
    find_pydeps: Callable[[], Any] = pydeps_module,
    find_torch_utils: Callable[[], Any] = pytorch_utils_module,
    *,
    need_torch: bool = False,
) -> bool:
    """Make the packages DLRPredictorLib needs importable, asking the user before any installation.

    Order: the pip requirements, then pyradiomics (SlicerRadiomics extension, never pip), then,
    for training only, torch (PyTorch extension). It stops at the first step that fails. A
    prediction needs no torch: a radiologist never has to install the PyTorch extension (about
    2 GB) to apply a bundle.

    Args:
        requirements_path: the module's Resources/requirements.txt.
        dialogs: the user interface.
        is_importable, find_pydeps, find_torch_utils: the look-ups, replaceable in tests.
        need_torch: also make torch importable (training a network).

    Returns:
        True when everything is available; False when the user declined or an extension is missing
        (dialogs told the user what to do).
    """
    if not ensure_requirements(requirements_path, dialogs, find_pydeps()):
        return False
    if not is_importable("radiomics"):
        dialogs.extension_missing(RADIOMICS_EXTENSION)
        return False
    return ensure_torch(dialogs, is_importable, find_torch_utils) if need_torch else True


# ---------------------------------------------------------------------------------------------
# Clinical values in the parameter node
# ---------------------------------------------------------------------------------------------


def has_typed_field(variable: Any) -> bool:
    """Whether the parameter node has a typed field for this ClinicalVariable (name and type)."""
    return TYPED_CLINICAL_FIELDS.get(variable.name) == variable.type


def get_clinical_value(parameter_node: Any, variable: Any) -> float | str | None:
    """The stored value of one clinical variable, or None when not given.

    Args:
        parameter_node: the module's parameter node.
        variable: a ClinicalVariable of the bundle (name, type "numeric" or "categorical").

    Returns:
        A float for a numeric variable, a string for a categorical one, or None.
    """
    numeric = variable.type == "numeric"
    if has_typed_field(variable):
        value = getattr(parameter_node, variable.name)
        if numeric:
            return None if float(value) == NOT_GIVEN_NUMBER else float(value)
        return str(value) or None
    raw = parameter_node.parameterNode.GetParameter(CLINICAL_PARAMETER_PREFIX + variable.name)
    if raw == "":
        return None
    return float(raw) if numeric else raw


def set_clinical_value(parameter_node: Any, variable: Any, value: float | str | None) -> None:
    """Store one clinical value (None = not given).

    Args:
        parameter_node: the module's parameter node.
        variable: a ClinicalVariable of the bundle.
        value: the value, or None.
    """
    numeric = variable.type == "numeric"
    if has_typed_field(variable):
        if numeric:
            setattr(parameter_node, variable.name, NOT_GIVEN_NUMBER if value is None else float(value))
        else:
            setattr(parameter_node, variable.name, "" if value is None else str(value))
        return
    raw = "" if value is None else (repr(float(value)) if numeric else str(value))
    parameter_node.parameterNode.SetParameter(CLINICAL_PARAMETER_PREFIX + variable.name, raw)


def clinical_values(parameter_node: Any, variables: Sequence[Any]) -> dict[str, float | str]:
    """The given clinical values by variable name (absent ones left out).

    Args:
        parameter_node: the module's parameter node.
        variables: the bundle's ClinicalVariable list.

    Returns:
        ``{name: value}`` for the values that were entered.
    """
    values = {}
    for variable in variables:
        value = get_clinical_value(parameter_node, variable)
        if value is not None:
            values[variable.name] = value
    return values


# ---------------------------------------------------------------------------------------------
# What keeps Apply disabled
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputProblem:
    """One reason Apply cannot run; the module words it (translated) from the code."""

    code: str
    detail: str = ""  # the bundle's problem, or the clinical variable's description


NOT_READY = "not_ready"  # no parameter node yet
NO_IMAGE = "no_image"
NO_SEGMENTATION = "no_segmentation"
NO_SEGMENT = "no_segment"  # no lesion segment chosen, or the chosen one was deleted
NO_BUNDLE_FOLDER = "no_bundle_folder"  # "Model bundle folder" chosen, no folder given
BUNDLE_UNUSABLE = "bundle_unusable"
CLINICAL_MISSING = "clinical_missing"


def input_problems(
    parameter_node: Any,
    bundle_folder_chosen: bool,
    bundle_problem: str = "",
    clinical_variables: Sequence[Any] | None = None,
) -> list[InputProblem]:
    """What is missing before Apply can run, in the order the panel shows the inputs.

    Args:
        parameter_node: the module's parameter node, or None before the module is set up.
        bundle_folder_chosen: the model choice is "Model bundle folder" (not the bundled model).
        bundle_problem: why the chosen bundle failed verification ("" = it did not fail).
        clinical_variables: the verified bundle's clinical variables; None while the bundle is not
            verified (its required variables are then unknown).

    Returns:
        The problems; empty when Apply can run.
    """
    if parameter_node is None:
        return [InputProblem(NOT_READY)]
    problems = []
    if not parameter_node.inputVolume:
        problems.append(InputProblem(NO_IMAGE))
    segmentation = parameter_node.segmentationNode
    if not segmentation:
        problems.append(InputProblem(NO_SEGMENTATION))
    elif (
        not parameter_node.segmentId
        or segmentation.GetSegmentation().GetSegment(parameter_node.segmentId) is None
    ):
        problems.append(InputProblem(NO_SEGMENT))
    if bundle_folder_chosen and not parameter_node.bundlePath:
        problems.append(InputProblem(NO_BUNDLE_FOLDER))
    if bundle_problem:
        problems.append(InputProblem(BUNDLE_UNUSABLE, bundle_problem))
    if parameter_node.useClinical and clinical_variables is not None:
        for variable in clinical_variables:
            if variable.required and get_clinical_value(parameter_node, variable) is None:
                problems.append(InputProblem(CLINICAL_MISSING, variable.description or variable.name))
    return problems


# ---------------------------------------------------------------------------------------------
# Scene: nodes, heatmap layer, prediction outputs
# ---------------------------------------------------------------------------------------------


def node_by_id(scene: Any, node_id: str | None) -> Any:
    """The scene's node with this ID, or None for an empty or unknown ID."""
    return scene.GetNodeByID(node_id) if node_id else None


def _nodes_by_class(scene: Any, class_name: str) -> list[Any]:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]


def first_image_node(scene: Any, exclude: Any = None) -> Any:
    """The first scalar or RGB volume of the scene (not a labelmap, not ``exclude``), or None.

    Args:
        scene: the MRML scene.
        exclude: a volume never to pick (the module's own heatmap).
    """
    for node in _nodes_by_class(scene, "vtkMRMLVolumeNode"):
        if node.GetClassName() in IMAGE_NODE_CLASSES and (exclude is None or node.GetID() != exclude.GetID()):
            return node
    return None


def heatmap_display_state(parameter_node: Any) -> tuple[str, str | None, bool, float] | None:
    """What update_heatmap_display would show now: (heatmap ID, image ID, shown, opacity).

    The heatmap is shown only when asked for and only over the image it was computed on.

    Returns:
        The state, or None when there is no heatmap (nothing to show or hide).
    """
    heatmap = parameter_node.heatmapVolume if parameter_node is not None else None
    if heatmap is None:
        return None
    image = parameter_node.inputVolume
    image_id = image.GetID() if image is not None else None
    matches = image_id is not None and heatmap.GetAttribute(HEATMAP_IMAGE_ATTRIBUTE) == image_id
    return (
        heatmap.GetID(),
        image_id,
        bool(parameter_node.showHeatmap and matches),
        parameter_node.heatmapOpacity,
    )


def update_heatmap_display(scene: Any, state: tuple[str, str | None, bool, float]) -> int:
    """Lay the heatmap over its image in every slice view, or take it off, per heatmap_display_state.

    Showing sets the image as background (unless the view shows the heatmap already, so a user's
    other background choice stays) and the heatmap as foreground with the opacity; hiding clears
    the foreground only of the views that show the heatmap, leaving other foregrounds alone.

    Args:
        scene: the MRML scene (its vtkMRMLSliceCompositeNodes; none are created).
        state: heatmap_display_state(parameter_node).

    Returns:
        The number of slice views changed.
    """
    heatmap_id, image_id, show, opacity = state
    changed = 0
    for composite in _nodes_by_class(scene, "vtkMRMLSliceCompositeNode"):
        shows_heatmap = composite.GetForegroundVolumeID() == heatmap_id
        if show:
            if not shows_heatmap:
                composite.SetBackgroundVolumeID(image_id)
            composite.SetForegroundVolumeID(heatmap_id)
            composite.SetForegroundOpacity(opacity)
            changed += 1
        elif shows_heatmap:
            composite.SetForegroundVolumeID(None)
            changed += 1
    return changed


def result_inputs(parameter_node: Any) -> tuple[str | None, str | None, str]:
    """(image ID, segmentation ID, segment ID): the inputs a shown result belongs to."""
    volume, segmentation = parameter_node.inputVolume, parameter_node.segmentationNode
    return (
        volume.GetID() if volume else None,
        segmentation.GetID() if segmentation else None,
        parameter_node.segmentId,
    )


def prediction_arguments(parameter_node: Any, clinical_variables: Sequence[Any]) -> dict[str, Any]:
    """Keyword arguments of ``api.predict_nodes`` for the parameter node's inputs and options.

    Args:
        parameter_node: the module's parameter node.
        clinical_variables: the bundle's clinical variables (their values are read from the node
            when "use clinical data" is on).
    """
    clinical = clinical_values(parameter_node, clinical_variables) if parameter_node.useClinical else {}
    return {
        "volume_node": parameter_node.inputVolume,
        "segmentation_node": parameter_node.segmentationNode,
        "segment_id": parameter_node.segmentId or None,
        "clinical": clinical or None,
        "bundle_path": parameter_node.bundlePath or None,
        "stability": parameter_node.stability,
        # The map the module draws; empty means the default (the api refuses unknown kinds).
        "heatmap_kind": parameter_node.heatmapKind or DEFAULT_HEATMAP_KIND,
        "heatmap_opacity": parameter_node.heatmapOpacity,
        "features_table_node": parameter_node.featuresTable,
        "prediction_table_node": parameter_node.predictionTable,
        "heatmap_node": parameter_node.heatmapVolume,
    }


def store_prediction_outputs(parameter_node: Any, result: Any) -> None:
    """Keep a prediction's output nodes in the parameter node and tie the heatmap to its image.

    Args:
        parameter_node: the module's parameter node (its inputVolume is the predicted image).
        result: the api's PredictionResult (its ``*_node_id`` fields).
    """
    node = parameter_node.parameterNode
    scene = node.GetScene()
    # One Modified event for the three outputs: the widget refreshes once.
    was_modifying = node.StartModify()
    try:
        parameter_node.featuresTable = node_by_id(scene, result.features_table_node_id)
        parameter_node.predictionTable = node_by_id(scene, result.prediction_table_node_id)
        parameter_node.heatmapVolume = node_by_id(scene, result.heatmap_node_id)
    finally:
        node.EndModify(was_modifying)
    if parameter_node.heatmapVolume is not None:
        parameter_node.heatmapVolume.SetAttribute(HEATMAP_IMAGE_ATTRIBUTE, parameter_node.inputVolume.GetID())


def predict_parameter_node(parameter_node: Any, progress: Callable[[float, str], None] | None = None) -> Any:
    """Predict the lesion of the parameter node's inputs and keep the output nodes in it.

    Args:
        parameter_node: inputs, clinical values, options and (optional) output nodes.
        progress: callback(fraction, message), or None.

    Returns:
        The api's PredictionResult.

    Raises:
        InputError: unusable image, lesion or clinical values; BundleError: bad bundle.
    """
    from . import api

    predictor = api.load_predictor(parameter_node.bundlePath or None)
    arguments = prediction_arguments(parameter_node, predictor.clinical_variables)
    result = api.predict_nodes(**arguments, progress=progress)
    store_prediction_outputs(parameter_node, result)
    return result
