"""DLRPredictorLib type-checks clean with mypy (settings in pyproject.toml, ``[tool.mypy]``).

Part of the README's test command, so a change that breaks a declared type fails the suite like
any other regression. The cache lives outside the work tree; a cold check takes about a minute
on two cores, a warm one a few seconds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT

mypy_api = pytest.importorskip("mypy.api", reason="mypy is installed by scripts/setup.sh (requirements.txt)")


def test_library_type_checks_clean():
    cache = Path(os.environ.get("DLR_MYPY_CACHE", Path(tempfile.gettempdir()) / "dlrpredictor-mypy-cache"))
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(REPO_ROOT / "pyproject.toml"), "--cache-dir", str(cache), "--no-color-output",
         str(REPO_ROOT / "DLRPredictor" / "DLRPredictorLib")]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 0 and not errors, "mypy found:\n" + "\n".join(errors or [stdout, stderr])


def test_a_type_error_is_reported(tmp_path: Path):
    """The check is not vacuous: the same settings reject a wrong call."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> int:\n    return x\n\n\nf('text')\n", encoding="utf-8")
    stdout, _, status = mypy_api.run(
        ["--config-file", str(REPO_ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"), str(bad)]
    )
    assert status == 1
    assert 'Argument 1 to "f" has incompatible type "str"; expected "int"' in stdout
