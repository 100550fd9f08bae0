#!/usr/bin/env python3
"""Rewrite the file lists of DLRPredictor/CMakeLists.txt from what is on disk.

slicerMacroBuildScriptedModule installs only the files it is given, so every Python file of
DLRPredictorLib and every file under Resources (and any non-Python package data of
DLRPredictorLib) must be listed. This script rewrites the two generated blocks between the
``# BEGIN GENERATED ...`` / ``# END GENERATED ...`` markers; everything else in the file is kept.

Usage::

    python scripts/update_cmake_lists.py          # rewrite DLRPredictor/CMakeLists.txt
    python scripts/update_cmake_lists.py --check  # exit 1 (and say what differs) when out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO_ROOT / "DLRPredictor"
LIB_NAME = "DLRPredictorLib"
RESOURCES_NAME = "Resources"
IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}
IGNORED_NAMES = {".DS_Store", "Thumbs.db"}
BLOCKS = ("SCRIPTS", "RESOURCES")


def _files(root: Path) -> list[Path]:
    """Every regular file under root, skipping caches and editor droppings."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part in IGNORED_DIRS for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in IGNORED_SUFFIXES and path.name not in IGNORED_NAMES:
            found.append(path)
    return found


def scan(module_dir: Path) -> dict[str, list[str]]:
    """The files the module must list, as POSIX paths relative to the module folder.

    Args:
        module_dir: the DLRPredictor module folder (holds DLRPredictorLib/ and Resources/).

    Returns:
        ``{"SCRIPTS": [...], "RESOURCES": [...]}``, each sorted: the .py files of the library, and
        the library's other files plus every file under Resources.
    """
    lib, resources = module_dir / LIB_NAME, module_dir / RESOURCES_NAME
    lib_files = _files(lib) if lib.is_dir() else []
    resource_files = _files(resources) if resources.is_dir() else []
    scripts = [p for p in lib_files if p.suffix == ".py"]
    package_data = [p for p in lib_files if p.suffix != ".py"]

    def rel(paths: list[Path]) -> list[str]:
        return sorted(p.relative_to(module_dir).as_posix() for p in paths)

    return {"SCRIPTS": rel(scripts), "RESOURCES": rel(package_data + resource_files)}


def _cmake_item(path: str) -> str:
    # Unquoted CMake arguments break on whitespace, ';', '#', quotes, '(' ')' and '$'.
    return f'"{path}"' if re.search(r'[\s;#"()$\\]', path) else path


def render(cmake_text: str, lists: dict[str, list[str]]) -> str:
    """Replace the generated blocks of a CMakeLists.txt text.

    Args:
        cmake_text: the current file contents (must contain both marker pairs).
        lists: ``{"SCRIPTS": [...], "RESOURCES": [...]}`` as returned by scan().

    Returns:
        The new file contents.

    Raises:
        ValueError: a BEGIN/END marker pair is missing.
    """
    for block in BLOCKS:
        pattern = re.compile(
            rf"^(?P<indent>[ \t]*)# BEGIN GENERATED {block}[^\n]*\n.*?^[ \t]*# END GENERATED {block}[^\n]*$",
            re.MULTILINE | re.DOTALL,
        )
        match = pattern.search(cmake_text)
        if match is None:
            raise ValueError(f"'# BEGIN GENERATED {block}' / '# END GENERATED {block}' markers not found")
        indent = match.group("indent")
        lines = [f"{indent}# BEGIN GENERATED {block} (scripts/update_cmake_lists.py)"]
        lines += [f"{indent}{_cmake_item(p)}" for p in lists[block]]
        lines.append(f"{indent}# END GENERATED {block}")
        cmake_text = cmake_text[: match.start()] + "\n".join(lines) + cmake_text[match.end() :]
    return cmake_text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module-dir", type=Path, default=MODULE_DIR, help="module folder (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="only report whether the lists are up to date")
    args = parser.parse_args(argv)

    cmake_file = args.module_dir / "CMakeLists.txt"
    try:
        old = cmake_file.read_text(encoding="utf-8")
        new = render(old, scan(args.module_dir))
    except (OSError, ValueError) as error:
        print(f"error: {cmake_file}: {error}", file=sys.stderr)
        return 2
    if new == old:
        print(f"{cmake_file}: up to date")
        return 0
    if args.check:
        print(f"{cmake_file}: file lists are out of date; run scripts/update_cmake_lists.py", file=sys.stderr)
        return 1
    cmake_file.write_text(new, encoding="utf-8")
    print(f"{cmake_file}: file lists updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
