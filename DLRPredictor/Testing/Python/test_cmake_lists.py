"""The CMake files package exactly what is on disk, and the extension metadata is complete.

slicerMacroBuildScriptedModule installs only the files listed in DLRPredictor/CMakeLists.txt: a
library module or a resource (a model bundle file, a parameter file, the .ui) added on disk but not
listed is missing from the installed extension, and a listed file that no longer exists breaks the
build. The lists are compared with a walk of the disk done here, independently of
scripts/update_cmake_lists.py (which is tested separately on a temporary folder).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
MODULE_DIR = REPO_ROOT / "DLRPredictor"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
TOP_CMAKE = REPO_ROOT / "CMakeLists.txt"
TESTING_CMAKE = MODULE_DIR / "Testing" / "CMakeLists.txt"
TESTING_PYTHON_CMAKE = MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt"
UPDATE_SCRIPT = REPO_ROOT / "scripts" / "update_cmake_lists.py"
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


# ---------------------------------------------------------------------------------------------
# A small CMake reader: enough for set(), commands and their arguments
# ---------------------------------------------------------------------------------------------


def cmake_arguments(text: str) -> list[str]:
    """Split a command's argument text into arguments (comments dropped, quotes removed)."""
    tokens = re.findall(r'"((?:[^"\\]|\\.)*)"|(#[^\n]*)|([^\s"#()]+)', text)
    return [quoted or bare for quoted, comment, bare in tokens if not comment and (quoted or bare)]


def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """Every command invocation of a CMake file as (lower-case name, arguments)."""
    text = path.read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [
        (name.lower(), cmake_arguments(args))
        for name, args in re.findall(r"\b([A-Za-z_]\w*)\s*\(((?:[^()\"]|\"(?:[^\"\\]|\\.)*\")*)\)", text)
    ]


def cmake_variables(path: Path) -> dict[str, list[str]]:
    """Values of set(NAME ...) with ${VAR} references to earlier variables expanded."""
    variables: dict[str, list[str]] = {}

    def expand(arg: str) -> list[str]:
        whole = re.fullmatch(r"\$\{(\w+)\}", arg)
        if whole and whole.group(1) in variables:
            return list(variables[whole.group(1)])
        return [re.sub(r"\$\{(\w+)\}", lambda m: " ".join(variables.get(m.group(1), [m.group(0)])), arg)]

    for name, args in cmake_commands(path):
        if name == "set" and args:
            variables[args[0]] = [item for arg in args[1:] for item in expand(arg)]
    return variables


def files_under(root: Path) -> set[str]:
    """Files under root as POSIX paths relative to the module folder (caches skipped)."""
    found = set()
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if path.is_file() and not SKIPPED_DIRS & set(parts) and path.suffix not in SKIPPED_SUFFIXES:
            found.add(path.relative_to(MODULE_DIR).as_posix())
    return found


def test_cmake_reader():
    text = 'set(A x.py "b c.txt" # comment\n  ${N}Lib/d.py)\nfoo(BAR)\n'
    assert cmake_arguments('x.py "b c.txt" # comment\n ${N}Lib/d.py') == ["x.py", "b c.txt", "${N}Lib/d.py"]
    assert [name for name, _args in re.findall(r"\b(\w+)\s*\(([^()]*)\)", text)] == ["set", "foo"]


# ---------------------------------------------------------------------------------------------
# DLRPredictor/CMakeLists.txt
# ---------------------------------------------------------------------------------------------


def _module_lists() -> tuple[list[str], list[str]]:
    variables = cmake_variables(MODULE_CMAKE)
    assert variables.get("MODULE_NAME") == ["DLRPredictor"]
    return variables["MODULE_PYTHON_SCRIPTS"], variables["MODULE_PYTHON_RESOURCES"]


def _differences(listed: list[str], on_disk: set[str]) -> str:
    duplicates = sorted({p for p in listed if listed.count(p) > 1})
    unlisted = sorted(on_disk - set(listed))
    missing = sorted(set(listed) - on_disk)
    return (
        f"on disk but not listed (run scripts/update_cmake_lists.py): {unlisted}\n"
        f"listed but not on disk: {missing}\nlisted twice: {duplicates}"
        if unlisted or missing or duplicates
        else ""
    )


def test_scripts_are_the_module_and_every_library_python_file():
    scripts, _resources = _module_lists()
    library = {p for p in files_under(MODULE_DIR / "DLRPredictorLib") if p.endswith(".py")}
    assert "DLRPredictorLib/__init__.py" in library
    problems = _differences(scripts, {"DLRPredictor.py"} | library)
    assert not problems, problems


def test_resources_are_every_resource_file_and_library_data_file():
    _scripts, resources = _module_lists()
    on_disk = files_under(MODULE_DIR / "Resources")
    on_disk |= {p for p in files_under(MODULE_DIR / "DLRPredictorLib") if not p.endswith(".py")}
    for required in (
        "Resources/UI/DLRPredictor.ui",
        "Resources/Icons/DLRPredictor.png",
        "Resources/requirements.txt",
    ):
        assert required in on_disk, f"{required} is missing on disk"
    problems = _differences(resources, on_disk)
    assert not problems, problems


def test_module_is_built_and_tested_like_the_template():
    commands = cmake_commands(MODULE_CMAKE)
    build = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    assert len(build) == 1, "one slicerMacroBuildScriptedModule call expected"
    args = build[0]
    for keyword, value in (
        ("NAME", "${MODULE_NAME}"),
        ("SCRIPTS", "${MODULE_PYTHON_SCRIPTS}"),
        ("RESOURCES", "${MODULE_PYTHON_RESOURCES}"),
    ):
        assert keyword in args and args[args.index(keyword) + 1] == value, f"{keyword} {value} not passed"
    assert "WITH_GENERIC_TESTS" in args
    assert ("slicer_add_python_unittest", ["SCRIPT", "${MODULE_NAME}.py"]) in commands
    assert ("add_subdirectory", ["Testing"]) in commands
    assert ("add_subdirectory", ["Python"]) in cmake_commands(TESTING_CMAKE)


def test_registered_static_tests_exist():
    variables = cmake_variables(TESTING_PYTHON_CMAKE)
    names = variables["DLRPredictor_STATIC_TESTS"]
    assert names, "no static test registered with CTest"
    for name in names:
        assert (TESTING_PYTHON_CMAKE.parent / f"{name}.py").is_file(), f"{name}.py is registered but missing"


# ---------------------------------------------------------------------------------------------
# Top-level CMakeLists.txt (the extension)
# ---------------------------------------------------------------------------------------------


def test_extension_metadata_is_complete():
    variables = cmake_variables(TOP_CMAKE)
    for name in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS",
    ):
        value = " ".join(variables.get(name, []))
        assert value.strip(), f"{name} is not set"
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert variables[name][0].startswith("https://"), f"{name} is not an https address"


def test_extension_depends_on_slicerradiomics_and_pytorch():
    depends = " ".join(cmake_variables(TOP_CMAKE)["EXTENSION_DEPENDS"]).split()
    assert "SlicerRadiomics" in depends
    assert "PyTorch" in depends


def test_extension_builds_like_the_template():
    commands = cmake_commands(TOP_CMAKE)
    assert ("project", ["DLRPredictor"]) in commands
    assert ("find_package", ["Slicer", "REQUIRED"]) in commands
    assert ("include", ["${Slicer_USE_FILE}"]) in commands
    assert ("add_subdirectory", ["DLRPredictor"]) in commands
    assert ("include", ["${Slicer_EXTENSION_GENERATE_CONFIG}"]) in commands
    assert ("include", ["${Slicer_EXTENSION_CPACK}"]) in commands
    assert commands[0][0] == "cmake_minimum_required"


def test_homepage_is_the_module_project_url():
    tree = ast.parse((MODULE_DIR / "DLRPredictor.py").read_text(encoding="utf-8"))
    urls = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "PROJECT_URL" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    assert urls == cmake_variables(TOP_CMAKE)["EXTENSION_HOMEPAGE"]


def test_license_is_apache_2():
    text = (REPO_ROOT / "LICENSE.txt").read_text(encoding="utf-8")
    assert "Apache License" in text.splitlines()[1]
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.split()) > 1500, "not the full licence text"


# ---------------------------------------------------------------------------------------------
# scripts/update_cmake_lists.py on a temporary module folder
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def update_script():
    spec = importlib.util.spec_from_file_location("update_cmake_lists", UPDATE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEMPLATE = """set(MODULE_NAME DLRPredictor)
set(MODULE_PYTHON_SCRIPTS
  ${MODULE_NAME}.py
  # BEGIN GENERATED SCRIPTS
  DLRPredictorLib/gone.py
  # END GENERATED SCRIPTS
  )
set(MODULE_PYTHON_RESOURCES
  # BEGIN GENERATED RESOURCES
  # END GENERATED RESOURCES
  )
"""


def _fake_module(root: Path) -> Path:
    module = root / "DLRPredictor"
    for relative in (
        "DLRPredictor.py",
        "DLRPredictorLib/__init__.py",
        "DLRPredictorLib/sub/deep.py",
        "DLRPredictorLib/data.json",
        "DLRPredictorLib/__pycache__/x.cpython-311.pyc",
        "Resources/UI/DLRPredictor.ui",
        "Resources/Models/default/my weights.safetensors",
        "Resources/__pycache__/junk.pyc",
    ):
        path = module / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    (module / "CMakeLists.txt").write_text(TEMPLATE, encoding="utf-8")
    return module


def test_update_script_lists_exactly_the_files(update_script, tmp_path):
    module = _fake_module(tmp_path)
    assert update_script.main(["--module-dir", str(module), "--check"]) == 1
    assert update_script.main(["--module-dir", str(module)]) == 0
    variables = cmake_variables(module / "CMakeLists.txt")
    assert variables["MODULE_PYTHON_SCRIPTS"] == [
        "DLRPredictor.py",
        "DLRPredictorLib/__init__.py",
        "DLRPredictorLib/sub/deep.py",
    ]
    assert variables["MODULE_PYTHON_RESOURCES"] == [
        "DLRPredictorLib/data.json",
        "Resources/Models/default/my weights.safetensors",
        "Resources/UI/DLRPredictor.ui",
    ]
    assert update_script.main(["--module-dir", str(module), "--check"]) == 0


def test_update_script_notices_a_new_file(update_script, tmp_path):
    module = _fake_module(tmp_path)
    update_script.main(["--module-dir", str(module)])
    (module / "Resources" / "Parameters").mkdir()
    (module / "Resources" / "Parameters" / "new.yaml").write_text("x", encoding="utf-8")
    assert update_script.main(["--module-dir", str(module), "--check"]) == 1


def test_update_script_refuses_a_file_without_markers(update_script, tmp_path):
    module = _fake_module(tmp_path)
    (module / "CMakeLists.txt").write_text("set(MODULE_NAME DLRPredictor)\n", encoding="utf-8")
    assert update_script.main(["--module-dir", str(module)]) == 2
