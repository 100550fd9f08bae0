"""DLR Predictor: deep-learning radiomics of breast ultrasound lesions in 3D Slicer.

This file is the thin Qt/Slicer layer of the extension: the module description, the parameter node,
the widget (inputs, lesion drawing, clinical form, model choice, results, heatmap display), a logic
facade over ``DLRPredictorLib.api`` and the Slicer self-test. All computation lives in
DLRPredictorLib, which is imported inside functions so that the module loads fast and without torch
or pyradiomics.
"""

import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Union

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLVectorVolumeNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The project's home page; the only place the address is written (CMakeLists.txt repeats it as
# EXTENSION_HOMEPAGE and a test keeps the two equal).
PROJECT_URL = "https://github.com/dlrpredictor/SlicerDLRPredictor"
USER_GUIDE_URL = PROJECT_URL + "#readme"

SAMPLE_CATEGORY = "DLR Predictor"
SAMPLE_NAME = "DLRPredictorPhantom"

# Clinical values of the bundled model have typed parameter-node fields (age, birads); values of
# variables that other bundles declare are kept as raw parameters under this prefix.
CLINICAL_PARAMETER_PREFIX = "clinical."
# Age is a float field: 0 stands for "not given" (no patient of this application is 0 years old).
NOT_GIVEN_NUMBER = 0.0

SEGMENT_EDITOR_SINGLETON_TAG = "DLRPredictor"
# Attribute of the heatmap volume: ID of the image it was computed on.
HEATMAP_IMAGE_ATTRIBUTE = "DLRPredictor.ImageID"


#
# DLRPredictor
#


class DLRPredictor(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DLR Predictor")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["DLRPredictor contributors"]
        self.parent.helpText = _(
            "Estimates the probability that a breast ultrasound lesion is malignant from the image, the "
            "lesion contour and optional clinical values, with a deep-learning radiomics (DLR) model: "
            "pyradiomics features and the deep features of a ResNet are fused into signatures and a "
            "nomogram. Shows the probability, the cut-off frozen at training, the signature scores, the "
            "nomogram points and a Grad-CAM heatmap over the image. For research only; not a medical "
            'device. See the <a href="{url}">user guide</a>.'
        ).format(url=USER_GUIDE_URL)
        self.parent.acknowledgementText = _(
            "The bundled model was trained on the BUS-BRA dataset (Gómez-Flores W. et al., BUS-BRA: A "
            "Breast Ultrasound Dataset for Assessing Computer-aided Diagnosis Systems, Medical Physics, "
            "2023) and the BrEaST dataset (Pawłowska A. et al., Curated benchmark dataset for ultrasound "
            "based breast lesion analysis, Scientific Data 11, 148 (2024)). Radiomics features are "
            "computed with pyradiomics (van Griethuysen J.J.M. et al., Computational Radiomics System to "
            "Decode the Radiographic Phenotype, Cancer Research, 2017), heatmaps with Grad-CAM (Selvaraju "
            "R.R. et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
            "Localization, ICCV 2017) of a ResNet (He K. et al., Deep Residual Learning for Image "
            "Recognition, CVPR 2016)."
        )
        # The synthetic phantom is written on first use, after start-up, never at import.
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def phantomSampleFiles() -> tuple[str, str]:
    """Image and lesion-mask files (NRRD) of the embedded synthetic phantom.

    Returns:
        (image path, mask path); written to a cache folder by DLRPredictorLib on first call.

    Raises:
        KeyError: the library returned no image or mask path.
    """
    from DLRPredictorLib import api

    paths = api.phantom_sample_paths()
    image = paths.get("image") or paths.get("image_nrrd")
    mask = paths.get("mask") or paths.get("mask_nrrd")
    if image is None or mask is None:
        raise KeyError(_("The phantom sample has no image and mask file: {keys}").format(keys=sorted(paths)))
    return str(image), str(mask)


def loadPhantomSample(source: Any = None) -> tuple[Any, Any]:
    """Load the phantom image and its lesion as a one-segment segmentation.

    Args:
        source: the SampleDataSource when called by the Sample Data module (unused).

    Returns:
        (volume node, segmentation node).
    """
    image, mask = phantomSampleFiles()
    volume = slicer.util.loadVolume(image, {"name": SAMPLE_NAME})
    labelmap = slicer.util.loadLabelVolume(mask, {"name": SAMPLE_NAME + "LesionLabel"})
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", SAMPLE_NAME + "Lesion")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
    slicer.mrmlScene.RemoveNode(labelmap)
    return volume, segmentation


def registerSampleData() -> None:
    """Add the embedded synthetic phantom (image and lesion) to the Sample Data module."""
    from DLRPredictorLib.errors import DLRError

    try:
        import SampleData  # absent when the Sample Data module is disabled

        image, mask = phantomSampleFiles()
    except (DLRError, OSError, ImportError, KeyError) as error:
        # Not fatal: the module works without the sample; say why it is absent.
        logging.warning(f"DLR Predictor: the synthetic phantom sample could not be prepared: {error}")
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "DLRPredictor.png"),
        uris=[Path(image).as_uri(), Path(mask).as_uri()],
        # Prefixed names: the Sample Data cache folder is shared with every other module.
        fileNames=[f"{SAMPLE_NAME}_{Path(image).name}", f"{SAMPLE_NAME}_{Path(mask).name}"],
        nodeNames=[SAMPLE_NAME, SAMPLE_NAME + "Lesion"],
        loadFileType=["VolumeFile", "SegmentationFile"],
        # Checksums make the cache refresh its copy when a new version writes a different phantom.
        checksums=[f"SHA256:{_sha256(image)}", f"SHA256:{_sha256(mask)}"],
        # The button loads the lesion through a labelmap: one segment, in the image's geometry.
        customDownloader=loadPhantomSample,
    )


#
# Python dependencies (asked for in the widget, never installed silently or at import)
#


def _pydepsModule() -> Any:
    """Slicer's package helper with ``pip_ensure`` (Slicer 5.11+), or None in older versions."""
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure") and hasattr(module, "load_requirements"):
            return module
    return None


def missingRequirements(requirementsPath: str) -> list[str]:
    """Requirements of the file that the running Python does not satisfy.

    Args:
        requirementsPath: a requirements.txt (one requirement a line, ``#`` comments, markers).

    Returns:
        ``name<specifier>`` strings, ready for pip, of the requirements to install.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    with open(requirementsPath, encoding="utf-8") as f:
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


def _ensureRequirements(requirementsPath: str) -> bool:
    pydeps = _pydepsModule()
    if pydeps is not None:
        try:
            pydeps.pip_ensure(pydeps.load_requirements(requirementsPath), requester=_("DLR Predictor"))
        except RuntimeError:
            # pip_ensure raises RuntimeError when the user declines the installation.
            return False
        return True
    missing = missingRequirements(requirementsPath)
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
        _(
            "DLR Predictor needs these Python packages: {packages}.\n\n"
            "Install them now? This needs a network connection and may take a few minutes."
        ).format(packages=", ".join(missing)),
        windowTitle=_("Install Python packages"),
    ):
        return False
    slicer.util.pip_install(missing)
    return True


def _ensureTorch() -> bool:
    if importlib.util.find_spec("torch") and importlib.util.find_spec("torchvision"):
        return True
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            _(
                "PyTorch is not installed. Install the PyTorch extension with the Extensions Manager, "
                "restart 3D Slicer and press Apply again."
            )
        )
        return False
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not slicer.util.confirmOkCancelDisplay(
        _(
            "DLR Predictor needs PyTorch, which is not installed yet. The PyTorch extension can "
            "download and install it now (a large download that may take several minutes).\n\n"
            "Install PyTorch now?"
        ),
        windowTitle=_("Install PyTorch"),
    ):
        return False
    torch = torchLogic.installTorch(
        askConfirmation=False, torchVersionRequirement=">=2.1", torchvisionVersionRequirement=">=0.16"
    )
    return torch is not None


def ensure_dependencies(requirementsPath: str) -> bool:
    """Make the packages DLRPredictorLib needs importable, asking the user before any installation.

    Args:
        requirementsPath: the module's Resources/requirements.txt.

    Returns:
        True when everything is available; False when the user declined or an extension is missing
        (a message saying what to do has been shown).
    """
    if not _ensureRequirements(requirementsPath):
        return False
    if importlib.util.find_spec("radiomics") is None:
        slicer.util.errorDisplay(
            _(
                "pyradiomics is not available. Install the SlicerRadiomics extension with the Extensions "
                "Manager, restart 3D Slicer and press Apply again."
            )
        )
        return False
    return _ensureTorch()


#
# DLRPredictorParameterNode
#


@parameterNodeWrapper
class DLRPredictorParameterNode:
    """The parameters of the module, saved with the scene.

    inputVolume - the ultrasound image, grayscale (scalar) or color (RGB vector volume).
    segmentationNode - the segmentation holding the lesion contour.
    segmentId - the lesion segment in segmentationNode ("" = not chosen).
    bundlePath - folder of the model bundle ("" = the bundled model).
    age - patient age in years (0 = not given).
    birads - BI-RADS category ("" = not given).
    useClinical - use the clinical values (otherwise the image-only model).
    stability - also predict on slightly eroded / dilated contours.
    heatmapOpacity - opacity of the Grad-CAM overlay.
    showHeatmap - show the Grad-CAM overlay in the slice views.
    featuresTable, predictionTable, heatmapVolume - output nodes (created when empty).
    """

    # typing.Union, not "|": the wrapper recognizes node unions by typing.Union, and None must be a
    # member so that the selector can be cleared. Listing both types keeps RGB images selectable.
    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode, None]  # noqa: UP007
    segmentationNode: vtkMRMLSegmentationNode
    segmentId: str = ""
    bundlePath: str = ""
    age: float = NOT_GIVEN_NUMBER
    birads: str = ""
    useClinical: bool = True
    stability: bool = False
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showHeatmap: bool = True
    featuresTable: vtkMRMLTableNode
    predictionTable: vtkMRMLTableNode
    heatmapVolume: vtkMRMLScalarVolumeNode


# Clinical variables of the bundled model with typed parameter-node fields, and their types.
TYPED_CLINICAL_FIELDS = {"age": "numeric", "birads": "categorical"}


def _hasTypedField(variable: Any) -> bool:
    return TYPED_CLINICAL_FIELDS.get(variable.name) == variable.type


def getClinicalValue(parameterNode: DLRPredictorParameterNode, variable: Any) -> float | str | None:
    """The stored value of one clinical variable, or None when not given.

    Args:
        parameterNode: the module's parameter node.
        variable: a ClinicalVariable of the bundle (name, type "numeric" or "categorical").

    Returns:
        A float for a numeric variable, a string for a categorical one, or None.
    """
    numeric = variable.type == "numeric"
    if _hasTypedField(variable):
        value = getattr(parameterNode, variable.name)
        if numeric:
            return None if float(value) == NOT_GIVEN_NUMBER else float(value)
        return str(value) or None
    raw = parameterNode.parameterNode.GetParameter(CLINICAL_PARAMETER_PREFIX + variable.name)
    if raw == "":
        return None
    return float(raw) if numeric else raw


def setClinicalValue(
    parameterNode: DLRPredictorParameterNode, variable: Any, value: float | str | None
) -> None:
    """Store one clinical value (None = not given).

    Args:
        parameterNode: the module's parameter node.
        variable: a ClinicalVariable of the bundle.
        value: the value, or None.
    """
    numeric = variable.type == "numeric"
    if _hasTypedField(variable):
        if numeric:
            setattr(parameterNode, variable.name, NOT_GIVEN_NUMBER if value is None else float(value))
        else:
            setattr(parameterNode, variable.name, "" if value is None else str(value))
        return
    raw = "" if value is None else (repr(float(value)) if numeric else str(value))
    parameterNode.parameterNode.SetParameter(CLINICAL_PARAMETER_PREFIX + variable.name, raw)


def clinicalValues(parameterNode: DLRPredictorParameterNode, variables: list[Any]) -> dict[str, float | str]:
    """The given clinical values by variable name (absent ones left out).

    Args:
        parameterNode: the module's parameter node.
        variables: the bundle's ClinicalVariable list.

    Returns:
        ``{name: value}`` for the values that were entered.
    """
    values = {}
    for variable in variables:
        value = getClinicalValue(parameterNode, variable)
        if value is not None:
            values[variable.name] = value
    return values


#
# Clinical form (built at run time from the clinical variables the bundle declares)
#


class ClinicalForm:
    """One editor per clinical variable in a QFormLayout, kept in step with the parameter node.

    A numeric variable gets a spin box whose lowest value reads "not given"; a categorical one a
    combo box whose first item is "not given". Edits go to the onEdited callback.
    """

    def __init__(self, layout: Any, onEdited: Any) -> None:
        """Create an empty form.

        Args:
            layout: the QFormLayout to fill.
            onEdited: callback(variable, value) after the user changed a value.
        """
        self._layout = layout
        self._onEdited = onEdited
        self._editors: dict[str, tuple[Any, Any]] = {}

    def rebuild(self, predictor: Any) -> None:
        """Replace the editors by those of the predictor's variables (None: not verified yet)."""
        while self._layout.rowCount() > 0:
            self._layout.removeRow(0)
        self._editors = {}
        variables = predictor.clinical_variables if predictor is not None else []
        if not variables:
            hint = qt.QLabel()
            hint.wordWrap = True
            if predictor is None:
                hint.text = _("The clinical fields appear once the model has been verified.")
            else:
                hint.text = _("This model uses no clinical data.")
            self._layout.addRow(hint)
        for variable in variables:
            editor = self._createEditor(variable)
            self._editors[variable.name] = (variable, editor)
            # Short descriptions make good labels; long ones stay in the tooltip.
            title = variable.description if 0 < len(variable.description) <= 30 else variable.name
            label = qt.QLabel(_("{name}:").format(name=title))
            label.toolTip = editor.toolTip
            self._layout.addRow(label, editor)

    def sync(self, parameterNode: DLRPredictorParameterNode) -> None:
        """Show the parameter node's values; editors are enabled only when clinical data is used."""
        for variable, editor in self._editors.values():
            value = getClinicalValue(parameterNode, variable)
            wasBlocked = editor.blockSignals(True)
            if variable.type == "numeric":
                editor.value = editor.minimum if value is None else float(value)
            else:
                allowed = list(variable.allowed)
                editor.currentIndex = allowed.index(value) + 1 if value in allowed else 0
            editor.blockSignals(wasBlocked)
            editor.enabled = parameterNode.useClinical

    @staticmethod
    def _toolTip(variable: Any) -> str:
        parts = [variable.description or variable.name]
        if variable.type == "numeric" and (variable.minimum is not None or variable.maximum is not None):
            parts.append(
                _("Accepted range: {minimum} to {maximum} {unit}.").format(
                    minimum=variable.minimum, maximum=variable.maximum, unit=variable.unit or ""
                )
            )
        if variable.type != "numeric" and variable.allowed:
            parts.append(_("Accepted values: {values}.").format(values=", ".join(variable.allowed)))
        if variable.required:
            parts.append(_("Needed by the full model; without it the image-only model is used."))
        return "\n".join(parts)

    def _createEditor(self, variable: Any) -> Any:
        if variable.type == "numeric":
            editor = qt.QDoubleSpinBox()
            editor.decimals = 1
            # The value just below the range shows "not given" (Qt's special value text idiom).
            minimum = variable.minimum if variable.minimum is not None else NOT_GIVEN_NUMBER + 1.0
            editor.minimum = minimum - 1.0
            editor.maximum = variable.maximum if variable.maximum is not None else 1.0e6
            editor.specialValueText = _("not given")
            if variable.unit:
                editor.suffix = " " + variable.unit
            editor.connect("valueChanged(double)", lambda value, v=variable: self._edited(v))
        else:
            editor = qt.QComboBox()
            editor.addItem(_("not given"))
            for value in variable.allowed:
                editor.addItem(value)
            editor.connect("currentIndexChanged(int)", lambda index, v=variable: self._edited(v))
        editor.toolTip = self._toolTip(variable)
        return editor

    def _edited(self, variable: Any) -> None:
        _variable, editor = self._editors[variable.name]
        if variable.type == "numeric":
            value = None if editor.value == editor.minimum else float(editor.value)
        else:
            value = None if editor.currentIndex <= 0 else variable.allowed[editor.currentIndex - 1]
        self._onEdited(variable, value)


#
# DLRPredictorWidget
#


class DLRPredictorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, clinical form, model choice, Apply, results and display."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._predictor = None  # verified Predictor of the current bundle, or None
        self._bundleProblem = ""  # why the current bundle cannot be used
        self._checkedBundlePath: str | None = None
        self._clinicalForm: ClinicalForm | None = None
        self._displayedHeatmapState: tuple | None = None
        self._shownResultInputs: tuple | None = None  # inputs of the results on display

    # -- set-up and life cycle ----------------------------------------------------------------

    def setup(self) -> None:
        """Load the .ui, set the scene and connect signals (no heavy imports here)."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DLRPredictor.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # The segment editor wants its parameter node before its scene.
        self._selectSegmentEditorNode()
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.progressBar.hide()
        self._clinicalForm = ClinicalForm(self.ui.clinicalFormWidget.layout(), self._onClinicalEdited)

        self.logic = DLRPredictorLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showTablesButton.connect("clicked(bool)", self.onShowTables)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.bundleChoiceComboBox.connect("currentIndexChanged(int)", self.onBundleChoiceChanged)
        self.ui.bundlePathLineEdit.connect("currentPathChanged(QString)", self.onBundlePathEdited)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self._selectSegmentEditorNode()
        self.initializeParameterNode()
        self.ui.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self) -> None:
        """Called each time the user opens another module."""
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node is about to be removed with the scene."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter nodes if the module is shown while the scene closes."""
        if self.parent.isEntered:
            self._selectSegmentEditorNode()
            self.initializeParameterNode()

    def onReload(self) -> None:
        """Developer reload: fresh DLRPredictorLib modules too (importlib, never ``imp``)."""
        for name in [n for n in sys.modules if n.startswith("DLRPredictorLib.")]:
            del sys.modules[name]
        if "DLRPredictorLib" in sys.modules:
            importlib.reload(sys.modules["DLRPredictorLib"])
        ScriptedLoadableModuleWidget.onReload(self)

    def _selectSegmentEditorNode(self) -> None:
        # A singleton of our own, so that the Segment Editor module keeps its own settings.
        node = slicer.mrmlScene.GetSingletonNode(SEGMENT_EDITOR_SINGLETON_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(SEGMENT_EDITOR_SINGLETON_TAG)
            node = slicer.mrmlScene.AddNode(node)
        if self.ui.segmentEditorWidget.mrmlSegmentEditorNode() != node:
            self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(node)

    # -- parameter node -------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        """Get (or create) the parameter node and pre-select inputs to save clicks."""
        self.setParameterNode(self.logic.getParameterNode())
        parameterNode = self._parameterNode
        if not parameterNode.inputVolume:
            firstImage = self._firstImageNode()
            if firstImage:
                parameterNode.inputVolume = firstImage
        if not parameterNode.segmentationNode:
            firstSegmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if firstSegmentation:
                parameterNode.segmentationNode = firstSegmentation

    def _firstImageNode(self) -> Any:
        # Scalar or RGB images only: not labelmaps, and not our own heatmap.
        heatmap = self._parameterNode.heatmapVolume if self._parameterNode else None
        for node in slicer.util.getNodesByClass("vtkMRMLVolumeNode"):
            if (
                node.GetClassName() in ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode")
                and node != heatmap
            ):
                return node
        return None

    def setParameterNode(self, inputParameterNode: DLRPredictorParameterNode | None) -> None:
        """Set and observe the parameter node; the .ui widgets with SlicerParameterName follow it."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameterNode = self._parameterNode
        if parameterNode is None:
            return
        editor = self.ui.segmentEditorWidget
        if editor.segmentationNode() != parameterNode.segmentationNode:
            editor.setSegmentationNode(parameterNode.segmentationNode)
        if editor.sourceVolumeNode() != parameterNode.inputVolume:
            editor.setSourceVolumeNode(parameterNode.inputVolume)
        self._syncSegmentSelector()
        self._syncBundleWidgets()
        if parameterNode.bundlePath != self._checkedBundlePath:
            # Verification reads and hashes the bundle: after the panel is shown, not inside setup().
            self._checkedBundlePath = parameterNode.bundlePath
            qt.QTimer.singleShot(0, self._refreshBundle)
        self._clinicalForm.sync(parameterNode)
        self._updateHeatmapDisplay()
        self._clearStaleResults()
        self._checkCanApply()

    def _syncSegmentSelector(self) -> None:
        parameterNode = self._parameterNode
        selector = self.ui.segmentSelector
        # Setting the segmentation repopulates the segments; do not let that overwrite a saved choice.
        wasBlocked = selector.blockSignals(True)
        try:
            if selector.currentNode() != parameterNode.segmentationNode:
                selector.setCurrentNode(parameterNode.segmentationNode)
            if parameterNode.segmentId and selector.currentSegmentID() != parameterNode.segmentId:
                selector.setCurrentSegmentID(parameterNode.segmentId)
        finally:
            selector.blockSignals(wasBlocked)
        current = selector.currentSegmentID() or ""
        if current != parameterNode.segmentId:
            # The saved segment is gone, or none was chosen yet: follow the selector.
            parameterNode.segmentId = current

    def onSegmentChanged(self, segmentId: str) -> None:
        """The user picked another lesion segment."""
        if self._parameterNode and self._parameterNode.segmentId != (segmentId or ""):
            self._parameterNode.segmentId = segmentId or ""

    # -- model bundle ---------------------------------------------------------------------------

    def _syncBundleWidgets(self) -> None:
        path = self._parameterNode.bundlePath
        combo, pathEdit = self.ui.bundleChoiceComboBox, self.ui.bundlePathLineEdit
        if path and combo.currentIndex != 1:
            wasBlocked = combo.blockSignals(True)
            combo.currentIndex = 1
            combo.blockSignals(wasBlocked)
        pathEdit.enabled = combo.currentIndex == 1
        # ctkPathLineEdit is kept in sync by hand: the wrapper binds it to pathlib.Path only, and
        # here an empty string must mean "the bundled model".
        if path and pathEdit.currentPath != path:
            wasBlocked = pathEdit.blockSignals(True)
            pathEdit.currentPath = path
            pathEdit.blockSignals(wasBlocked)

    def onBundleChoiceChanged(self, index: int) -> None:
        """Bundled model (index 0) or a model bundle folder (index 1)."""
        if self._parameterNode is None:
            return
        path = self.ui.bundlePathLineEdit.currentPath if index == 1 else ""
        self._checkedBundlePath = path  # verified right below, not again by the observer
        self._parameterNode.bundlePath = path
        self._syncBundleWidgets()
        self._refreshBundle()

    def onBundlePathEdited(self, path: str) -> None:
        """A folder was typed or browsed."""
        if self._parameterNode is not None and self.ui.bundleChoiceComboBox.currentIndex == 1:
            self._parameterNode.bundlePath = path

    def _refreshBundle(self) -> None:
        """Verify the chosen bundle (api.load_predictor) and show the outcome in the status label."""
        from DLRPredictorLib.errors import DLRError

        if self._parameterNode is None:
            return
        path = self._parameterNode.bundlePath
        self._predictor, self._bundleProblem = None, ""
        if self.ui.bundleChoiceComboBox.currentIndex == 1 and not path:
            self.ui.bundleStatusLabel.text = _("Choose the model bundle folder.")
        else:
            try:
                self._predictor = self.logic.loadPredictor(path)
            except ImportError as error:
                # Slicer's Python may lack a package until the user accepts the installation on Apply.
                self.ui.bundleStatusLabel.text = _(
                    "Not verified yet: the Python package '{name}' is missing. You will be asked to "
                    "install it when you press Apply."
                ).format(name=error.name or error)
            except (DLRError, OSError, ValueError) as error:
                self._bundleProblem = str(error)
                self.ui.bundleStatusLabel.text = _("Not usable: {reason}").format(reason=error)
            else:
                predictor = self._predictor
                self.ui.bundleStatusLabel.text = _(
                    "Verified: {title} ({bundleId}). Predicts '{positiveClass}'; cut-off {cutoff:.3f}."
                ).format(
                    title=predictor.title,
                    bundleId=predictor.bundle_id,
                    positiveClass=predictor.positive_class,
                    cutoff=predictor.cutoff,
                )
                self.ui.probabilityTitleLabel.text = _("Probability ({positiveClass}):").format(
                    positiveClass=predictor.positive_class
                )
        self._clinicalForm.rebuild(self._predictor)
        self._clinicalForm.sync(self._parameterNode)
        self._checkCanApply()

    def _onClinicalEdited(self, variable: Any, value: float | str | None) -> None:
        if self._parameterNode is not None:
            setClinicalValue(self._parameterNode, variable, value)
            self._checkCanApply()

    # -- apply --------------------------------------------------------------------------------

    def _inputProblems(self) -> list[str]:
        """What is missing before Apply can run, in words the user can act on."""
        parameterNode = self._parameterNode
        problems = []
        if parameterNode is None:
            return [_("The module is not ready yet.")]
        if not parameterNode.inputVolume:
            problems.append(_("Choose the ultrasound image."))
        if not parameterNode.segmentationNode:
            problems.append(_("Choose or create the segmentation that outlines the lesion."))
        elif not parameterNode.segmentId:
            problems.append(
                _("Draw the lesion with the Segment Editor above and choose it as the lesion segment.")
            )
        if self.ui.bundleChoiceComboBox.currentIndex == 1 and not parameterNode.bundlePath:
            problems.append(_("Choose the model bundle folder, or select 'Bundled model'."))
        if self._bundleProblem:
            problems.append(_("The model cannot be used: {reason}").format(reason=self._bundleProblem))
        if parameterNode.useClinical and self._predictor is not None:
            for variable in self._predictor.clinical_variables:
                if variable.required and getClinicalValue(parameterNode, variable) is None:
                    problems.append(
                        _("Enter {name}, or uncheck 'Use clinical data' for the image-only model.").format(
                            name=variable.description or variable.name
                        )
                    )
        return problems

    def _checkCanApply(self, caller=None, event=None) -> None:
        problems = self._inputProblems()
        self.ui.applyButton.enabled = not problems
        self.ui.applyButton.toolTip = "\n".join(problems) if problems else _("Compute the prediction.")

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = round(100 * min(max(float(fraction), 0.0), 1.0))
        self.ui.progressBar.setFormat(_("%p% - {step}").format(step=message))
        slicer.app.processEvents()

    def onApplyButton(self) -> None:
        """Check packages, run the prediction and show the results."""
        with slicer.util.tryWithErrorDisplay(_("Prediction failed."), waitCursor=True):
            self.ui.applyButton.enabled = False
            self.ui.progressBar.show()
            try:
                self._onProgress(0.0, _("Checking Python packages"))
                if not ensure_dependencies(self.resourcePath("requirements.txt")):
                    return
                if self._predictor is None:
                    # Packages may just have been installed: verify the bundle now.
                    self._refreshBundle()
                    if self._predictor is None:
                        raise ValueError(self._bundleProblem or self.ui.bundleStatusLabel.text)
                result = self.logic.predict(self._parameterNode, progress=self._onProgress)
                self._showResult(result)
                self._shownResultInputs = self._resultInputs()
                self._displayedHeatmapState = None
                self._updateHeatmapDisplay()
                self.onShowTables()
            finally:
                self.ui.progressBar.hide()
                self._checkCanApply()

    # -- results and display ------------------------------------------------------------------

    def _showResult(self, result: Any) -> None:
        self.ui.probabilityValueLabel.text = f"{result.probability:.3f}"
        self.ui.predictedLabelValueLabel.text = str(result.label)
        self.ui.cutoffValueLabel.text = f"{result.cutoff:.3f}"
        self.ui.modelUsedValueLabel.text = str(result.model_used)
        if result.stability is not None:
            probabilities = list(result.stability.probabilities)
            self.ui.stabilityValueLabel.text = _(
                "probabilities {low:.3f} to {high:.3f} (spread {spread:.3f}); label changes: {changes}"
            ).format(
                low=min(probabilities),
                high=max(probabilities),
                spread=result.stability.spread,
                changes=_("yes") if result.stability.label_changes else _("no"),
            )
        else:
            self.ui.stabilityValueLabel.text = _("not checked")
        rows = [
            (_("Score {name}").format(name=name), value) for name, value in result.signature_scores.items()
        ]
        rows += [
            (_("Nomogram points {name}").format(name=n), value) for n, value in result.nomogram_points.items()
        ]
        if result.total_points is not None:
            rows.append((_("Nomogram total points"), result.total_points))
        table = self.ui.resultsTable
        table.setRowCount(len(rows))
        for row, (name, value) in enumerate(rows):
            table.setItem(row, 0, qt.QTableWidgetItem(name))
            table.setItem(row, 1, qt.QTableWidgetItem(f"{value:.3f}"))
        warnings = [str(w) for w in result.warnings]
        if getattr(result, "out_of_distribution", False):
            warnings.insert(0, _("This image or lesion is unlike the training data: interpret with caution."))
        self.ui.warningsLabel.text = "\n".join(warnings)
        self.ui.showTablesButton.enabled = True

    def onShowTables(self) -> None:
        """Switch to a layout with a table view showing the prediction table."""
        table = self._parameterNode.predictionTable if self._parameterNode else None
        if table is None:
            return
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        applicationLogic = slicer.app.applicationLogic()
        applicationLogic.GetSelectionNode().SetReferenceActiveTableID(table.GetID())
        applicationLogic.PropagateTableSelection()

    def _updateHeatmapDisplay(self) -> None:
        """Apply the heatmap visibility and opacity to the slice views (only when they changed)."""
        parameterNode = self._parameterNode
        heatmap = parameterNode.heatmapVolume if parameterNode else None
        if heatmap is None:
            return
        image = parameterNode.inputVolume
        # A heatmap computed on another image is never laid over this one.
        matches = image is not None and heatmap.GetAttribute(HEATMAP_IMAGE_ATTRIBUTE) == image.GetID()
        show = parameterNode.showHeatmap and matches
        state = (heatmap.GetID(), image.GetID() if image else None, show, parameterNode.heatmapOpacity)
        if state == self._displayedHeatmapState:
            return
        self._displayedHeatmapState = state
        for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
            showsHeatmap = composite.GetForegroundVolumeID() == heatmap.GetID()
            if show:
                if not showsHeatmap:
                    composite.SetBackgroundVolumeID(image.GetID())
                composite.SetForegroundVolumeID(heatmap.GetID())
                composite.SetForegroundOpacity(parameterNode.heatmapOpacity)
            elif showsHeatmap:
                composite.SetForegroundVolumeID(None)

    def _resultInputs(self) -> tuple:
        parameterNode = self._parameterNode
        volume, segmentation = parameterNode.inputVolume, parameterNode.segmentationNode
        return (
            volume.GetID() if volume else None,
            segmentation.GetID() if segmentation else None,
            parameterNode.segmentId,
        )

    def _clearStaleResults(self) -> None:
        """Blank the results panel when the image or the lesion changed since they were computed."""
        if self._shownResultInputs is None or self._shownResultInputs == self._resultInputs():
            return
        self._shownResultInputs = None
        ui = self.ui
        for label in (
            ui.probabilityValueLabel,
            ui.predictedLabelValueLabel,
            ui.cutoffValueLabel,
            ui.modelUsedValueLabel,
            ui.stabilityValueLabel,
        ):
            label.text = "-"
        self.ui.resultsTable.setRowCount(0)
        self.ui.warningsLabel.text = _("The image or the lesion changed: press Apply for a new prediction.")


#
# DLRPredictorLogic
#


class DLRPredictorLogic(ScriptedLoadableModuleLogic):
    """Thin facade over ``DLRPredictorLib.api`` for the widget, the console and batch scripts.

    Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("DLRPredictor")
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volumeNode
        parameterNode.segmentationNode = segmentationNode
        result = logic.predict(parameterNode)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> DLRPredictorParameterNode:
        """The module's parameter node (created in the scene when absent)."""
        return DLRPredictorParameterNode(super().getParameterNode())

    def loadPredictor(self, bundlePath: str = "") -> Any:
        """The verified predictor of a bundle folder ("" = the bundled model).

        Raises:
            BundleError: the bundle is missing, damaged or incompatible.
        """
        from DLRPredictorLib import api

        return api.load_predictor(bundlePath or None)

    def predict(self, parameterNode: DLRPredictorParameterNode, progress: Any = None) -> Any:
        """Predict the lesion of the parameter node's inputs and keep the output nodes in it.

        Args:
            parameterNode: inputs, clinical values, options and (optional) output nodes.
            progress: callback(fraction, message), or None.

        Returns:
            The api's PredictionResult.

        Raises:
            InputError: unusable image, lesion or clinical values; BundleError: bad bundle.
        """
        from DLRPredictorLib import api

        predictor = self.loadPredictor(parameterNode.bundlePath)
        clinical = (
            clinicalValues(parameterNode, predictor.clinical_variables) if parameterNode.useClinical else {}
        )
        result = api.predict_nodes(
            parameterNode.inputVolume,
            segmentation_node=parameterNode.segmentationNode,
            segment_id=parameterNode.segmentId or None,
            clinical=clinical or None,
            bundle_path=parameterNode.bundlePath or None,
            stability=parameterNode.stability,
            heatmap_opacity=parameterNode.heatmapOpacity,
            features_table_node=parameterNode.featuresTable,
            prediction_table_node=parameterNode.predictionTable,
            heatmap_node=parameterNode.heatmapVolume,
            progress=progress,
        )
        scene = parameterNode.parameterNode.GetScene()
        with slicer.util.NodeModify(parameterNode):
            parameterNode.featuresTable = _nodeById(scene, result.features_table_node_id)
            parameterNode.predictionTable = _nodeById(scene, result.prediction_table_node_id)
            parameterNode.heatmapVolume = _nodeById(scene, result.heatmap_node_id)
        if parameterNode.heatmapVolume is not None:
            parameterNode.heatmapVolume.SetAttribute(
                HEATMAP_IMAGE_ATTRIBUTE, parameterNode.inputVolume.GetID()
            )
        return result


def _nodeById(scene: Any, nodeId: str | None) -> Any:
    return scene.GetNodeByID(nodeId) if nodeId else None


#
# DLRPredictorTest
#


class DLRPredictorTest(ScriptedLoadableModuleTest):
    """Self-test on the embedded synthetic phantom (no download, no real patient data)."""

    # Columns of the features table, as the SlicerRadiomics module writes them.
    SLICER_RADIOMICS_COLUMNS = ("Label", "Input image type", "Feature Class", "Feature Name", "Value")

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run all tests of this module."""
        self.setUp()
        self.test_DLRPredictorPhantom()
        self.setUp()
        self.test_DLRPredictorEmptyLesion()

    def _skipWithoutEngines(self) -> bool:
        missing = [name for name in ("torch", "radiomics") if importlib.util.find_spec(name) is None]
        if missing:
            self.delayDisplay(
                f"Skipping the prediction part: {', '.join(missing)} not installed "
                "(install the PyTorch and SlicerRadiomics extensions to run it)."
            )
        return bool(missing)

    def test_DLRPredictorPhantom(self) -> None:
        """Predict the phantom and check the probability, the features table and the heatmap."""
        import numpy as np

        self.delayDisplay("Loading the synthetic phantom")
        volume, segmentation = loadPhantomSample()
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
        if self._skipWithoutEngines():
            return

        logic = DLRPredictorLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volume
        parameterNode.segmentationNode = segmentation
        parameterNode.segmentId = segmentId
        parameterNode.useClinical = False
        result = logic.predict(parameterNode)

        self.assertGreaterEqual(result.probability, 0.0)
        self.assertLessEqual(result.probability, 1.0)

        features = parameterNode.featuresTable
        self.assertIsNotNone(features)
        self.assertGreater(features.GetNumberOfRows(), 0)
        columns = {features.GetColumnName(i) for i in range(features.GetNumberOfColumns())}
        self.assertTrue(set(self.SLICER_RADIOMICS_COLUMNS) <= columns, f"columns: {sorted(columns)}")

        heatmap = parameterNode.heatmapVolume
        self.assertIsNotNone(heatmap)
        self.assertEqual(heatmap.GetImageData().GetDimensions(), volume.GetImageData().GetDimensions())
        for actual, expected in zip(
            heatmap.GetSpacing() + heatmap.GetOrigin(), volume.GetSpacing() + volume.GetOrigin(), strict=True
        ):
            self.assertAlmostEqual(actual, expected, places=5)

        # The hottest heatmap voxel lies inside the lesion's bounding box.
        heat = slicer.util.arrayFromVolume(heatmap)
        lesion = np.argwhere(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0)
        hottest = np.unravel_index(int(np.argmax(heat)), heat.shape)
        self.assertTrue(
            np.all(lesion.min(axis=0) <= hottest) and np.all(np.array(hottest) <= lesion.max(axis=0)),
            f"hottest voxel {hottest} outside the lesion box {lesion.min(axis=0)}-{lesion.max(axis=0)}",
        )
        self.delayDisplay("Test passed")

    def test_DLRPredictorEmptyLesion(self) -> None:
        """An empty lesion segment is refused with a typed error and leaves the scene as it was."""
        from DLRPredictorLib.errors import InputError

        volume, _segmentation = loadPhantomSample()
        empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "EmptyLesion")
        empty.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = empty.GetSegmentation().AddEmptySegment("Lesion")
        if self._skipWithoutEngines():
            return
        logic = DLRPredictorLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volume
        parameterNode.segmentationNode = empty
        parameterNode.segmentId = segmentId
        parameterNode.useClinical = False
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            logic.predict(parameterNode)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.assertIsNone(parameterNode.heatmapVolume)
        self.delayDisplay("Test passed")
