"""The `dlrpredictor` command line: help everywhere, exit statuses, one clear stderr line on error.

The contract (README, DESIGN): exit 0 on success, 1 when a batch finished with failed cases, 2 for
an unusable input (manifest, bundle, arguments) with exactly one line on stderr and no traceback.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from DLRPredictorLib import cli
from DLRPredictorLib.cohort import batch

# The options the design card promises for each command.
COMMAND_OPTIONS = {
    "predict": ["--out", "--bundle", "--jobs", "--scenes"],
    "train": ["--out", "--config"],
    "evaluate": ["--bundle", "--report"],
    "report": ["--label", "--scores", "--report"],
    "demo": [],
}


def _run_module(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "DLRPredictorLib", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


def _one_error_line(stderr: str, command: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"dlrpredictor {command}: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "image", "mask", "spacing_mm"])
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------- help


def test_program_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dlrpredictor")
    for command in COMMAND_OPTIONS:
        assert command in out


@pytest.mark.parametrize("command", sorted(COMMAND_OPTIONS))
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: dlrpredictor {command}")
    for option in COMMAND_OPTIONS[command]:
        assert option in out


def test_python_dash_m_help_answers_without_loading_the_heavy_libraries():
    done = _run_module("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: dlrpredictor")
    assert done.stderr == ""
    # --help must be quick: it loads no torch, MRML, pyradiomics or scikit-learn.
    probe = (
        "import sys\n"
        "from DLRPredictorLib import cli\n"
        "try:\n"
        "    cli.main(['predict', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0\n"
        "print(sorted(m for m in ('torch', 'slicer', 'vtk', 'radiomics', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- errors: exit 2, one line


def test_usage_errors_are_one_line_with_status_2(capsys):
    for argv, command in (
        (["predict", "cohort.csv"], "predict"),
        (["predict", "c.csv", "--out", "r.csv", "--jobs", "two"], "predict"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        line = _one_error_line(capsys.readouterr().err, command)
        assert "--help" in line
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dlrpredictor: error:")


def test_bad_manifest_exits_2_with_one_line_and_no_traceback(tmp_path, tiny_bundle, first_case):
    bad = _write_manifest(tmp_path / "cohort.csv", [first_case, first_case])  # the same case_id twice

    done = _run_module(
        "predict",
        str(bad),
        "--out",
        str(tmp_path / "results.csv"),
        "--bundle",
        str(tiny_bundle),
        "--no-progress",
    )

    assert done.returncode == 2
    line = _one_error_line(done.stderr, "predict")
    assert "duplicate case_id" in line and first_case["case_id"] in line
    assert not (tmp_path / "results.csv").exists()


def test_missing_manifest_and_bundle_exit_2_with_one_line(tmp_path, capsys, tiny_bundle):
    missing = tmp_path / "nowhere.csv"
    code = cli.main(
        [
            "predict",
            str(missing),
            "--out",
            str(tmp_path / "r.csv"),
            "--bundle",
            str(tiny_bundle),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "nowhere.csv" in _one_error_line(capsys.readouterr().err, "predict")

    not_a_bundle = tmp_path / "empty_folder"
    not_a_bundle.mkdir()
    code = cli.main(
        ["evaluate", str(missing), "--bundle", str(not_a_bundle), "--report", str(tmp_path / "rep")]
    )
    assert code == 2
    _one_error_line(capsys.readouterr().err, "evaluate")

    code = cli.main(["predict", str(missing), "--out", str(tmp_path / "r.csv"), "--jobs", "0"])
    assert code == 2
    assert "--jobs" in _one_error_line(capsys.readouterr().err, "predict")


def test_interrupt_says_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "predict_cohort", interrupted)
    code = cli.main(["predict", str(tmp_path / "c.csv"), "--out", str(tmp_path / "r.csv")])
    assert code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rerun the same command to resume" in err[0]


@pytest.mark.parametrize(
    "case", ["predict_out_is_manifest", "predict_out_is_image", "scenes_in_bundle", "evaluate", "report"]
)
def test_an_output_that_would_overwrite_an_input_is_refused_before_any_work(
    tmp_path, capsys, tiny_bundle, first_case, case
):
    image = tmp_path / f"image{''.join(Path(first_case['image']).suffixes)}"
    mask = tmp_path / f"mask{''.join(Path(first_case['mask']).suffixes)}"
    shutil.copyfile(first_case["image"], image)
    shutil.copyfile(first_case["mask"], mask)
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    # evaluate writes REPORT_predictions.csv next to the report: here that is the manifest.
    cohort = _write_manifest(
        tmp_path / "rep_predictions.csv", [{**first_case, "image": str(image), "mask": str(mask)}]
    )
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    predict = ["predict", str(cohort), "--bundle", str(bundle), "--no-progress"]
    argv, option, what = {
        "predict_out_is_manifest": ([*predict, "--out", str(cohort)], "--out", "would be overwritten"),
        "predict_out_is_image": ([*predict, "--out", str(image)], "--out", "would be overwritten"),
        "scenes_in_bundle": (
            [*predict, "--out", str(tmp_path / "r.csv"), "--scenes", str(bundle / "scenes")],
            "--scenes",
            "inside the input folder",
        ),
        "evaluate": (
            ["evaluate", str(cohort), "--bundle", str(bundle), "--report", str(tmp_path / "rep")],
            "--out",
            "would be overwritten",
        ),
        "report": (
            ["report", str(cohort), "--label", "case_id", "--scores", "mask", "--report", str(cohort)],
            "--report",
            "would be overwritten",
        ),
    }[case]

    assert cli.main(argv) == 2

    line = _one_error_line(capsys.readouterr().err, argv[0])
    assert f"error: {option} '" in line and what in line, line
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written


# --------------------------------------------------------------------------- batch statuses


def test_batch_with_a_failed_case_exits_1_and_a_clean_rerun_exits_0(
    tmp_path, capsys, tiny_bundle, first_case
):
    broken = {**first_case, "case_id": "no_image", "image": str(tmp_path / "missing.png")}
    cohort = _write_manifest(tmp_path / "cohort.csv", [first_case, broken])
    out = tmp_path / "results.csv"
    argv = ["predict", str(cohort), "--out", str(out), "--bundle", str(tiny_bundle), "--no-progress"]

    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == f"1 of 2 cases predicted, 1 failed: {out}"
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["case_id"], r["status"]) for r in rows] == [
        (first_case["case_id"], "ok"),
        ("no_image", "error"),
    ]

    # The broken row removed, the rerun resumes: the finished case is not predicted again.
    _write_manifest(cohort, [first_case])
    assert cli.main(argv) == 0
    expected = f"1 of 1 cases predicted, 0 failed; 1 reused, 0 recomputed: {out}"
    assert capsys.readouterr().out.strip() == expected
