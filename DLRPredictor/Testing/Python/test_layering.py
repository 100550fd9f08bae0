"""DLRPredictorLib's layers: imports run only downward, and no module imports itself in a circle.

The subpackages follow the data flow (docs/ARCHITECTURE.md). A module may import its own
subpackage and the layers below it; peers of one layer (``features``, ``deep``, ``models``,
``evaluation``; ``scene`` and ``training``) do not import each other. Every import counts, the
ones inside functions too: a lazy import is still a dependency.

The scanner reads the source with ``ast`` (nothing is imported), so the check costs milliseconds
and also covers modules that need torch or slicer.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT

LIB = REPO_ROOT / "DLRPredictor" / "DLRPredictorLib"
PACKAGE = "DLRPredictorLib"

#: Layer of each subpackage; the top-level modules (api, cli, demo, module_support) are above all.
RANKS = {
    "base": 0,
    "inputs": 1,
    "features": 2,
    "deep": 2,
    "models": 2,
    "evaluation": 2,
    "bundle": 3,
    "inference": 4,
    "scene": 5,
    "training": 5,
    "cohort": 6,
}
TOP_RANK = 7


def _module_name(lib: Path, path: Path) -> str:
    parts = list(path.relative_to(lib).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _modules(lib: Path) -> dict[str, Path]:
    return {_module_name(lib, p): p for p in sorted(lib.rglob("*.py")) if "__pycache__" not in p.parts}


def _is_package(lib: Path, module: str) -> bool:
    return (lib.joinpath(*module.split(".")[1:]) / "__init__.py").exists()


def _resolve(lib: Path, module: str, node: ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The DLRPredictorLib modules one ``from ... import ...`` statement loads."""
    if node.level:
        base = module.split(".")
        if not _is_package(lib, module):
            base = base[:-1]  # a module's relative imports start at its package
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target != PACKAGE and not target.startswith(PACKAGE + "."):
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in known else target)
    return found


def imports_of(lib: Path) -> Iterator[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a package module by a package module."""
    known = _modules(lib)  # listed once: one walk of the tree, not one per import statement
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(lib, module, node, known)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith(PACKAGE + ".")]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target != module:
                    yield module, target, node.lineno


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS):
        return parts[1], RANKS.get(parts[1], TOP_RANK)
    return "(top)", TOP_RANK


def layering_violations(lib: Path) -> list[str]:
    """Imports that run upward or sideways between layers, as readable lines."""
    bad = []
    for importer, imported, line in imports_of(lib):
        (src, src_rank), (dst, dst_rank) = _layer(importer), _layer(imported)
        if imported == PACKAGE:  # the package face: only the version and aliases live there
            bad.append(f"{importer}:{line} imports the package root; import the module itself")
        elif src != dst and dst_rank >= src_rank:
            bad.append(f"{importer}:{line} imports {imported} ({dst}, layer {dst_rank} >= {src} {src_rank})")
    return bad


def import_cycles(lib: Path) -> list[list[str]]:
    """Every strongly connected group of modules (Tarjan), i.e. each import cycle."""
    graph: dict[str, set[str]] = {m: set() for m in _modules(lib)}
    for importer, imported, _ in imports_of(lib):
        graph[importer].add(imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_every_subpackage_has_a_layer():
    found = {p.name for p in LIB.iterdir() if (p / "__init__.py").exists()}
    assert found == set(RANKS), "add the new subpackage to RANKS (and docs/ARCHITECTURE.md)"


def test_imports_run_only_downward():
    assert layering_violations(LIB) == []


def test_no_import_cycles():
    assert import_cycles(LIB) == []


def test_package_faces_hold_no_code():
    """A subpackage's __init__ is a docstring and re-exports only: the work lives in its modules."""
    for init in LIB.glob("*/__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        code = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert code == [], f"{init.relative_to(LIB)} defines {[n.name for n in code]}"


@pytest.fixture()
def lib_copy(tmp_path: Path) -> Path:
    copy = tmp_path / PACKAGE
    shutil.copytree(LIB, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_an_upward_import_is_caught(lib_copy: Path):
    """The checker is not vacuous: an import from a low layer to a high one is reported."""
    before = set(layering_violations(lib_copy))
    _append(lib_copy / "base" / "numeric.py", "\n\ndef _late():\n    from ..inference import predictor\n")
    violations = sorted(set(layering_violations(lib_copy)) - before)
    assert len(violations) == 1
    assert violations[0].startswith("DLRPredictorLib.base.numeric:")
    assert "DLRPredictorLib.inference.predictor (inference" in violations[0]


def test_a_sideways_import_between_peers_is_caught(lib_copy: Path):
    before = set(layering_violations(lib_copy))
    _append(lib_copy / "features" / "radiomics.py", "\nfrom ..models import selection\n")
    new = set(layering_violations(lib_copy)) - before
    assert [v for v in new if "DLRPredictorLib.models.selection (models" in v] == list(new) != []


def test_an_absolute_import_is_caught(lib_copy: Path):
    before = set(layering_violations(lib_copy))
    _append(lib_copy / "inputs" / "images.py", "\nimport DLRPredictorLib.scene.adapter\n")
    new = set(layering_violations(lib_copy)) - before
    assert [v for v in new if "DLRPredictorLib.scene.adapter (scene" in v] == list(new) != []


def test_a_cycle_is_caught(lib_copy: Path):
    """Two modules of one layer importing each other form a cycle even when both are legal."""
    before = import_cycles(lib_copy)
    assert not any("DLRPredictorLib.base.errors" in c for c in before)
    _append(lib_copy / "base" / "errors.py", "\n\ndef _late():\n    from . import numeric\n")
    _append(lib_copy / "base" / "numeric.py", "\n\ndef _late2():\n    from . import errors\n")
    assert ["DLRPredictorLib.base.errors", "DLRPredictorLib.base.numeric"] in import_cycles(lib_copy)


def test_architecture_map_names_every_module():
    """docs/ARCHITECTURE.md's package map stays true: every module by its path, no stale path."""
    text = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    on_disk = {
        p.relative_to(LIB).as_posix()
        for p in LIB.rglob("*.py")
        if "__pycache__" not in p.parts and p.name != "__init__.py" and p.parent != LIB
    }
    missing = sorted(path for path in on_disk if path not in text)
    assert missing == [], f"docs/ARCHITECTURE.md does not name {missing}"
    layers = "|".join(RANKS)
    named = set(re.findall(rf"\b((?:{layers})/[\w/]+\.py)\b", text))
    assert sorted(named - on_disk) == [], "docs/ARCHITECTURE.md names modules that do not exist"


def test_an_import_of_the_package_root_is_caught(lib_copy: Path):
    """``from .. import x`` loads the package face, whose only content is the version and aliases."""
    before = set(layering_violations(lib_copy))
    _append(lib_copy / "base" / "numeric.py", "\n\ndef _late():\n    from .. import __version__\n")
    new = sorted(set(layering_violations(lib_copy)) - before)
    assert len(new) == 1 and new[0].startswith("DLRPredictorLib.base.numeric:")
    assert new[0].endswith("imports the package root; import the module itself")


def test_code_in_a_package_face_is_caught(lib_copy: Path, monkeypatch: pytest.MonkeyPatch):
    """test_package_faces_hold_no_code is not vacuous: a function in an __init__ fails it."""
    _append(lib_copy / "models" / "__init__.py", "\n\ndef helper():\n    return 1\n")
    monkeypatch.setattr(sys.modules[__name__], "LIB", lib_copy)
    with pytest.raises(AssertionError, match=r"models/__init__\.py defines \['helper'\]"):
        test_package_faces_hold_no_code()
