"""What runs inside 3D Slicer stays Python 3.9 code (Slicer 5.4-5.8 embed 3.9, 5.10+ 3.12).

In scope: DLRPredictor.py, every module of DLRPredictorLib (subpackages included) and
Resources/Scripts/*.py. The tests themselves may use newer Python. Three checks, each shown able
to fail on a sample:
(a) vermin (pinned in requirements.txt) finds no construct or library use newer than 3.9:
    ``zip(strict=)``, ``match``, ``int.bit_count``, ``itertools.pairwise``, ``typing.TypeAlias``,
    ``dataclass(slots=)``, ``tomllib``, ...;
(b) the files parse with the Python 3.9 grammar;
(c) ``X | Y`` is never evaluated at run time: not in annotations that Python evaluates (files
    without ``from __future__ import annotations``: function signatures, module and class
    variables), and not as a value (``isinstance(x, int | str)``, ``Alias = int | None``), which
    vermin cannot tell from an annotation under ``from __future__ import annotations``.
And compat.zip_strict, the 3.9 stand-in for ``zip(strict=True)``, behaves as the built-in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from DLRPredictorLib.base.compat import zip_strict

MODULE_DIR = Path(__file__).resolve().parents[2]
TARGET = "3.9"


def slicer_python_files() -> list[Path]:
    """The Python files that run inside Slicer."""
    files = [MODULE_DIR / "DLRPredictor.py"]
    files += sorted(p for p in (MODULE_DIR / "DLRPredictorLib").rglob("*.py") if "__pycache__" not in p.parts)
    files += sorted((MODULE_DIR / "Resources" / "Scripts").glob("*.py"))
    return files


def test_scope_is_what_slicer_runs():
    names = {path.relative_to(MODULE_DIR).as_posix() for path in slicer_python_files()}
    assert {"DLRPredictor.py", "DLRPredictorLib/base/compat.py", "DLRPredictorLib/api.py"} <= names
    # every subpackage module runs in Slicer too
    assert {"DLRPredictorLib/inference/predictor.py", "DLRPredictorLib/scene/adapter.py"} <= names
    assert any(name.startswith("Resources/Scripts/") for name in names)


# ---------------------------------------------------------------------------------------------
# (a) vermin
# ---------------------------------------------------------------------------------------------


def run_vermin(paths: list[Path]) -> subprocess.CompletedProcess:
    """vermin with target 3.9 (or older), reporting violations only."""
    command = [
        sys.executable,
        "-c",
        "import sys; from vermin import main; sys.exit(main())",
        "--no-config-file",
        f"--target={TARGET}-",
        "--violations",
        "--no-tips",
        "-vvv",  # line numbers in the report
        "--processes=1",
        *map(str, paths),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_vermin_finds_nothing_newer_than_python_3_9():
    run = run_vermin(slicer_python_files())
    assert run.returncode == 0, (
        f"Python 3.10+ features in code that runs in Slicer:\n{run.stdout}{run.stderr}"
    )


NEWER_THAN_3_9 = {
    "zip(strict)": "pairs = list(zip(a, b, strict=True))\n",
    "pattern matching": "match value:\n    case 1:\n        pass\n",
    "int.bit_count": "bits = (5).bit_count()\n",
    "itertools.pairwise": "import itertools\nsteps = list(itertools.pairwise(a))\n",
    "typing.TypeAlias": "from typing import TypeAlias\n",
    "dataclass(slots)": "import dataclasses\n@dataclasses.dataclass(slots=True)\nclass A:\n    x: int = 0\n",
    "tomllib": "import tomllib\n",
}


@pytest.mark.parametrize("feature", sorted(NEWER_THAN_3_9))
def test_vermin_check_fails_on_a_newer_feature(tmp_path, feature):
    sample = tmp_path / "sample.py"
    sample.write_text("a, b, value = [1], [2], 1\n" + NEWER_THAN_3_9[feature], encoding="utf-8")
    run = run_vermin([sample])
    assert run.returncode != 0, f"vermin accepted {feature}:\n{run.stdout}"
    assert feature.split("(")[0] in run.stdout


# ---------------------------------------------------------------------------------------------
# (b) grammar
# ---------------------------------------------------------------------------------------------


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def test_files_parse_with_the_python_3_9_grammar():
    for path in slicer_python_files():
        parse(path)  # raises SyntaxError naming the file and line


def test_grammar_check_fails_on_match():
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 9))


# ---------------------------------------------------------------------------------------------
# (c) X | Y evaluated at run time
# ---------------------------------------------------------------------------------------------

# Names whose "|" is a type union (3.10+), not an int / set / dict "|" (fine in 3.9).
TYPE_NAMES = {"int", "float", "complex", "str", "bytes", "bool", "list", "dict", "tuple", "set", "frozenset"}
TYPE_NAMES |= {"type", "object", "Path", "Any", "Callable", "Sequence", "Mapping", "Iterable"}


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def _is_union(node: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(node))


def _looks_like_type(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _looks_like_type(node.left) or _looks_like_type(node.right)
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Subscript):
        return _looks_like_type(node.value)
    if isinstance(node, ast.Attribute):
        return node.attr in TYPE_NAMES
    return isinstance(node, ast.Name) and node.id in TYPE_NAMES


def runtime_union_problems(tree: ast.Module) -> list[str]:
    """'line N: ...' for each X | Y that Python 3.9 would evaluate."""
    future = _has_future_annotations(tree)
    problems: list[str] = []
    annotations: set[int] = set()

    def annotation(node: ast.AST | None, where: str) -> None:
        if node is None:
            return
        annotations.update(id(n) for n in ast.walk(node))
        if not future and _is_union(node):
            problems.append(f"line {node.lineno}: {where} annotation {ast.unparse(node)!r} is evaluated")

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                annotation(arg.annotation, "argument")
            for arg in (arguments.vararg, arguments.kwarg):
                if arg is not None:
                    annotation(arg.annotation, "argument")
            annotation(node.returns, "return")
        elif isinstance(node, ast.AnnAssign):
            if in_function:
                annotations.update(id(n) for n in ast.walk(node.annotation))  # never evaluated
            else:
                annotation(node.annotation, "variable")
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    def values(node: ast.AST) -> None:
        if id(node) in annotations:
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if (
                node.func.id in ("isinstance", "issubclass")
                and len(node.args) == 2
                and _is_union(node.args[1])
            ):
                problems.append(
                    f"line {node.lineno}: {node.func.id} with a union {ast.unparse(node.args[1])!r}"
                )
                annotations.update(id(n) for n in ast.walk(node.args[1]))  # reported once
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _looks_like_type(node):
            problems.append(f"line {node.lineno}: type union {ast.unparse(node)!r} evaluated as a value")
            return  # not again for the inner "|" of A | B | C
        for child in ast.iter_child_nodes(node):
            values(child)

    visit(tree, False)
    values(tree)
    return sorted(problems, key=lambda p: int(p.split(":")[0].split()[1]))


def test_no_union_is_evaluated_at_run_time():
    problems = [
        f"{path.relative_to(MODULE_DIR)} {problem}"
        for path in slicer_python_files()
        for problem in runtime_union_problems(parse(path))
    ]
    assert not problems, (
        "X | Y that Python 3.9 evaluates (use Optional/Union or postponed annotations):\n"
        + ("\n".join(problems))
    )


def test_union_check_fails_on_samples():
    without_future = ast.parse(
        "def f(x: int | None) -> str | None:\n"  # line 1: two evaluated annotations
        "    y: int | None = None\n"  # never evaluated: fine
        "    return isinstance(x, int | str)\n"  # line 3
        "Alias = dict[str, int] | None\n"  # line 4
        "flags = 1 | 2\n"  # an int "|": fine
        "class C:\n"
        "    z: Path | str = ''\n"  # line 7: class variables are evaluated
    )
    problems = runtime_union_problems(without_future)
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 1", "line 3", "line 4", "line 7"]

    with_future = ast.parse(
        "from __future__ import annotations\n"
        "def f(x: int | None) -> str | None:\n"
        "    return isinstance(x, (int, str))\n"
        "merged = {'a': 1} | {'b': 2}\n"
    )
    assert runtime_union_problems(with_future) == []


# ---------------------------------------------------------------------------------------------
# compat.zip_strict
# ---------------------------------------------------------------------------------------------

CASES = [
    (),
    ([],),
    ([1, 2, 3],),
    ([1, 2], "ab"),
    ([1, 2], [3, 4], [5, 6]),
    ([1, 2], [1]),
    ([1], [1, 2]),
    ([1, 2], [1, 2], [1]),
    ([1], [1], [1, 2]),
    ([1, 2, 3], [1], [1, 2]),
    ([], [None]),
    ([None], []),
]


def _outcome(zipper, args) -> tuple[list[tuple], str | None]:
    produced: list[tuple] = []
    try:
        for item in zipper(*args):
            produced.append(item)
    except ValueError as error:
        return produced, str(error)
    return produced, None


@pytest.mark.skipif(sys.version_info < (3, 10), reason="compares with zip(strict=True), new in 3.10")
@pytest.mark.parametrize("args", CASES, ids=repr)
def test_zip_strict_behaves_as_the_builtin(args):
    builtin = _outcome(lambda *its: zip(*its, strict=True), args)
    ours = _outcome(zip_strict, args)
    assert ours == builtin


def test_zip_strict_is_lazy_and_takes_iterators():
    def numbers():
        yield from range(3)

    pairs = zip_strict(numbers(), iter("abc"))
    assert next(pairs) == (0, "a")
    assert list(pairs) == [(1, "b"), (2, "c")]
    unequal = zip_strict(numbers(), "ab")
    assert next(unequal) == (0, "a")  # nothing raised before the end is reached
    with pytest.raises(ValueError, match="argument 2 is shorter than argument 1"):
        list(unequal)
