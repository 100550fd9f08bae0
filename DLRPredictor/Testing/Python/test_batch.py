"""Cohort prediction from a manifest: per-case errors, order, resume, determinism, worker crashes, scenes.

Everything runs for real: a bundle trained on synthetic cases, spawned worker processes, files on
disk. Worker processes cost a few seconds each to start, so the runs are shared where one run can
answer several questions.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib.cohort import batch, pool
from DLRPredictorLib.cohort import journal as journal_mod
from DLRPredictorLib.cohort import rows as rows_mod
from DLRPredictorLib.inputs import cohort_csv as manifest
from DLRPredictorLib.scene import scene_io

LABELS = {"malignant": 1, "benign": 0}  # label texts of the synthetic cohort
N_GOOD = 3
COLUMNS = ["case_id", "image", "mask", "spacing_mm", "age", "birads"]


def _crash_on_marked_case(job: dict) -> dict:
    """A worker that dies like a library fault (no exception, no cleanup) on cases named crash*."""
    if job["case_id"].startswith("crash"):
        os._exit(70)
    return pool._predict_row(job)


def _report_worker_state(job: dict) -> dict:
    """A worker that reports how it was started instead of predicting."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_info

    pred = pool._WORKER["predictor"]
    return {
        "case_id": job["case_id"],
        "parent": os.getppid(),
        "radiomics_preloaded": "radiomics.featureextractor" in sys.modules,
        "torch_imported": "torch" in sys.modules,
        "blas_threads": sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}),
        "itk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
        "concurrent_branches": pred.concurrent_branches,
        "pid": os.getpid(),
    }


def _run_two_workers(jobs: list[dict], bundle: Path, bundle_id: str, worker) -> list[dict]:
    """The rows of ``pool.run_pool`` with two single-threaded workers running ``worker``."""
    rows: list[dict] = []
    pool.run_pool(jobs, 2, (str(bundle), 1, None, False), rows.append, bundle_id=bundle_id, worker=worker)
    return rows


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _scores(rows: list[dict[str, str]]) -> dict[str, tuple[str, ...]]:
    """Case -> the result cells that must be reproduced exactly (as text).

    Bit-identity holds by design: every case runs the same code, pyradiomics on one SimpleITK
    thread and the network on one BLAS thread per crop (README, deep_features._threads_for), so the
    digits do not depend on the worker count, on resuming, or on the calling process.
    """
    keys = [
        "probability",
        "predicted_label",
        "model_used",
        "score_rad",
        "score_dl",
        "score_dlr",
        "score_combined",
    ]
    return {r["case_id"]: tuple(r.get(k, "") for k in keys) for r in rows if r["status"] == "ok"}


@pytest.fixture(scope="module")
def bundle_id(tiny_bundle: Path) -> str:
    doc = json.loads((tiny_bundle / "manifest.json").read_text())
    return f"{doc['id']}@{doc['version']}"


@dataclass(frozen=True)
class Cohort:
    """Good synthetic cases (absolute paths, valid clinical values) and one row per kind of breakage."""

    good: list[dict[str, str]]
    broken: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, synthetic_cohort: Path) -> Cohort:
    rows = manifest.read_cohort_csv(synthetic_cohort, clinical_names=None, label_values=LABELS)[:N_GOOD]
    good_rows = [
        {
            "case_id": r.case_id,
            "image": str(r.resolved_image),
            "mask": str(r.resolved_mask),
            "spacing_mm": "" if r.spacing_mm is None else repr(r.spacing_mm),
            "age": str(50 + 5 * i),
            "birads": ("3", "4a", "5")[i % 3],
        }
        for i, r in enumerate(rows)
    ]
    folder = tmp_path_factory.mktemp("broken")
    good = good_rows[0]
    rows_px, cols_px = sitk.GetArrayFromImage(sitk.ReadImage(good["image"])).shape[:2]
    empty = folder / "empty_mask.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((rows_px, cols_px), np.uint8)), str(empty))
    wrong = np.zeros((rows_px + 7, cols_px + 5), np.uint8)
    wrong[10:30, 10:30] = 255
    wrong_size = folder / "wrong_size_mask.png"
    sitk.WriteImage(sitk.GetImageFromArray(wrong), str(wrong_size))
    garbage = folder / "garbage.png"
    garbage.write_bytes(b"this is not a picture\n" * 20)
    broken = {
        "missing_image": {**good, "case_id": "missing_image", "image": str(folder / "nowhere.png")},
        "empty_mask": {**good, "case_id": "empty_mask", "mask": str(empty)},
        "wrong_size_mask": {**good, "case_id": "wrong_size_mask", "mask": str(wrong_size)},
        "unreadable_image": {**good, "case_id": "unreadable_image", "image": str(garbage)},
        "age_out_of_range": {**good, "case_id": "age_out_of_range", "age": "250"},
    }
    return Cohort(good_rows, broken)


# What each broken case's one-line message must say (what is wrong, with which input).
EXPECTED_MESSAGES = {
    "missing_image": ("nowhere.png", "does not exist"),
    "empty_mask": ("empty_mask.png", "empty"),
    "wrong_size_mask": ("wrong_size_mask.png", "same size"),
    "unreadable_image": ("garbage.png", "cannot read image"),
    "age_out_of_range": ("Age", "250"),
}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_bundle, cohort) -> list[dict[str, str]]:
    """The good cases predicted by two workers: every other run (one worker, resumed, with scenes,
    after a crash) must give exactly the same text in every result cell."""
    folder = tmp_path_factory.mktemp("reference")
    m = _write_manifest(folder / "good.csv", cohort.good)
    summary = batch.predict_cohort(m, folder / "results.csv", tiny_bundle, jobs=2, show_progress=False)
    assert (summary.n_cases, summary.n_ok, summary.n_error, summary.n_skipped) == (N_GOOD, N_GOOD, 0, 0)
    rows = _read_csv(folder / "results.csv")
    # Manifest order, not the order in which the two workers finished.
    assert [r["case_id"] for r in rows] == [g["case_id"] for g in cohort.good]
    return rows


# --------------------------------------------------------------------------- per-case errors


def test_mixed_cohort_reports_each_broken_case_in_its_row_and_writes_scenes(
    tmp_path, tiny_bundle, bundle_id, cohort, reference_run
):
    good_rows, broken = cohort.good, list(cohort.broken.values())
    order = [good_rows[0], broken[0], broken[1], good_rows[1], broken[2], broken[3], good_rows[2], broken[4]]
    m = _write_manifest(tmp_path / "mixed.csv", order)
    out = tmp_path / "out" / "results.csv"
    scenes = tmp_path / "scenes"

    summary = batch.predict_cohort(m, out, tiny_bundle, jobs=1, scenes_dir=scenes, show_progress=False)

    assert (summary.n_cases, summary.n_ok, summary.n_error) == (8, N_GOOD, 5)
    rows = _read_csv(out)
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in order]
    assert not (out.parent / "results.csv.journal").exists()
    by_id = {r["case_id"]: r for r in rows}
    for good in good_rows:
        row = by_id[good["case_id"]]
        assert row["status"] == "ok" and row["error"] == ""
        assert 0.0 <= float(row["probability"]) <= 1.0
        assert row["bundle_id"] == bundle_id
        assert row["model_used"].startswith("Combined")  # age and BI-RADS given
    for case_id, (where, what) in EXPECTED_MESSAGES.items():
        row = by_id[case_id]
        message = row["error"]
        assert row["status"] == "error", case_id
        assert row["probability"] == "", case_id
        assert "\n" not in message and "\r" not in message, case_id
        assert where in message and what in message, (case_id, message)
        assert "internal error" not in message and "Traceback" not in message, (case_id, message)
    # One worker with scenes (Grad-CAM computed too) gives the very digits of two workers without
    # (same code path, guaranteed digits: see _scores).
    assert _scores(rows) == _scores(reference_run)

    # One scene per successful case, none for the failed ones; each reloads with all its parts.
    assert sorted(p.name for p in scenes.iterdir()) == sorted(f"{g['case_id']}.mrb" for g in good_rows)
    for good in good_rows:
        loaded = scene_io.load_scene(scenes / f"{good['case_id']}.mrb")
        try:
            _check_case_scene(loaded, good, by_id[good["case_id"]])
        finally:
            loaded.Clear(1)


def _nodes(scene, class_name: str) -> list:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def _check_case_scene(scene, good: dict[str, str], row: dict[str, str]) -> None:
    volumes = [n for n in _nodes(scene, "vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]
    image = next(n for n in volumes if n.GetName() == "Image")
    heatmap = next(n for n in volumes if n.GetAttribute("DLRPredictor.table") == "heatmap")
    image_array = scene_io.image_from_volume_node(image).array
    expected = sitk.GetArrayFromImage(sitk.ReadImage(good["image"])).astype(np.float32)
    np.testing.assert_array_equal(image_array[0], expected)  # integer grey levels: exact in float32
    assert heatmap.GetImageData().GetDimensions() == image.GetImageData().GetDimensions()

    (segmentation,) = _nodes(scene, "vtkMRMLSegmentationNode")
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Lesion")
    mask = scene_io.mask_from_segment(segmentation, segment_id, image)
    expected_mask = sitk.GetArrayFromImage(sitk.ReadImage(good["mask"])) != 0
    np.testing.assert_array_equal(mask[0] != 0, expected_mask)

    tables = {n.GetAttribute("DLRPredictor.table"): n for n in _nodes(scene, "vtkMRMLTableNode")}
    assert tables["features"].GetNumberOfRows() > 20
    assert tables["features"].GetColumnName(3) == "Feature Name"
    items = dict(scene_io.read_key_value_table(tables["key-value"]))
    (probability_key,) = [k for k in items if k.startswith("Probability (")]
    assert items[probability_key] == row["probability"]  # exactly the CSV's number (same repr() text)


# --------------------------------------------------------------------------- resume


def _interrupt_after(monkeypatch, n_rows: int) -> None:
    """Make the driver stop like Ctrl-C right after the n-th journal row is safely on disk."""
    original = journal_mod.Journal.write
    written = []

    def write(self, row):
        original(self, row)
        written.append(row["case_id"])
        if len(written) >= n_rows:
            raise KeyboardInterrupt

    monkeypatch.setattr(journal_mod.Journal, "write", write)


def test_interrupted_runs_resume_to_exactly_one_row_per_case(
    tmp_path, monkeypatch, tiny_bundle, cohort, reference_run
):
    good_rows = cohort.good
    order = [good_rows[0], good_rows[1], cohort.broken["empty_mask"], good_rows[2]]
    m = _write_manifest(tmp_path / "cohort.csv", order)
    out = tmp_path / "results.csv"
    journal = tmp_path / "results.csv.journal"
    # A results file left by an older model: its answers must not be taken for this bundle's.
    stale = [{**r, "bundle_id": "older-model@0.9", "probability": "0.5"} for r in reference_run]
    rows_mod.write_csv_atomic(out, stale, list(reference_run[0]))
    stale_text = out.read_text()

    # Two interruptions in a row, one finished case each: the first in the worker pool, the
    # second in the calling process (same journal; this also saves starting another worker).
    # One worker: with two, which case finishes first is a race.
    runs = (functools.partial(batch.predict_cohort, jobs=1), batch.predict_cohort_in_process)
    for n_done, run in enumerate(runs, start=1):
        with monkeypatch.context() as patch:
            _interrupt_after(patch, 1)
            with pytest.raises(KeyboardInterrupt):
                run(m, out, tiny_bundle, show_progress=False)
        assert out.read_text() == stale_text  # the results file is only replaced by a finished run
        assert [r["case_id"] for r in _read_csv(journal)] == [g["case_id"] for g in good_rows[:n_done]]
    # A kill in the middle of a write leaves a torn last line: it must not count as a result, even
    # when what is there parses as a whole row of this bundle (here cut before its last cell).
    torn = io.StringIO()
    csv.DictWriter(torn, fieldnames=list(reference_run[0])).writerow(
        {**reference_run[2], "probability": "0.123"}
    )
    with open(journal, "a", encoding="utf-8", newline="") as f:
        f.write(torn.getvalue().rstrip("\r\n"))

    summary = batch.predict_cohort(m, out, tiny_bundle, jobs=1, show_progress=False)

    rows = _read_csv(out)
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in order]
    assert summary.n_skipped == 2  # one case from each interrupted run, none from the stale file
    assert (summary.n_ok, summary.n_error) == (N_GOOD, 1)
    assert rows[2]["status"] == "error" and "empty" in rows[2]["error"]
    # Neither 0.5 (older model) nor 0.123 (torn line) was taken: every answer is this bundle's
    # (resumed or not, the same digits: see _scores).
    assert _scores(rows) == _scores(reference_run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv", "results.csv"]  # no leftovers


def test_rerun_reuses_a_row_only_when_everything_that_determines_it_is_unchanged(
    tmp_path, tiny_bundle, cohort
):
    """A corrected manifest (BI-RADS typo, another mask), a mask replaced in place or another bundle
    under the same id@version: those rows are predicted again; a row whose files are byte-identical
    (even under another path) and whose values are the same is reused."""
    a, b, c = (dict(g) for g in cohort.good)
    mask_b = tmp_path / f"b_{Path(b['mask']).name}"
    mask_b.write_bytes(Path(b["mask"]).read_bytes())
    b["mask"] = str(mask_b)
    c["birads"] = "3"  # the typo
    m = _write_manifest(tmp_path / "cohort.csv", [a, b, c])
    out = tmp_path / "results.csv"
    first = batch.predict_cohort_in_process(m, out, tiny_bundle, show_progress=False)
    assert (first.n_ok, first.n_skipped, first.recomputed) == (3, 0, {})
    before = {r["case_id"]: r for r in _read_csv(out)}
    assert all(len(r["input_digest"]) == 64 for r in before.values())

    # The user fixes the manifest: c's BI-RADS, a's image now named through a byte-identical copy
    # (same content: still reusable), and b's mask file is replaced in place by a smaller lesion.
    c["birads"] = "5"
    image_a = tmp_path / f"a_{Path(a['image']).name}"
    image_a.write_bytes(Path(a["image"]).read_bytes())
    a["image"] = str(image_a)
    original = sitk.ReadImage(str(mask_b))
    pixels = sitk.GetArrayFromImage(original)
    top = int(np.argwhere(pixels)[:, -2].min())
    pixels[..., top : top + 2, :] = 0  # two rows off the top of the lesion
    smaller = sitk.GetImageFromArray(pixels)
    smaller.CopyInformation(original)
    sitk.WriteImage(smaller, str(mask_b))
    _write_manifest(m, [a, b, c])

    rerun = batch.predict_cohort_in_process(m, out, tiny_bundle, show_progress=False)

    assert (rerun.n_ok, rerun.n_skipped, rerun.recomputed) == (3, 1, {"inputs changed": 2})
    line = f"3 of 3 cases predicted, 0 failed; 1 reused, 2 recomputed (2 inputs changed): {out}"
    assert rerun.line() == line
    after = {r["case_id"]: r for r in _read_csv(out)}
    assert after[a["case_id"]] == before[a["case_id"]]
    fresh = tmp_path / "fresh.csv"
    batch.predict_cohort_in_process(m, fresh, tiny_bundle, show_progress=False)
    assert _read_csv(out) == _read_csv(fresh)  # every cell as a run from scratch gives it
    for case in (b, c):
        assert after[case["case_id"]]["probability"] != before[case["case_id"]]["probability"]

    # Another bundle with the same id@version (here only its manifest's title differs): nothing is
    # reused, because the bundle's content digest is part of every row's fingerprint.
    other = tmp_path / "same_id_other_bundle"
    shutil.copytree(tiny_bundle, other)
    doc = json.loads((other / "manifest.json").read_text())
    doc["title"] = f"{doc.get('title', doc['id'])} (rebuilt)"
    (other / "manifest.json").write_text(json.dumps(doc, indent=1))
    again = batch.predict_cohort_in_process(m, out, other, show_progress=False)
    assert (again.n_skipped, again.recomputed) == (0, {"inputs changed": 3})
    assert {r["bundle_id"] for r in _read_csv(out)} == {after[a["case_id"]]["bundle_id"]}


def test_rows_written_before_fingerprints_are_predicted_again(tmp_path, tiny_bundle, cohort, reference_run):
    m = _write_manifest(tmp_path / "cohort.csv", cohort.good)
    out = tmp_path / "results.csv"
    old = [{k: v for k, v in r.items() if k != "input_digest"} for r in reference_run]
    rows_mod.write_csv_atomic(out, old, [k for k in reference_run[0] if k != "input_digest"])

    summary = batch.predict_cohort_in_process(m, out, tiny_bundle, show_progress=False)

    assert (summary.n_skipped, summary.recomputed) == (0, {"no input digest": N_GOOD})
    assert _scores(_read_csv(out)) == _scores(reference_run)


def _assert_metrics_are_those_of_the_predicted_labels(metrics: dict, rows: list[dict], positive: str) -> None:
    """The report's sensitivity / specificity equal a count of each row's own predicted label."""
    truth = [int(r["label"]) for r in rows]
    called = [r["predicted_label"] == positive for r in rows]  # the labels the user was given
    tp = sum(c and t == 1 for c, t in zip(called, truth, strict=True))
    tn = sum(not c and t == 0 for c, t in zip(called, truth, strict=True))
    n_pos, n_neg = sum(truth), len(truth) - sum(truth)
    m = metrics["metrics"]
    assert (m["n"], m["sensitivity_num"], m["sensitivity_den"]) == (len(rows), tp, n_pos)
    assert (m["specificity_num"], m["specificity_den"]) == (tn, n_neg)
    # Tolerance: the test's own division against the report's (the counts above are exact).
    assert (m["sensitivity"], m["specificity"]) == pytest.approx((tp / n_pos, tn / n_neg), rel=1e-12, abs=0)


def test_evaluate_scores_each_row_at_the_cutoff_of_the_model_that_labelled_it(
    tmp_path, tiny_bundle, synthetic_cohort
):
    """Rows with clinical values are called by the combined model, rows without by the image-only
    model, each at its own cutoff: the report's sensitivity and specificity of 'probability' are
    those of the predicted labels in the results CSV (mixed cohort, and a cohort without any
    clinical values, where the combined model's cutoff was wrongly applied)."""
    from DLRPredictorLib.evaluation import report_csv

    rows = manifest.read_cohort_csv(synthetic_cohort, clinical_names=None, label_values=LABELS)[:10]
    cases = [
        {
            "case_id": r.case_id,
            "image": str(r.resolved_image),
            "mask": str(r.resolved_mask),
            "spacing_mm": "" if r.spacing_mm is None else repr(r.spacing_mm),
            "age": str(45 + 3 * i) if i % 2 == 0 else "",
            "birads": ("3", "4a", "4c", "5")[i % 4] if i % 2 == 0 else "",
            "label": r.label_raw,
        }
        for i, r in enumerate(rows)
    ]
    doc = json.loads((tiny_bundle / "manifest.json").read_text())
    positive = doc["task"]["positive_class"]
    for name, subset in (("mixed", cases), ("no_clinical", cases[1::2])):
        with open(tmp_path / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "label"])
            writer.writeheader()
            writer.writerows(subset)

    # Mixed cohort: two models, two cutoffs. evaluate compares every score on the same cases, so
    # 'probability' is scored on the rows that have the combined score; 'report' over probability
    # and the image-only score uses every row, each at its own cutoff.
    report = batch.evaluate_cohort(tmp_path / "mixed.csv", tmp_path / "mixed", tiny_bundle, jobs=1)
    results = _read_csv(tmp_path / "mixed_predictions.csv")
    assert all(r["status"] == "ok" for r in results)
    assert len({(r["model_used"], r["cutoff"]) for r in results}) == 2
    scored = json.loads((report / "metrics.json").read_text())["scores"]["probability"]
    with_combined = [r for r in results if r["score_combined"]]
    _assert_metrics_are_those_of_the_predicted_labels(scored, with_combined, positive)
    both = report_csv.report_from_predictions_csv(
        tmp_path / "mixed_predictions.csv", "label", ["probability", "score_dlr"], tmp_path / "both"
    )
    scored = json.loads((both / "metrics.json").read_text())["scores"]["probability"]
    assert scored["cutoff"] is None and scored["cutoff_source"].startswith("pre-specified per case")
    _assert_metrics_are_those_of_the_predicted_labels(scored, results, positive)

    # No clinical values at all: every row is the image-only model's, at its cutoff.
    report = batch.evaluate_cohort(tmp_path / "no_clinical.csv", tmp_path / "none", tiny_bundle, jobs=1)
    results = _read_csv(tmp_path / "none_predictions.csv")
    (cutoff,) = {r["cutoff"] for r in results}
    assert {r["model_used"] for r in results} == {"DLR (image only)"}
    scored = json.loads((report / "metrics.json").read_text())["scores"]["probability"]
    # Exact: both hold the same cutoff, written as repr() text to the CSV and to JSON.
    assert (scored["cutoff"], scored["cutoff_source"]) == (float(cutoff), "pre-specified")
    _assert_metrics_are_those_of_the_predicted_labels(scored, results, positive)


# --------------------------------------------------------------------------- worker crash


def test_a_crashing_worker_fails_only_its_own_case(tiny_bundle, bundle_id, cohort, reference_run):
    jobs = [
        {
            "case_id": g["case_id"],
            "image": g["image"],
            "mask": g["mask"],
            "segment": None,
            "spacing_mm": float(g["spacing_mm"]) if g["spacing_mm"] else None,
            "label": "",
            "clinical": {"age": g["age"], "birads": g["birads"]},
        }
        for g in cohort.good
    ]
    jobs.insert(1, {**jobs[0], "case_id": "crash_case"})  # in flight together with jobs[0]
    rows = _run_two_workers(jobs, tiny_bundle, bundle_id, _crash_on_marked_case)

    assert sorted(r["case_id"] for r in rows) == sorted(j["case_id"] for j in jobs)  # one row each
    by_id = {r["case_id"]: r for r in rows}
    crashed = by_id.pop("crash_case")
    assert crashed["status"] == "error"
    assert crashed["error"] == pool.CRASH_MESSAGE and "\n" not in crashed["error"]
    assert crashed["bundle_id"] == bundle_id
    # Same digits as the reference run (see _scores).
    assert {cid: (r["status"], r.get("probability")) for cid, r in by_id.items()} == {
        r["case_id"]: ("ok", r["probability"]) for r in reference_run
    }


# --------------------------------------------------------------------------- in the calling process


def test_in_process_run_gives_the_workers_results_and_isolates_case_errors(
    tmp_path, tiny_bundle, cohort, reference_run
):
    order = [cohort.good[0], cohort.broken["missing_image"], *cohort.good[1:]]
    m = _write_manifest(tmp_path / "cohort.csv", order)

    summary = batch.predict_cohort_in_process(m, tmp_path / "results.csv", tiny_bundle, show_progress=False)

    rows = _read_csv(tmp_path / "results.csv")
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in order]
    assert (summary.n_ok, summary.n_error) == (N_GOOD, 1)
    assert "does not exist" in rows[1]["error"]
    assert _scores(rows) == _scores(reference_run)  # same digits as the worker processes (see _scores)


def test_in_process_predict_job_errors_become_rows(tmp_path, tiny_bundle, cohort):
    from DLRPredictorLib.base.errors import LesionError

    m = _write_manifest(tmp_path / "cohort.csv", cohort.good)
    first, second = cohort.good[0]["case_id"], cohort.good[1]["case_id"]

    def predict_job(pred, job):
        if job["case_id"] == first:
            raise LesionError("the lesion touches the image border on every side")
        if job["case_id"] == second:
            raise RuntimeError("a bug\nwith two lines")
        return rows_mod.predict_cohort_row(pred, job)

    summary = batch.predict_cohort_in_process(
        m, tmp_path / "results.csv", tiny_bundle, predict_job=predict_job, show_progress=False
    )

    rows = {r["case_id"]: r for r in _read_csv(tmp_path / "results.csv")}
    assert (summary.n_ok, summary.n_error) == (N_GOOD - 2, 2)
    assert rows[first]["error"] == "the lesion touches the image border on every side"
    assert rows[second]["error"] == "internal error (RuntimeError: a bug with two lines); please report it"
    assert rows[cohort.good[2]["case_id"]]["status"] == "ok"


# --------------------------------------------------------------------------- workers


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (3, 3), (16, 4)])
def test_default_jobs_is_one_worker_per_core_at_most_four(monkeypatch, cores, expected):
    monkeypatch.setattr(pool, "usable_cores", lambda: cores)
    assert pool.default_jobs() == expected


def test_usable_cores_are_the_affinity_else_the_count(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    assert pool.usable_cores() == 2
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert pool.usable_cores() == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is used on Linux only")
def test_workers_are_single_threaded_forks_of_a_preloaded_server(tiny_bundle, bundle_id):
    jobs = [{"case_id": f"case{i}"} for i in range(6)]
    rows = _run_two_workers(jobs, tiny_bundle, bundle_id, _report_worker_state)
    assert sorted(r["case_id"] for r in rows) == [j["case_id"] for j in jobs]
    parents = {r["parent"] for r in rows}
    assert len(parents) == 1 and os.getpid() not in parents  # children of the fork server, not ours
    # pyradiomics was imported by the server before the fork, never by the worker's own jobs
    assert all(r["radiomics_preloaded"] for r in rows)
    assert all(r["blas_threads"] == [1] and r["itk_threads"] == 1 for r in rows)
    assert not any(r["torch_imported"] for r in rows)  # the network runs in numpy
    assert not any(r["concurrent_branches"] for r in rows)
