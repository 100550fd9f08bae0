"""Import discipline of the Slicer module and of the logic API, and the module's requirements.

(a) DLRPredictor.py is parsed with ast: at import time (module level, class bodies) it may import
    only the standard library, what Slicer's Python provides (slicer, qt, ctk, vtk) and
    DLRPredictorLib.module_support; inside functions also the rest of DLRPredictorLib and a few
    named Slicer modules; torch and pyradiomics never.
(b) In a fresh interpreter in which ``import torch`` and ``import radiomics`` fail,
    ``import DLRPredictorLib.api`` succeeds and loads neither MRML (``slicer``) nor Qt, and
    ``import DLRPredictorLib.module_support`` loads nothing beyond the standard library.
(c) Resources/requirements.txt parses, bounds every package, and this environment satisfies it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import run_python_probe

MODULE_DIR = Path(__file__).resolve().parents[2]
MODULE_PATH = MODULE_DIR / "DLRPredictor.py"
API_PATH = MODULE_DIR / "DLRPredictorLib" / "api.py"
SUPPORT_PATH = MODULE_DIR / "DLRPredictorLib" / "module_support.py"
REQUIREMENTS_PATH = MODULE_DIR / "Resources" / "requirements.txt"

SLICER_PYTHON = {"slicer", "qt", "ctk", "vtk"}
# The only parts of DLRPredictorLib imported when Slicer loads the module: standard library only
# (checked by test_module_support_imports_only_the_standard_library).
LOAD_TIME_LIB = {"DLRPredictorLib.module_support"}
# Imported inside functions only: the engine, Slicer's own scripted modules and extensions'
# modules (SampleData, PyTorchUtils), and packages Slicer's Python always has.
FUNCTION_LEVEL = SLICER_PYTHON | {"DLRPredictorLib", "SampleData", "PyTorchUtils", "numpy", "packaging"}
NEVER = {"torch", "torchvision", "radiomics"}
# Provided by the PyTorch and SlicerRadiomics extensions, or by Slicer itself: never pip-installed.
NOT_IN_REQUIREMENTS = {
    "torch",
    "torchvision",
    "pyradiomics",
    "pyradiomics-bhklab",
    "simpleitk",
    "numpy",
    "vtk",
}
NEEDED_IN_SLICER = {
    "safetensors",
    "scikit-learn",
    "lightgbm",
    "statsmodels",
    "pyyaml",
    "jsonschema",
    "pydicom",
}


def _imports(tree: ast.Module) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(module-level imports, function-level imports) as (top-level package, line) pairs."""
    top: list[tuple[str, int]] = []
    inner: list[tuple[str, int]] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name.split(".")[0] for alias in node.names]
        if isinstance(node, ast.ImportFrom):
            return ["." if node.level else (node.module or "").split(".")[0]]
        return []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            found = [(name, child.lineno) for name in names(child)]
            (inner if in_function else top).extend(found)
            visit(
                child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            )

    visit(tree, False)
    return top, inner


def _tree() -> ast.Module:
    return ast.parse(MODULE_PATH.read_text(encoding="utf-8"), filename=str(MODULE_PATH))


def test_import_scanner_separates_levels():
    tree = ast.parse(
        "import os\nfrom slicer.util import x\nclass A:\n    import qt\n"
        "def f():\n    import torch\n    from DLRPredictorLib import api\n"
    )
    top, inner = _imports(tree)
    assert top == [("os", 1), ("slicer", 2), ("qt", 4)]
    assert inner == [("torch", 6), ("DLRPredictorLib", 7)]


def _module_level_lib_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """Full names of the DLRPredictorLib modules imported outside functions."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.extend(
                    (a.name, child.lineno) for a in child.names if a.name.startswith("DLRPredictorLib")
                )
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("DLRPredictorLib"):
                if child.module == "DLRPredictorLib":  # from DLRPredictorLib import api
                    found.extend((f"DLRPredictorLib.{a.name}", child.lineno) for a in child.names)
                else:
                    found.append((child.module, child.lineno))
            visit(child)

    visit(tree)
    return found


def test_module_level_lib_scanner():
    tree = ast.parse(
        "import DLRPredictorLib.api\nfrom DLRPredictorLib import errors\n"
        "from DLRPredictorLib.module_support import x\ndef f():\n    from DLRPredictorLib import api\n"
    )
    assert _module_level_lib_imports(tree) == [
        ("DLRPredictorLib.api", 1),
        ("DLRPredictorLib.errors", 2),
        ("DLRPredictorLib.module_support", 3),
    ]


def test_module_level_imports_are_stdlib_or_slicer():
    top, _inner = _imports(_tree())
    allowed = set(sys.stdlib_module_names) | SLICER_PYTHON | {"DLRPredictorLib"}
    bad = [(name, line) for name, line in top if name not in allowed]
    assert not bad, f"DLRPredictor.py imports at load time beyond stdlib/slicer/qt/ctk/vtk: {bad}"
    eager = [(name, line) for name, line in _module_level_lib_imports(_tree()) if name not in LOAD_TIME_LIB]
    assert not eager, (
        f"DLRPredictorLib modules beyond {sorted(LOAD_TIME_LIB)} must be imported lazily: {eager}"
    )


def test_function_level_imports_are_known():
    _top, inner = _imports(_tree())
    allowed = set(sys.stdlib_module_names) | FUNCTION_LEVEL
    bad = [(name, line) for name, line in inner if name not in allowed]
    assert not bad, f"unexpected imports inside functions of DLRPredictor.py: {bad}"


def test_torch_and_radiomics_are_never_imported_by_the_module():
    top, inner = _imports(_tree())
    bad = [(name, line) for name, line in top + inner if name in NEVER]
    assert not bad, f"DLRPredictor.py imports {bad}: that work belongs in DLRPredictorLib"


def test_phantom_is_not_written_at_import():
    """phantom_sample_paths() runs on first use (start-up completed, self-test), not at import."""
    tree = _tree()
    calls_at_import = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Call) and "phantom" in ast.unparse(child.func):
                calls_at_import.append(child.lineno)
            visit(child)

    visit(tree)
    visit(ast.parse(SUPPORT_PATH.read_text(encoding="utf-8")))
    assert not calls_at_import, f"phantom written at import time (lines {calls_at_import})"
    source = MODULE_PATH.read_text(encoding="utf-8")
    assert "phantom_sample_source(" in source, "the phantom is not offered as sample data"
    assert "phantom_sample_paths()" in SUPPORT_PATH.read_text(encoding="utf-8")
    assert '"startupCompleted()"' in source, "sample data must be registered after application start-up"


_API_PROBE = r"""
import json, sys
sys.modules["torch"] = None        # any "import torch" now raises ImportError
sys.modules["torchvision"] = None
sys.modules["radiomics"] = None
sys.modules["qt"] = None
sys.modules["ctk"] = None
import DLRPredictorLib.api as api
loaded = sorted(m for m in ("torch", "torchvision", "radiomics", "slicer", "qt", "ctk")
                if sys.modules.get(m) is not None)
print(json.dumps({"loaded": loaded, "has": [n for n in ("predict_nodes", "load_predictor",
      "phantom_sample_paths", "default_bundle_path") if hasattr(api, n)]}))
"""


def test_api_imports_without_torch_radiomics_or_slicer():
    if not API_PATH.exists():
        pytest.skip("DLRPredictorLib/api.py does not exist yet")
    report = run_python_probe(_API_PROBE, timeout=120)
    assert report["loaded"] == [], f"importing DLRPredictorLib.api loaded {report['loaded']}"
    assert set(report["has"]) == {
        "predict_nodes",
        "load_predictor",
        "phantom_sample_paths",
        "default_bundle_path",
    }


_SUPPORT_PROBE = r"""
import json, sys
heavy = ("torch", "torchvision", "radiomics", "sklearn", "numpy", "scipy", "pandas", "SimpleITK",
         "yaml", "slicer", "vtk", "qt", "ctk")
for name in heavy:
    sys.modules[name] = None       # an import of any of them now raises ImportError
before = set(sys.modules)
import DLRPredictorLib.module_support as support
outside = sorted(name.split(".")[0] for name in set(sys.modules) - before
                 if sys.modules[name] is not None and name.split(".")[0] not in sys.stdlib_module_names)
print(json.dumps({"outside": sorted(set(outside)), "has": hasattr(support, "input_problems")}))
"""


def test_module_support_imports_only_the_standard_library():
    """What Slicer loads with the module: no engine, no MRML, no Qt, no numpy."""
    report = run_python_probe(_SUPPORT_PROBE, timeout=120)
    assert report["has"]
    assert report["outside"] == ["DLRPredictorLib"], f"module_support loaded {report['outside']}"


def _requirements() -> list:
    from packaging.requirements import Requirement

    lines = [
        raw.split("#", 1)[0].strip() for raw in REQUIREMENTS_PATH.read_text(encoding="utf-8").splitlines()
    ]
    return [Requirement(line) for line in lines if line]


def test_requirements_cover_what_slicer_lacks_and_only_that():
    from packaging.utils import canonicalize_name

    names = {canonicalize_name(r.name) for r in _requirements()}
    missing = NEEDED_IN_SLICER - names
    assert not missing, f"requirements.txt lacks {sorted(missing)}"
    assert {"xgboost", "xgboost-cpu"} & names, "requirements.txt lacks xgboost"
    extra = names & NOT_IN_REQUIREMENTS
    assert not extra, f"{sorted(extra)} come from Slicer or its extensions; pip must not replace them"


def test_requirements_are_bounded_ranges():
    for requirement in _requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert ">=" in operators, f"{requirement}: no lower bound"
        assert "<" in operators, f"{requirement}: no upper bound (next major version)"


def test_this_environment_satisfies_the_requirements():
    """The pinned, tested .venv versions fall inside the ranges Slicer users will get."""
    from importlib.metadata import PackageNotFoundError, version

    unmet = []
    for requirement in _requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(f"{requirement.name} not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{requirement.name} {installed} not in {requirement.specifier}")
    assert not unmet, unmet
