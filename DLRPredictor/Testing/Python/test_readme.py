"""The README's contracts: the console example runs as written, the test command is .ci/run's."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _python_block_after(heading: str) -> str:
    section = README[README.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_console_example_runs_as_written(monkeypatch, tmp_path):
    from DLRPredictorLib.inference import predictor

    if not (predictor.default_bundle_path() / "manifest.json").exists():
        pytest.fail("the bundled model is missing: the README example needs it")
    monkeypatch.setenv("DLR_CACHE", str(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_python_block_after("## In Python"), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    probability, label = lines[0].split()[:2]
    assert 0.0 <= float(probability) <= 1.0
    assert label in ("benign", "malignant")
    assert len(lines) >= 3  # scores line and at least one contribution
