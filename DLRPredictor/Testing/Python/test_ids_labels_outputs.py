"""Case ids, label texts and output paths, end to end through `dlrpredictor` on real files.

- label texts: one rule (``base.labels.code_label``) in `report`, `predict` and `evaluate`: case
  and surrounding blanks ignored, any other text refused with its row (header = row 1);
- case ids (``base.case_ids``): control characters, NUL and a leading ``= + - @`` refused when
  the cohort CSV is read, so no CSV the project writes holds them; every id gets a distinct,
  valid scene file name;
- ``--scenes`` that cannot be written and ``train --out`` that is or holds an input: refused
  before any work, one stderr line, exit 2.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CONFIG
from DLRPredictorLib import cli
from DLRPredictorLib.base.case_ids import case_file_stem
from DLRPredictorLib.inputs import cohort_csv

LABELS = {"malignant": 1, "benign": 0}


def _one_error_line(stderr: str, command: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"dlrpredictor {command}: error: "), stderr
    return lines[0]


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _cohort(path: Path, first_case: dict[str, str], ids: list[str]) -> Path:
    """A cohort CSV of the first synthetic case under each id."""
    rows = [{**first_case, "case_id": cid} for cid in ids]
    return _write_csv(path, ["case_id", "image", "mask", "spacing_mm"], rows)


def _predict(cohort: Path, out: Path, bundle: Path, *options: str) -> list[str]:
    return ["predict", str(cohort), "--out", str(out), "--bundle", str(bundle), "--no-progress", *options]


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- labels (item 5)

# 16 rows: scores rise with malignancy; the label texts vary in case and blanks.
_SCORES = [0.91, 0.82, 0.77, 0.35, 0.66, 0.12, 0.25, 0.58, 0.44, 0.05, 0.71, 0.3, 0.62, 0.2, 0.86, 0.4]
_TRUTH = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1]
_SPELLINGS = {1: ["Malignant", " malignant ", "MALIGNANT"], 0: ["BENIGN", " Benign", "benign "]}


def _predictions(path: Path, labels: list[str]) -> Path:
    rows = [{"pathology": lab, "probability": repr(s)} for lab, s in zip(labels, _SCORES, strict=True)]
    return _write_csv(path, ["pathology", "probability"], rows)


def _mixed_labels() -> list[str]:
    return [_SPELLINGS[t][i % 3] for i, t in enumerate(_TRUTH)]


def _report(tmp_path: Path, csv_path: Path, name: str, *extra: str) -> list[str]:
    return [
        "report",
        str(csv_path),
        "--label",
        "pathology",
        "--scores",
        "probability",
        "--report",
        str(tmp_path / name),
        "--positive",
        "malignant",
        *extra,
    ]


def _metrics(folder: Path) -> dict:
    data = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in data.items() if k not in ("notes", "title", "generated_utc")}


def test_report_reads_labels_without_case_or_blanks_and_refuses_unknown_ones(tmp_path, capsys):
    mixed = _mixed_labels()
    assert {lab.strip().lower() for lab in mixed} == {"malignant", "benign"}
    assert len(set(mixed)) > 2  # several spellings of each class
    lower = ["malignant" if t else "benign" for t in _TRUTH]

    # Without the unknown label: the same metrics as the lower-case file.
    assert cli.main(_report(tmp_path, _predictions(tmp_path / "mixed.csv", mixed), "mixed")) == 0
    assert cli.main(_report(tmp_path, _predictions(tmp_path / "lower.csv", lower), "lower")) == 0
    capsys.readouterr()
    # Exact: the same rows once the labels are normalised, through the same code.
    assert _metrics(tmp_path / "mixed") == _metrics(tmp_path / "lower")
    assert _metrics(tmp_path / "mixed")["n_positive"] == sum(_TRUTH)

    # "unknown" on row 6 (the header is row 1): refused, never counted as a negative.
    with_unknown = _predictions(tmp_path / "unknown.csv", [*mixed[:4], "unknown", *mixed[5:]])
    assert cli.main(_report(tmp_path, with_unknown, "u1", "--negative", "benign")) == 2
    line = _one_error_line(capsys.readouterr().err, "report")
    assert line == (
        "dlrpredictor report: error: unknown.csv row 6: label 'unknown' in column 'pathology' is "
        "not one of '0', '1', 'malignant', 'benign' (1 such row(s))."
    )
    # Only the positive class named: two other values cannot both be the negative class.
    assert cli.main(_report(tmp_path, with_unknown, "u2")) == 2
    line = _one_error_line(capsys.readouterr().err, "report")
    assert "2 values besides the positive class 'malignant'" in line
    assert "'unknown' (row 6)" in line and "--negative" in line
    assert not (tmp_path / "u1").exists() and not (tmp_path / "u2").exists()


def test_cohort_csv_reads_labels_by_the_same_rule(tmp_path, first_case, capsys, tiny_bundle):
    columns = ["case_id", "image", "mask", "spacing_mm", "label"]
    rows = [
        {**first_case, "case_id": "c1", "label": " Malignant "},
        {**first_case, "case_id": "c2", "label": "BENIGN"},
        {**first_case, "case_id": "c3", "label": "1.0"},
    ]
    read = cohort_csv.read_cohort_csv(_write_csv(tmp_path / "ok.csv", columns, rows), label_values=LABELS)
    assert [r.label for r in read] == [1, 0, 1]

    bad = _write_csv(
        tmp_path / "bad.csv", columns, [*rows, {**first_case, "case_id": "c4", "label": "unknown"}]
    )
    out = tmp_path / "results.csv"
    assert cli.main(_predict(bad, out, tiny_bundle)) == 2
    line = _one_error_line(capsys.readouterr().err, "predict")
    assert line == (
        "dlrpredictor predict: error: manifest 'bad.csv' row 5 (case 'c4'): label 'unknown' is not "
        "one of '0', '1', 'malignant', 'benign'"
    )
    assert not out.exists()


# --------------------------------------------------------------------------- case ids (item 13)

# id -> the start of the one-line refusal (row 3 of the cohort CSV: the header is row 1, a good case row 2)
BAD_IDS = {
    "nul": ("a\x00b", "manifest 'cohort.csv' line 3 holds a NUL character"),
    "tab": ("a\tb", "manifest 'cohort.csv' row 3: the case_id holds a control character (U+0009)"),
    "newline": ("a\nb", "manifest 'cohort.csv' row 3: the case_id holds a control character (U+000A)"),
    "escape": ("a\x1b[31mb", "manifest 'cohort.csv' row 3: the case_id holds a control character (U+001B)"),
    "c1": ("a\x85b", "manifest 'cohort.csv' row 3: the case_id holds a control character (U+0085)"),
    "line_separator": (
        "a\u2028b",
        "manifest 'cohort.csv' row 3: the case_id holds a control character (U+2028)",
    ),
    "equals": ('=HYPERLINK("http://x")', "manifest 'cohort.csv' row 3: the case_id starts with '='"),
    "plus": ("+1+1", "manifest 'cohort.csv' row 3: the case_id starts with '+'"),
    "minus": ("-2+3", "manifest 'cohort.csv' row 3: the case_id starts with '-'"),
    "at": ("@SUM(A1)", "manifest 'cohort.csv' row 3: the case_id starts with '@'"),
}


@pytest.mark.parametrize("kind", sorted(BAD_IDS))
def test_predict_refuses_unsafe_case_ids_before_writing_any_csv(
    tmp_path, capsys, tiny_bundle, first_case, kind
):
    case_id, expected = BAD_IDS[kind]
    cohort = _cohort(tmp_path / "cohort.csv", first_case, ["ok1", case_id])
    assert cli.main(_predict(cohort, tmp_path / "results.csv", tiny_bundle)) == 2
    line = _one_error_line(capsys.readouterr().err, "predict")
    assert line.startswith(f"dlrpredictor predict: error: {expected}"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv"]  # no results, no journal


def test_a_formula_in_another_position_is_kept_and_written_verbatim(
    tmp_path, capsys, tiny_bundle, first_case
):
    # Only a leading = + - @ makes a spreadsheet formula; such characters inside an id are kept.
    ids = ["case=1", "a+b", "x-1", "me@site"]
    out = tmp_path / "results.csv"
    argv = _predict(_cohort(tmp_path / "cohort.csv", first_case, ids), out, tiny_bundle, "--jobs", "1")
    assert cli.main(argv) == 0
    with open(out, newline="", encoding="utf-8") as f:
        assert [r["case_id"] for r in csv.DictReader(f)] == ids
    # the rerun matches each id and reuses its row
    assert cli.main(argv) == 0
    assert "4 reused, 0 recomputed" in capsys.readouterr().out


# --------------------------------------------------------------------------- scene names (item 9)

SCENE_IDS = ["a/b", "a_b", "A", "a", ".hidden", "..", "x" * 300, "con", "Ünïcode", "a b"]


def test_scene_file_stems_are_distinct_and_valid():
    stems = [case_file_stem(cid) for cid in SCENE_IDS]
    assert len({s.casefold() for s in stems}) == len(SCENE_IDS)  # distinct, even case-insensitively
    for stem in stems:
        assert not stem.startswith(".") and "/" not in stem and "\\" not in stem
        assert len(f".{stem}-staging.mrb".encode()) < 255
        assert stem.isascii()
    assert case_file_stem("a_b") == "a_b" and case_file_stem("case12") == "case12"  # plain ids kept
    assert case_file_stem("a/b").startswith("a_b-") and len(case_file_stem("a/b")) == len("a_b-") + 12


def test_predict_writes_one_distinct_scene_per_case_id(tmp_path, capsys, tiny_bundle, first_case):
    ids = ["a/b", "a_b", "A", "a", ".hidden", "x" * 300]
    cohort = _cohort(tmp_path / "cohort.csv", first_case, ids)
    scenes = tmp_path / "scenes"
    argv = _predict(cohort, tmp_path / "results.csv", tiny_bundle, "--scenes", str(scenes), "--jobs", "2")
    assert cli.main(argv) == 0, capsys.readouterr()
    assert sorted(p.name for p in scenes.iterdir()) == sorted(f"{case_file_stem(c)}.mrb" for c in ids)
    assert all(p.stat().st_size > 0 for p in scenes.iterdir())


@pytest.mark.parametrize("kind", ["file", "below_a_file", "read_only"])
def test_unwritable_scenes_folder_is_refused_before_any_case(tmp_path, capsys, tiny_bundle, first_case, kind):
    cohort = _cohort(tmp_path / "cohort.csv", first_case, [first_case["case_id"]])
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    scenes = {"file": blocker, "below_a_file": blocker / "scenes", "read_only": tmp_path / "ro"}[kind]
    if kind == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        scenes.mkdir()
        scenes.chmod(0o555)
    out = tmp_path / "results.csv"
    try:
        assert cli.main(_predict(cohort, out, tiny_bundle, "--scenes", str(scenes))) == 2
    finally:
        if kind == "read_only":
            scenes.chmod(0o755)
    line = _one_error_line(capsys.readouterr().err, "predict")
    expected = "is a file, not a folder" if kind == "file" else "cannot be written"
    assert line.startswith(f"dlrpredictor predict: error: --scenes '{scenes}' {expected}"), line
    assert not out.exists()


# --------------------------------------------------------------------------- train --out (item 4)


@pytest.fixture
def train_inputs(tmp_path, synthetic_cohort):
    data = tmp_path / "data"
    shutil.copytree(synthetic_cohort.parent, data)
    config = tmp_path / "conf" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text(TINY_CONFIG)
    manifest = data / synthetic_cohort.name
    image = cohort_csv.read_cohort_csv(manifest, clinical_names=None, label_values=LABELS)[0].resolved_image
    return tmp_path, manifest, config, image


@pytest.mark.parametrize(
    "case", ["manifest", "image", "config", "manifest_folder", "above_everything", "work_is_manifest"]
)
def test_train_refuses_an_out_that_is_or_holds_an_input_before_any_work(capsys, train_inputs, case):
    root, manifest, config, image = train_inputs
    out, work, option, what, shown = {
        "manifest": (manifest, None, "--out", "is the input", manifest),
        "image": (image, None, "--out", "is the input", image),
        "config": (config, None, "--out", "is the input", config),
        "manifest_folder": (manifest.parent, None, "--out", "holds the input", manifest),
        "above_everything": (root, None, "--out", "holds the input", manifest),
        "work_is_manifest": (root / "new_bundle", manifest, "--work", "is the input", manifest),
    }[case]
    before = _files(root)
    argv = ["train", str(manifest), "--out", str(out), "--config", str(config)]
    argv += ["--work", str(work)] if work else []
    assert cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    target = work if work else out
    assert line.startswith(f"dlrpredictor train: error: {option} '{target}' {what} '{shown}'"), line
    assert _files(root) == before
    assert sorted(p.name for p in root.iterdir()) == ["conf", "data"]  # no <out>.work folder either


def test_train_refuses_an_unsafe_case_id_before_any_work(capsys, train_inputs):
    root, manifest, config, _ = train_inputs
    text = manifest.read_text(encoding="utf-8").splitlines()
    text[3] = "@" + text[3]  # the case id of row 4
    manifest.write_text("\n".join(text) + "\n", encoding="utf-8")
    assert cli.main(["train", str(manifest), "--out", str(root / "b"), "--config", str(config)]) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert f"manifest '{manifest.name}' row 4: the case_id starts with '@'" in line
    assert sorted(p.name for p in root.iterdir()) == ["conf", "data"]


def test_label_rule_helpers_agree_with_the_readers():
    from DLRPredictorLib.base.labels import code_label, label_codes

    codes = label_codes(LABELS)
    got = [
        code_label(t, codes)
        for t in ["Malignant", " malignant ", "BENIGN", "0", "1.0", "unknown", "2", "nan"]
    ]
    assert got == [1, 1, 0, 0, 1, None, None, None]
    assert np.array_equal(np.array(got[:5]), np.array([1, 1, 0, 0, 1]))
