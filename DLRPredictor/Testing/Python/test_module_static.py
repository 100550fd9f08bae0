"""Static checks of the Slicer module's GUI files, without Qt or Slicer.

The .ui file is parsed with xml.etree and DLRPredictor.py with ast. The checks catch, before anyone
opens Slicer, the mistakes that would otherwise surface only there: a widget class Designer cannot
create, a ``SlicerParameterName`` that names no parameter or whose widget the parameterNodeWrapper
cannot bind to the parameter's type (Slicer raises "Unable to create GUI connector" and the module
fails to open), a parameter without a widget, a ``self.ui.<name>`` that the .ui lacks, ``import imp``
(gone in Python 3.12), and user-visible text that bypasses translation.
"""

from __future__ import annotations

import ast
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2]
MODULE_PATH = MODULE_DIR / "DLRPredictor.py"
UI_PATH = MODULE_DIR / "Resources" / "UI" / "DLRPredictor.ui"
ICON_PATH = MODULE_DIR / "Resources" / "Icons" / "DLRPredictor.png"
PARAMETER_CLASS = "DLRPredictorParameterNode"
SLICER_PARAMETER_NAME = "SlicerParameterName"

# Parameters deliberately bound to no .ui widget, and why. A parameter missing from both the .ui
# and this list fails test_every_parameter_has_a_widget_or_a_reason.
UNBOUND_PARAMETERS = {
    "segmentId": "chosen with qMRMLSegmentSelectorWidget, for which parameterNodeWrapper has no connector",
    "bundlePath": "ctkPathLineEdit binds to pathlib.Path only, and '' must mean 'the bundled model'",
    "age": "edited in the clinical form that is built at run time from the bundle's variables",
    "birads": "edited in the clinical form that is built at run time from the bundle's variables",
}

# What Slicer's parameterNodeWrapper connectors accept (Base/Python/slicer/parameterNodeWrapper/
# guiConnectors.py): widget class (matched exactly, not by inheritance) -> parameter base types.
CONNECTOR_TYPES = {
    "QCheckBox": {"bool"},
    "QPushButton": {"bool"},
    "QSpinBox": {"int"},
    "QSlider": {"int"},
    "QDoubleSpinBox": {"float"},
    "ctkSliderWidget": {"float"},
    "QComboBox": {"int", "float", "str", "bool", "enum"},
    "QLineEdit": {"str"},
    "QTextEdit": {"str"},
    "ctkPathLineEdit": {"Path"},
    "ctkDirectoryButton": {"Path"},
    "ctkRangeWidget": {"FloatRange"},
    "qMRMLNodeComboBox": {"node"},
    "qMRMLSubjectHierarchyTreeView": {"node"},
    "qSlicerSimpleMarkupsWidget": {"node"},
}
# Sliders need a bounded range; a combo box bound to a plain value needs a Choice annotation.
NEEDS_BOUNDS = {"ctkSliderWidget", "QSlider"}
PATH_TYPES = {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}

# User-visible text: setter methods, attributes, constructors and dialogs whose string argument
# must go through _() (or translate()).
TEXT_SETTERS = {
    "setText",
    "setToolTip",
    "setWindowTitle",
    "setPlaceholderText",
    "setStatusTip",
    "setFormat",
    "setTitle",
    "setLabelText",
    "addItem",
    "setSpecialValueText",
}
TEXT_ATTRIBUTES = {
    "text",
    "toolTip",
    "windowTitle",
    "placeholderText",
    "statusTip",
    "helpText",
    "acknowledgementText",
    "title",
    "labelText",
    "specialValueText",
}
TEXT_CONSTRUCTORS = {"QLabel", "QPushButton", "QCheckBox", "QGroupBox", "QRadioButton", "QTableWidgetItem"}
DIALOGS = {
    "errorDisplay",
    "warningDisplay",
    "infoDisplay",
    "messageBox",
    "confirmOkCancelDisplay",
    "confirmYesNoDisplay",
    "tryWithErrorDisplay",
}
TRANSLATORS = {"_", "tr", "translate"}


# ---------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------


@cache
def ui_root() -> ET.Element:
    return ET.parse(UI_PATH).getroot()


@cache
def module_tree() -> ast.Module:
    return ast.parse(MODULE_PATH.read_text(encoding="utf-8"), filename=str(MODULE_PATH))


def ui_widgets() -> list[ET.Element]:
    return list(ui_root().iter("widget"))


def ui_property(widget: ET.Element, name: str) -> ET.Element | None:
    """The direct <property name=...> child of a widget (not of its children)."""
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def ui_string_list(widget: ET.Element, name: str) -> list[str]:
    prop = ui_property(widget, name)
    if prop is None:
        return []
    return [s.text or "" for s in prop.iter("string")]


def ui_bool(widget: ET.Element, name: str, default: bool) -> bool:
    prop = ui_property(widget, name)
    if prop is None or prop.find("bool") is None:
        return default
    return (prop.find("bool").text or "").strip() == "true"


def bound_widgets() -> dict[str, ET.Element]:
    """Parameter name -> the widget whose SlicerParameterName names it."""
    bound: dict[str, ET.Element] = {}
    for widget in ui_widgets():
        prop = ui_property(widget, SLICER_PARAMETER_NAME)
        if prop is not None:
            name = (prop.findtext("string") or "").strip()
            assert name not in bound, f"parameter {name!r} is bound to two widgets"
            bound[name] = widget
    return bound


def ui_object_names() -> list[str]:
    root = ui_root()
    return [e.get("name") for e in [*root.iter("widget"), *root.iter("layout")] if e.get("name")]


@dataclass
class ParamType:
    """What a parameterNodeWrapper annotation means for GUI binding."""

    base: str  # bool, int, float, str, Path, node, enum, FloatRange, or the unknown name
    annotations: set[str] = field(default_factory=set)  # WithinRange, Minimum, Maximum, Choice, ...
    node_types: set[str] = field(default_factory=set)
    allows_none: bool = False


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return ast.unparse(node)


def _subscript_items(node: ast.Subscript) -> list[ast.AST]:
    return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]


def param_type(annotation: ast.AST, enums: set[str] = frozenset()) -> ParamType:
    """Interpret a parameter annotation the way the wrapper's connectors see it."""
    if isinstance(annotation, ast.Subscript):
        outer = _name(annotation.value)
        items = _subscript_items(annotation)
        if outer == "Annotated":
            inner = param_type(items[0], enums)
            for extra in items[1:]:
                inner.annotations.add(_name(extra.func) if isinstance(extra, ast.Call) else _name(extra))
            return inner
        if outer in ("Union", "Optional"):
            members = [_name(i) for i in items] + (["None"] if outer == "Optional" else [])
            nodes = {m for m in members if m.startswith("vtkMRML")}
            if nodes and all(m.startswith("vtkMRML") or m == "None" for m in members):
                return ParamType("node", node_types=nodes, allows_none="None" in members)
            return ParamType(f"Union[{', '.join(members)}]")
        return ParamType(ast.unparse(annotation))
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        # "A | B" is types.UnionType, which the wrapper does not recognize as a node union.
        return ParamType(f"PEP 604 union {ast.unparse(annotation)}")
    name = _name(annotation)
    if name.startswith("vtkMRML"):
        # A single node type: the wrapper's node serializer accepts None.
        return ParamType("node", node_types={name}, allows_none=True)
    if name in PATH_TYPES:
        return ParamType("Path")
    if name in enums:
        return ParamType("enum")
    return ParamType(name)


@cache
def module_enums() -> frozenset[str]:
    return frozenset(
        node.name
        for node in module_tree().body
        if isinstance(node, ast.ClassDef)
        and any(_name(b) in ("Enum", "IntEnum", "StrEnum") for b in node.bases)
    )


@cache
def parameter_annotations() -> dict[str, ast.AST]:
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == PARAMETER_CLASS:
            decorators = {_name(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list}
            assert "parameterNodeWrapper" in decorators, f"{PARAMETER_CLASS} is not a @parameterNodeWrapper"
            return {
                stmt.target.id: stmt.annotation
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            }
    raise AssertionError(f"class {PARAMETER_CLASS} not found in {MODULE_PATH.name}")


def binding_problems(widget_class: str, ptype: ParamType) -> list[str]:
    """Why the wrapper could not bind this widget class to this parameter type ([] = it can)."""
    accepted = CONNECTOR_TYPES.get(widget_class)
    if accepted is None:
        return [f"no parameterNodeWrapper connector exists for {widget_class}"]
    if ptype.base not in accepted:
        return [f"{widget_class} binds to {sorted(accepted)}, not to {ptype.base}"]
    problems = []
    if widget_class in NEEDS_BOUNDS and not (
        "WithinRange" in ptype.annotations or {"Minimum", "Maximum"} <= ptype.annotations
    ):
        problems.append(f"{widget_class} needs a bounded value: annotate with WithinRange(min, max)")
    if widget_class == "QComboBox" and ptype.base != "enum" and "Choice" not in ptype.annotations:
        problems.append("QComboBox bound to a plain value needs a Choice([...]) annotation")
    if ptype.base == "node" and not ptype.allows_none:
        problems.append("a union of node types must include None, or clearing the selector fails")
    return problems


def untranslated_literals(expr: ast.AST) -> list[str]:
    """String literals with letters in expr that are not inside _()/translate()."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call) and _name(node.func) in TRANSLATORS:
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"[A-Za-z]", node.value):
                found.append(node.value)
            return
        if isinstance(node, ast.FormattedValue):
            visit(node.value)  # the format spec (".3f") is not text
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(expr)
    return found


def translation_problems(tree: ast.AST) -> list[str]:
    """User-visible literals that bypass _(), as 'line N: text' strings."""
    problems = []

    def report(node: ast.AST, expr: ast.AST) -> None:
        problems.extend(f"line {node.lineno}: {text!r}" for text in untranslated_literals(expr))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = _name(node.func)
            if callee in TEXT_SETTERS | TEXT_CONSTRUCTORS | DIALOGS and node.args:
                report(node, node.args[0])
            for keyword in node.keywords:
                if keyword.arg in ("windowTitle", "text", "toolTip", "labelText"):
                    report(node, keyword.value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in TEXT_ATTRIBUTES:
                    report(node, node.value)
    return problems


# ---------------------------------------------------------------------------------------------
# The .ui file
# ---------------------------------------------------------------------------------------------


def test_ui_is_a_designer_file_with_a_qmrmlwidget_root():
    root = ui_root()
    assert root.tag == "ui"
    assert root.get("version") == "4.0"
    top = root.find("widget")
    assert top is not None, "no top-level <widget>"
    assert top.get("class") == "qMRMLWidget", "the top widget must be a qMRMLWidget (scene propagation)"
    assert root.findtext("class") == top.get("name")


@pytest.mark.parametrize(
    ("widget_class", "ok"),
    [("QLabel", True), ("ctkSliderWidget", True), ("qMRMLNodeComboBox", True), ("qSlicerWidget", True),
     ("MyCustomWidget", False), ("qtWidget", False), ("Qlabel", False)],
)  # fmt: skip
def test_widget_class_rule(widget_class, ok):
    assert bool(WIDGET_CLASS_RULE.match(widget_class)) is ok


WIDGET_CLASS_RULE = re.compile(r"^(Q[A-Z]\w*|ctk[A-Z]\w*|qMRML[A-Z]\w*|qSlicer[A-Z]\w*)$")


def test_every_widget_class_is_qt_ctk_or_slicer():
    bad = sorted({w.get("class") for w in ui_widgets() if not WIDGET_CLASS_RULE.match(w.get("class") or "")})
    assert not bad, f"widget classes that are not Qt, CTK or Slicer classes: {bad}"


def test_every_custom_widget_is_declared():
    declared = {}
    for custom in ui_root().iter("customwidget"):
        name = custom.findtext("class")
        assert custom.findtext("extends"), f"customwidget {name} has no <extends>"
        assert custom.findtext("header"), f"customwidget {name} has no <header>"
        declared[name] = custom
    used = {w.get("class") for w in ui_widgets() if not re.match(r"^Q[A-Z]", w.get("class") or "")}
    missing = used - set(declared)
    assert not missing, f"classes used in the .ui but not declared in <customwidgets>: {sorted(missing)}"
    unused = set(declared) - used
    assert not unused, f"<customwidgets> declares classes the .ui does not use: {sorted(unused)}"


def test_object_names_are_unique():
    names = ui_object_names()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"objectName used twice (childWidgetVariables keeps only one): {duplicates}"


def test_mrml_widgets_get_the_scene():
    """Every qMRML widget receives the scene, from the .ui connections or explicitly in setup()."""
    connected = {
        c.findtext("receiver")
        for c in ui_root().iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    source = MODULE_PATH.read_text(encoding="utf-8")
    explicit = set(re.findall(r"self\.ui\.(\w+)\.setMRMLScene\(", source))
    top = ui_root().find("widget").get("name")
    mrml = {w.get("name") for w in ui_widgets() if (w.get("class") or "").startswith("qMRML")} - {top}
    missing = mrml - connected - explicit
    assert not missing, f"qMRML widgets that never get the MRML scene: {sorted(missing)}"


def test_input_volume_selector_offers_rgb_images():
    widget = bound_widgets()["inputVolume"]
    node_types = set(ui_string_list(widget, "nodeTypes"))
    assert "vtkMRMLVectorVolumeNode" in node_types, "color (RGB) ultrasound images would be hidden"
    assert "vtkMRMLScalarVolumeNode" in node_types


def test_output_selectors_can_create_and_rename_nodes():
    for parameter in ("featuresTable", "predictionTable", "heatmapVolume"):
        widget = bound_widgets()[parameter]
        assert widget.get("class") == "qMRMLNodeComboBox"
        assert ui_bool(widget, "addEnabled", True), f"{parameter}: addEnabled is off"
        assert ui_bool(widget, "renameEnabled", False), f"{parameter}: renameEnabled is off"
        assert ui_bool(widget, "noneEnabled", False), f"{parameter}: 'none' (create new) is not offered"


def test_icon_is_a_128_pixel_png():
    header = ICON_PATH.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (128, 128)


# ---------------------------------------------------------------------------------------------
# .ui <-> parameter node
# ---------------------------------------------------------------------------------------------


def test_bound_parameters_exist_with_a_bindable_type():
    annotations = parameter_annotations()
    problems = []
    for name, widget in bound_widgets().items():
        if name not in annotations:
            problems.append(f"{widget.get('name')}: SlicerParameterName {name!r} is not a parameter")
            continue
        ptype = param_type(annotations[name], module_enums())
        for problem in binding_problems(widget.get("class"), ptype):
            problems.append(f"{widget.get('name')} -> {name}: {problem}")
    assert not problems, "\n".join(problems)


def test_node_selectors_list_the_annotated_node_types():
    """The wrapper overwrites nodeTypes from the annotation; the .ui must not promise other types."""
    annotations = parameter_annotations()
    for name, widget in bound_widgets().items():
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        ptype = param_type(annotations[name], module_enums())
        assert set(ui_string_list(widget, "nodeTypes")) == ptype.node_types, name


def test_every_parameter_has_a_widget_or_a_reason():
    parameters = set(parameter_annotations())
    bound = set(bound_widgets())
    without = parameters - bound - set(UNBOUND_PARAMETERS)
    assert not without, f"parameters with no widget and no reason in UNBOUND_PARAMETERS: {sorted(without)}"
    stale = set(UNBOUND_PARAMETERS) - parameters
    assert not stale, f"UNBOUND_PARAMETERS names parameters that do not exist: {sorted(stale)}"
    both = set(UNBOUND_PARAMETERS) & bound
    assert not both, f"parameters listed as unbound but bound in the .ui: {sorted(both)}"


@pytest.mark.parametrize(
    ("widget_class", "annotation", "bindable"),
    [
        ("QCheckBox", "bool", True),
        ("QCheckBox", "str", False),
        ("ctkSliderWidget", "Annotated[float, WithinRange(0, 1)]", True),
        ("ctkSliderWidget", "float", False),
        ("QDoubleSpinBox", "float", True),
        ("ctkPathLineEdit", "pathlib.Path", True),
        ("ctkPathLineEdit", "str", False),
        ("QComboBox", "str", False),
        ("QComboBox", "Annotated[str, Choice(['a', 'b'])]", True),
        ("QLineEdit", "str", True),
        ("qMRMLNodeComboBox", "vtkMRMLTableNode", True),
        ("qMRMLNodeComboBox", "Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode, None]", True),
        ("qMRMLNodeComboBox", "Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode]", False),
        ("qMRMLNodeComboBox", "vtkMRMLScalarVolumeNode | vtkMRMLVectorVolumeNode", False),
        ("qMRMLSegmentSelectorWidget", "str", False),
    ],
)
def test_binding_rules(widget_class, annotation, bindable):
    ptype = param_type(ast.parse(annotation, mode="eval").body)
    assert (not binding_problems(widget_class, ptype)) is bindable


# ---------------------------------------------------------------------------------------------
# DLRPredictor.py
# ---------------------------------------------------------------------------------------------


def test_every_ui_reference_exists_in_the_ui():
    names = set(ui_object_names())

    def is_ui(node: ast.AST) -> bool:
        # self.ui, or a local alias "ui = self.ui"
        return (isinstance(node, ast.Name) and node.id == "ui") or (
            isinstance(node, ast.Attribute) and node.attr == "ui" and _name(node.value) == "self"
        )

    referenced = {
        node.attr for node in ast.walk(module_tree()) if isinstance(node, ast.Attribute) and is_ui(node.value)
    }
    assert referenced, "no self.ui.<name> reference found: the check would be vacuous"
    missing = referenced - names
    assert not missing, f"self.ui.<name> with no such objectName in the .ui: {sorted(missing)}"


def test_no_imp_module():
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Import):
            assert all(alias.name != "imp" for alias in node.names), f"line {node.lineno}: import imp"
        if isinstance(node, ast.ImportFrom):
            assert node.module != "imp", f"line {node.lineno}: from imp import ..."


def test_translation_check_finds_untranslated_text():
    snippet = ast.parse(
        "w.setText('Hello')\n"
        "w.toolTip = f'Pick {x}'\n"
        "w.setText(_('Fine {n}').format(n=1))\n"
        "w.text = f'{p:.3f}'\n"
        "slicer.util.errorDisplay('Boom', windowTitle=_('T'))\n"
    )
    found = translation_problems(snippet)
    assert sorted(p.split(":", 1)[0] for p in found) == ["line 1", "line 2", "line 5"]


def test_user_visible_text_goes_through_translation():
    problems = translation_problems(module_tree())
    assert not problems, "user-visible text not wrapped in _():\n" + "\n".join(problems)


# Text-like literals (two words or more) allowed outside _(): names, not sentences.
UNTRANSLATED_NAMES = {
    "DLR Predictor": "the Sample Data category key",
    "DLRPredictor contributors": "contributor names are not translated",
}


def sentence_literals(tree: ast.Module) -> list[tuple[int, str]]:
    """Literals of two or more words outside _(), docstrings, logging calls and the self-test."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Test"):
            return  # developer-facing test messages
        if isinstance(node, ast.Call):
            if _name(node.func) in TRANSLATORS:
                return
            if isinstance(node.func, ast.Attribute) and _name(node.func.value) == "logging":
                return  # log lines are for developers
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and re.search(r"[A-Za-z]{2,} +[A-Za-z]", node.value):
                found.append((node.lineno, node.value))
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_sentence_check_finds_text_built_up_in_lists():
    snippet = ast.parse(
        "def f(p):\n"
        "    'Docstring text is fine.'\n"
        "    p.append('Choose the image.')\n"
        "    p.append(_('Choose the lesion.'))\n"
        "    logging.warning('log lines are fine')\n"
        "    w.connect('clicked(bool)', f)\n"
    )
    assert sentence_literals(snippet) == [(3, "Choose the image.")]


def test_no_untranslated_sentences():
    """Catches text that reaches the user indirectly (lists joined into tooltips, messages)."""
    found = [
        (line, text) for line, text in sentence_literals(module_tree()) if text not in UNTRANSLATED_NAMES
    ]
    assert not found, "text-like literals outside _():\n" + "\n".join(f"line {n}: {t!r}" for n, t in found)


def test_module_texts_and_category_are_translated():
    """title, helpText and acknowledgementText are set, each through _()."""
    assigned = {}
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    if target.value.attr == "parent":
                        assigned[target.attr] = node.value
    for attribute in ("title", "helpText", "acknowledgementText", "categories", "contributors"):
        assert attribute in assigned, f"self.parent.{attribute} is not set"
    for attribute in ("title", "helpText", "acknowledgementText"):
        calls = {_name(n.func) for n in ast.walk(assigned[attribute]) if isinstance(n, ast.Call)}
        assert calls & TRANSLATORS, f"self.parent.{attribute} is not translated"


def _module_text(attribute: str) -> str:
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == attribute:
                    return " ".join(
                        n.value
                        for n in ast.walk(node.value)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    )
    raise AssertionError(f"{attribute} not assigned")


@pytest.mark.parametrize(
    "citation",
    ["BUS-BRA", "Gómez-Flores", "Medical Physics", "BrEaST", "Pawłowska", "Scientific Data 11, 148 (2024)",
     "pyradiomics", "van Griethuysen", "Cancer Research", "Grad-CAM", "Selvaraju", "ICCV 2017", "ResNet",
     "He K.", "CVPR 2016"],
)  # fmt: skip
def test_acknowledgement_cites_data_and_methods(citation):
    assert citation in _module_text("acknowledgementText")


def test_help_links_to_the_user_guide():
    help_call = None
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "helpText" for t in node.targets
        ):
            help_call = node.value
    assert help_call is not None
    assert "href" in _module_text("helpText")
    names = {n.id for n in ast.walk(help_call) if isinstance(n, ast.Name)}
    assert "USER_GUIDE_URL" in names, "the help link must use the URL constant, not a second copy"


# ---------------------------------------------------------------------------------------------
# DLRPredictor.py <-> DLRPredictorLib.module_support (its Qt-free decisions, tested in
# test_module_support.py)
# ---------------------------------------------------------------------------------------------


def _function(name: str) -> ast.FunctionDef:
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"function {name} not found in {MODULE_PATH.name}")


def test_every_input_problem_has_words():
    """Each code that module_support.input_problems returns is worded (translated) by the module."""
    from DLRPredictorLib import module_support

    texts = next(n for n in ast.walk(_function("inputProblemText")) if isinstance(n, ast.Dict))
    worded = {getattr(module_support, _name(key)) for key in texts.keys}
    support_tree = ast.parse(Path(module_support.__file__).read_text(encoding="utf-8"))
    returned = {
        getattr(module_support, _name(node.args[0]))
        for node in ast.walk(support_tree)
        if isinstance(node, ast.Call) and _name(node.func) == "InputProblem" and node.args
    }
    assert len(returned) >= 5, f"found only {returned}: the check would be vacuous"
    assert returned == worded, (
        f"codes without words: {sorted(returned - worded)}; stale: {sorted(worded - returned)}"
    )
    assert not untranslated_literals(texts), "input problem text not wrapped in _()"


def test_typed_clinical_fields_are_parameters():
    """The clinical values with typed fields in module_support are float / str parameters."""
    from DLRPredictorLib import module_support

    annotations = parameter_annotations()
    expected_type = {"numeric": "float", "categorical": "str"}
    for name, kind in module_support.TYPED_CLINICAL_FIELDS.items():
        assert name in annotations, f"no parameter {name!r} for the clinical variable"
        assert param_type(annotations[name]).base == expected_type[kind], name
    defaults = {
        stmt.target.id: ast.unparse(stmt.value)
        for node in module_tree().body
        if isinstance(node, ast.ClassDef) and node.name == PARAMETER_CLASS
        for stmt in node.body
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None
    }
    # A numeric field's default must read "not given", or a fresh scene would send age 0.
    assert defaults.get("age") == "NOT_GIVEN_NUMBER"
