"""DLR Predictor: deep-learning radiomics of breast ultrasound lesions in 3D Slicer.

This file is the thin Qt/Slicer layer of the extension: the module description, the parameter node,
the widget (inputs, lesion drawing, clinical form, model choice, results, heatmap display), a logic
facade over ``DLRPredictorLib`` and the Slicer self-test. Every decision that needs no Qt lives in
``DLRPredictorLib.module_support`` (imported here: it loads only the standard library) and the
computation in the rest of DLRPredictorLib, imported inside functions so that the module loads fast
and without torch or pyradiomics.

Runs in Slicer 5.4 and later, so in Python 3.9: annotations evaluated when a function is defined use
``Optional``/``Union``, not ``X | Y`` (test_py39_compat.py checks).
"""

import importlib
import logging
import os
import sys
from typing import Annotated, Any, Optional, Union

import qt
import slicer
import vtk
from DLRPredictorLib.module_support import (
    BUNDLE_UNUSABLE,
    CLINICAL_MISSING,
    DEFAULT_HEATMAP_KIND,
    HEATMAP_KINDS,
    NO_BUNDLE_FOLDER,
    NO_IMAGE,
    NO_SEGMENT,
    NO_SEGMENTATION,
    NOT_GIVEN_NUMBER,
    NOT_READY,
    RADIOMICS_EXTENSION,
    SAMPLE_NAME,
    InputProblem,
    ensure_dependencies,
    first_image_node,
    get_clinical_value,
    heatmap_display_state,
    importable,
    input_problems,
    phantom_sample_files,
    phantom_sample_source,
    predict_parameter_node,
    result_inputs,
    set_clinical_value,
    update_heatmap_display,
)
from slicer import (
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLVectorVolumeNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
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

SEGMENT_EDITOR_SINGLETON_TAG = "DLRPredictor"


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


def loadPhantomSample(source: Any = None) -> tuple[Any, Any]:
    """Load the phantom image and its lesion as a one-segment segmentation.

    Args:
        source: the SampleDataSource when called by the Sample Data module (unused).

    Returns:
        (volume node, segmentation node).
    """
    image, mask = phantom_sample_files()
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
    from DLRPredictorLib.base.errors import DLRError

    thumbnail = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "DLRPredictor.png")
    try:
        import SampleData  # absent when the Sample Data module is disabled

        source = phantom_sample_source(thumbnail)
    except (DLRError, OSError, ImportError, KeyError) as error:
        # Not fatal: the module works without the sample; say why it is absent.
        logging.warning(f"DLR Predictor: the synthetic phantom sample could not be prepared: {error}")
        return
    # The button loads the lesion through a labelmap: one segment, in the image's geometry.
    SampleData.SampleDataLogic.registerCustomSampleDataSource(**source, customDownloader=loadPhantomSample)


#
# Python dependencies (asked for when Apply is pressed, never installed silently or at import)
#


class DependencyDialogs:
    """The dialogs and pip call of ``module_support.ensure_dependencies``, which decides when."""

    def __init__(self) -> None:
        self.requester = _("DLR Predictor")

    def confirm_packages(self, missing: list[str]) -> bool:
        """Ask before pip installs the missing requirements (Slicer without pip_ensure)."""
        return slicer.util.confirmOkCancelDisplay(
            _(
                "DLR Predictor needs these Python packages: {packages}.\n\n"
                "Install them now? This needs a network connection and may take a few minutes."
            ).format(packages=", ".join(missing)),
            windowTitle=_("Install Python packages"),
        )

    def install_packages(self, missing: list[str]) -> None:
        """Install the requirements with Slicer's pip."""
        slicer.util.pip_install(missing)

    def confirm_torch(self) -> bool:
        """Ask before the PyTorch extension downloads torch."""
        return slicer.util.confirmOkCancelDisplay(
            _(
                "Training a network needs PyTorch, which is not installed yet. The PyTorch extension can "
                "download and install it now (a large download that may take several minutes).\n\n"
                "Install PyTorch now?"
            ),
            windowTitle=_("Install PyTorch"),
        )

    def extension_missing(self, extension: str) -> None:
        """Say which extension to install."""
        if extension == RADIOMICS_EXTENSION:
            slicer.util.errorDisplay(
                _(
                    "pyradiomics is not available. Install the SlicerRadiomics extension with the "
                    "Extensions Manager, restart 3D Slicer and press Apply again."
                )
            )
        else:  # PYTORCH_EXTENSION
            slicer.util.errorDisplay(
                _(
                    "PyTorch is not installed. Install the PyTorch extension with the Extensions Manager "
                    "and restart 3D Slicer to train networks (predictions do not need it)."
                )
            )


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
    age - patient age in years (0 = not given), for bundles that declare age (the bundled model does not).
    birads - BI-RADS category ("" = not given).
    useClinical - use the clinical values (otherwise the image-only model).
    stability - also predict on slightly eroded / dilated contours.
    heatmapKind - the score the heatmap explains: "dl-signature" (the DL signature) or "cnn-head".
    heatmapOpacity - opacity of the Grad-CAM overlay.
    showHeatmap - show the Grad-CAM overlay in the slice views.
    featuresTable, predictionTable, heatmapVolume - output nodes (created when empty).
    """

    # typing.Union, not "|": the wrapper recognizes node unions by typing.Union (and Python 3.9 has
    # no "|"), and None must be a member so that the selector can be cleared. Listing both types
    # keeps RGB images selectable.
    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode, None]
    segmentationNode: vtkMRMLSegmentationNode
    segmentId: str = ""
    bundlePath: str = ""
    age: float = NOT_GIVEN_NUMBER
    birads: str = ""
    useClinical: bool = True
    stability: bool = False
    heatmapKind: Annotated[str, Choice(list(HEATMAP_KINDS))] = DEFAULT_HEATMAP_KIND
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showHeatmap: bool = True
    featuresTable: vtkMRMLTableNode
    predictionTable: vtkMRMLTableNode
    heatmapVolume: vtkMRMLScalarVolumeNode


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
            value = get_clinical_value(parameterNode, variable)
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


class MultiInputForm:
    """One image + segmentation row per further input of a multi-input bundle (the first input is
    the panel's own image and segmentation); the pairs live in the parameter node
    (``DLRPredictorLib.multi_input_module``). Built at run time from the verified bundle."""

    def __init__(self, layout: Any, onEdited: Any, onEditSegments: Any) -> None:
        """Args:
        layout: the QFormLayout to fill.
        onEdited: callback(name, volume node, segmentation node) after a selector changed.
        onEditSegments: callback(name): show that input in the Segment Editor.
        """
        self._layout = layout
        self._onEdited = onEdited
        self._onEditSegments = onEditSegments
        self._selectors: dict[str, tuple[Any, Any]] = {}

    def rebuild(self, predictor: Any) -> None:
        """Rows for the inputs of a multi-input predictor after its first (none otherwise)."""
        while self._layout.rowCount() > 0:
            self._layout.removeRow(0)
        self._selectors = {}
        names = list(getattr(predictor, "input_names", []))
        if not names:
            return
        hint = qt.QLabel(
            _("Input {name}: the image and segmentation above. Inputs: {inputs}.").format(
                name=names[0], inputs=predictor.describe_inputs()
            )
        )
        hint.wordWrap = True
        self._layout.addRow(hint)
        for name in names[1:]:
            volume = self._selector(["vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"], False)
            volume.toolTip = _("The image of input {name}.").format(name=name)
            segmentation = self._selector(["vtkMRMLSegmentationNode"], True)
            segmentation.toolTip = _("The segmentation holding the lesion of input {name}.").format(name=name)
            edit = qt.QPushButton(_("Edit"))
            edit.toolTip = _("Show input {name} in the Segment Editor.").format(name=name)
            edit.connect("clicked(bool)", lambda checked, n=name: self._onEditSegments(n))
            for selector in (volume, segmentation):
                selector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node, n=name: self._edited(n))
            row = qt.QWidget()
            rowLayout = qt.QHBoxLayout(row)
            rowLayout.setContentsMargins(0, 0, 0, 0)
            for widget in (volume, segmentation, edit):
                rowLayout.addWidget(widget)
            self._layout.addRow(qt.QLabel(_("Input {name}:").format(name=name)), row)
            self._selectors[name] = (volume, segmentation)

    @staticmethod
    def _selector(nodeTypes: list[str], addEnabled: bool) -> Any:
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = nodeTypes
        selector.showChildNodeTypes = False
        selector.noneEnabled = True
        selector.addEnabled = addEnabled
        selector.removeEnabled = False
        selector.setMRMLScene(slicer.mrmlScene)
        return selector

    def sync(self, parameterNode: DLRPredictorParameterNode) -> None:
        """Show the parameter node's pairs."""
        from DLRPredictorLib import multi_input_module

        for name, (volume, segmentation) in self._selectors.items():
            node, seg, _segment = multi_input_module.input_pair(parameterNode, name, False)
            for selector, value in ((volume, node), (segmentation, seg)):
                if selector.currentNode() != value:
                    wasBlocked = selector.blockSignals(True)
                    selector.setCurrentNode(value)
                    selector.blockSignals(wasBlocked)

    def _edited(self, name: str) -> None:
        volume, segmentation = self._selectors[name]
        self._onEdited(name, volume.currentNode(), segmentation.currentNode())


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
        self._multiInputForm: MultiInputForm | None = None
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
        # A multi-input bundle's further image + segmentation pairs, above the Segment Editor.
        multiInputWidget = qt.QWidget()
        self.ui.inputsCollapsibleButton.layout().insertRow(3, multiInputWidget)
        self._multiInputForm = MultiInputForm(
            qt.QFormLayout(multiInputWidget), self._onMultiInputEdited, self._editInputSegments
        )

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
        return first_image_node(slicer.mrmlScene, exclude=heatmap)

    def setParameterNode(self, inputParameterNode: Optional[DLRPredictorParameterNode]) -> None:
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
        self._multiInputForm.sync(parameterNode)
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
        from DLRPredictorLib.base.errors import DLRError

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
                self._showBundleStatus(predictor)
        self._multiInputForm.rebuild(self._predictor)
        self._multiInputForm.sync(self._parameterNode)
        self._clinicalForm.rebuild(self._predictor)
        self._clinicalForm.sync(self._parameterNode)
        self._checkCanApply()

    def _showBundleStatus(self, predictor: Any) -> None:
        """The status line of a verified bundle (one-input or multi-input)."""
        if hasattr(predictor, "input_names"):
            self.ui.bundleStatusLabel.text = _(
                "Verified multi-input bundle: {title} ({bundleId}, digest {digest}; {trust}). Inputs: "
                "{inputs}. Predicts '{positiveClass}'."
            ).format(
                title=predictor.title,
                bundleId=predictor.bundle_id,
                digest=predictor.bundle_digest[:16],
                trust=predictor.bundle_trust,
                inputs=predictor.describe_inputs(),
                positiveClass=predictor.positive_class,
            )
        else:
            self.ui.bundleStatusLabel.text = _(
                "Verified: {title} ({bundleId}, digest {digest}; {trust}). Predicts "
                "'{positiveClass}'; cut-off {cutoff:.3f}."
            ).format(
                title=predictor.title,
                bundleId=predictor.bundle_id,
                digest=predictor.bundle_digest[:16],
                trust=predictor.bundle_trust,
                positiveClass=predictor.positive_class,
                cutoff=predictor.cutoff,
            )
        # The full digest, for comparing with the one the bundle's publisher gives.
        self.ui.bundleStatusLabel.toolTip = _("Bundle content digest (sha256): {digest}").format(
            digest=predictor.bundle_digest
        )
        self.ui.probabilityTitleLabel.text = _("Probability ({positiveClass}):").format(
            positiveClass=predictor.positive_class
        )

    def _onMultiInputEdited(self, name: str, volume: Any, segmentation: Any) -> None:
        from DLRPredictorLib import multi_input_module

        if self._parameterNode is not None:
            multi_input_module.set_input_pair(self._parameterNode, name, volume, segmentation, first=False)
            self._checkCanApply()

    def _editInputSegments(self, name: str) -> None:
        """Point the Segment Editor at one further input's image and segmentation."""
        from DLRPredictorLib import multi_input_module

        if self._parameterNode is None:
            return
        volume, segmentation, _segment = multi_input_module.input_pair(self._parameterNode, name, False)
        self.ui.segmentEditorWidget.setSegmentationNode(segmentation)
        self.ui.segmentEditorWidget.setSourceVolumeNode(volume)

    def _onClinicalEdited(self, variable: Any, value: Union[float, str, None]) -> None:
        if self._parameterNode is not None:
            set_clinical_value(self._parameterNode, variable, value)
            self._checkCanApply()

    # -- apply --------------------------------------------------------------------------------

    def _inputProblems(self) -> list[str]:
        """What is missing before Apply can run, in words the user can act on."""
        predictor = self._predictor
        if hasattr(predictor, "input_names"):  # a multi-input bundle: one pair per input
            from DLRPredictorLib import multi_input_module

            return multi_input_module.multi_input_problems(
                self._parameterNode, predictor.input_names, predictor.bundle.required_inputs
            )
        problems = input_problems(
            self._parameterNode,
            bundle_folder_chosen=self.ui.bundleChoiceComboBox.currentIndex == 1,
            bundle_problem=self._bundleProblem,
            clinical_variables=self._predictor.clinical_variables if self._predictor is not None else None,
        )
        return [inputProblemText(problem) for problem in problems]

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
                if not ensure_dependencies(self.resourcePath("requirements.txt"), DependencyDialogs()):
                    return
                if self._predictor is None:
                    # Packages may just have been installed: verify the bundle now.
                    self._refreshBundle()
                    if self._predictor is None:
                        raise ValueError(self._bundleProblem or self.ui.bundleStatusLabel.text)
                result = self.logic.predict(self._parameterNode, progress=self._onProgress)
                self._showResult(result)
                self._shownResultInputs = result_inputs(self._parameterNode)
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
        stability = getattr(result, "stability", None)  # a multi-input result has none
        if stability is not None:
            probabilities = list(stability.probabilities)
            self.ui.stabilityValueLabel.text = _(
                "probabilities {low:.3f} to {high:.3f} (spread {spread:.3f}); label changes: {changes}"
            ).format(
                low=min(probabilities),
                high=max(probabilities),
                spread=stability.spread,
                changes=_("yes") if stability.label_changes else _("no"),
            )
        else:
            self.ui.stabilityValueLabel.text = _("not checked")
        rows = [
            (_("Score {name}").format(name=name), value) for name, value in result.signature_scores.items()
        ]
        rows += [
            (_("Nomogram points {name}").format(name=n), value)
            for n, value in getattr(result, "nomogram_points", {}).items()
        ]
        if getattr(result, "total_points", None) is not None:
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
        state = heatmap_display_state(self._parameterNode)
        if state is None or state == self._displayedHeatmapState:
            return
        self._displayedHeatmapState = state
        update_heatmap_display(slicer.mrmlScene, state)

    def _clearStaleResults(self) -> None:
        """Blank the results panel when the image or the lesion changed since they were computed."""
        if self._shownResultInputs is None or self._shownResultInputs == result_inputs(self._parameterNode):
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


def inputProblemText(problem: InputProblem) -> str:
    """The user's words for one reason Apply cannot run (see module_support.input_problems)."""
    texts = {
        NOT_READY: _("The module is not ready yet."),
        NO_IMAGE: _("Choose the ultrasound image."),
        NO_SEGMENTATION: _("Choose or create the segmentation that outlines the lesion."),
        NO_SEGMENT: _("Draw the lesion with the Segment Editor above and choose it as the lesion segment."),
        NO_BUNDLE_FOLDER: _("Choose the model bundle folder, or select 'Bundled model'."),
        BUNDLE_UNUSABLE: _("The model cannot be used: {reason}").format(reason=problem.detail),
        CLINICAL_MISSING: _("Enter {name}, or uncheck 'Use clinical data' for the image-only model.").format(
            name=problem.detail
        ),
    }
    return texts[problem.code]


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
        from DLRPredictorLib.bundle.multi_input import is_multi_input_bundle

        if is_multi_input_bundle(bundlePath or None):
            from DLRPredictorLib.inference.multi_input_predictor import load_multi_input_predictor

            return load_multi_input_predictor(bundlePath)
        return api.load_predictor(bundlePath or None)

    def predict(self, parameterNode: DLRPredictorParameterNode, progress: Any = None) -> Any:
        """Predict the parameter node's lesion and keep the output nodes in it.

        See ``DLRPredictorLib.module_support.predict_parameter_node`` (arguments, result, errors);
        with a multi-input bundle ``multi_input_module.predict_multi_input_parameter_node``.
        """
        from DLRPredictorLib import multi_input_module
        from DLRPredictorLib.bundle.multi_input import is_multi_input_bundle

        if is_multi_input_bundle(parameterNode.bundlePath or None):
            return multi_input_module.predict_multi_input_parameter_node(parameterNode, progress)
        return predict_parameter_node(parameterNode, progress)


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
        missing = [name for name in ("radiomics",) if not importable(name)]
        if missing:
            self.delayDisplay(
                f"Skipping the prediction part: {', '.join(missing)} not installed "
                "(install the SlicerRadiomics extension to run it)."
            )
        return bool(missing)

    def test_DLRPredictorPhantom(self) -> None:
        """Predict the phantom and check the probability, the features table and the heatmap."""
        import numpy as np
        from DLRPredictorLib.base.compat import zip_strict

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
        for actual, expected in zip_strict(
            heatmap.GetSpacing() + heatmap.GetOrigin(), volume.GetSpacing() + volume.GetOrigin()
        ):
            self.assertAlmostEqual(actual, expected, places=5)

        # The heatmap is not flat and its hottest voxel lies in the lesion's crop: the lesion box
        # grown by one lesion size bounds the crop (the DL-signature map of this phantom peaks in
        # the cell over the lesion's left margin, just outside the lesion box).
        heat = slicer.util.arrayFromVolume(heatmap)
        self.assertGreater(float(heat.max()), 0.0)
        lesion = np.argwhere(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0)
        low, high = lesion.min(axis=0), lesion.max(axis=0)
        size = int((high - low + 1).max())
        hottest = np.unravel_index(int(np.argmax(heat)), heat.shape)
        self.assertTrue(
            np.all(low - size <= hottest) and np.all(np.array(hottest) <= high + size),
            f"hottest voxel {hottest} outside the lesion's crop around {low}-{high}",
        )
        self.delayDisplay("Test passed")

    def test_DLRPredictorEmptyLesion(self) -> None:
        """An empty lesion segment is refused with a typed error and leaves the scene as it was."""
        from DLRPredictorLib.base.errors import InputError

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
