"""Cohort CSV rows in, results CSV rows out: one case's job, its prediction, its results row.

A job is a plain, picklable dict made from a :class:`CohortRow` (it crosses into the worker
processes). A results row has the columns of :func:`result_columns`; numbers are written with
``repr`` so that rerunning gives byte-identical files. A failed case gets an :func:`error_row`:
its message on one line, never a traceback.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base.case_ids import case_file_stem
from ..base.errors import DLRError
from ..deep.heatmap import DEFAULT_HEATMAP
from ..inference.predictor import Predictor
from ..inference.results import CasePrediction
from ..inputs.cohort_csv import CohortRow

#: One case: ``(predictor, job) -> CasePrediction``; raises DLRError for a per-case problem.
PredictJob = Callable[[Any, dict[str, Any]], Any]

BASE_COLUMNS = [
    "case_id",
    "status",
    "error",
    "probability",
    "predicted_label",
    "cutoff",
    "model_used",
    "bundle_id",
]
EXTRA_COLUMNS = [
    "total_points",
    "out_of_distribution",
    "ood_distance",
    "stability_min",
    "stability_max",
    "stability_label_changes",
    "warnings",
]


def job_from_cohort_row(row: CohortRow, site_column: str | None = None) -> dict[str, Any]:
    """A picklable job description from a row of the cohort CSV.

    Args:
        row: the validated row.
        site_column: the bundle's harmonisation column (``Predictor.harmonisation_column``): the
            row's value in it becomes the job's ``site`` (None when the cell is empty or absent).

    Returns:
        case_id, image, mask, segment, spacing_mm, label ("" when none) and clinical values.
    """
    return {
        "case_id": row.case_id,
        "image": str(row.resolved_image),
        "mask": str(row.resolved_mask),
        "segment": row.segment,
        "spacing_mm": row.spacing_mm,
        # a K-class bundle's manifest labels are class names, kept as written (label_raw)
        "label": row.label if row.label is not None else (row.label_raw or ""),
        "clinical": dict(row.clinical),
        **({"site": _site(row, site_column)} if site_column else {}),
    }


def _site(row: CohortRow, column: str) -> str | None:
    value = str(row.extra.get(column) or row.clinical.get(column) or "").strip()
    return value or None


def predict_cohort_row(
    pred: Predictor,
    job: dict[str, Any],
    stability: bool = False,
    scenes_dir: Path | None = None,
    heatmap_kind: str = DEFAULT_HEATMAP,
) -> CasePrediction:
    """Read one cohort case from disk and predict it; optionally write its .mrb scene.

    Args:
        pred: the loaded bundle.
        job: from :func:`job_from_cohort_row`.
        stability: also predict on eroded / dilated contours.
        scenes_dir: when given, the case's scene is written there as ``<stem>.mrb``, the stem
            being ``base.case_ids.case_file_stem`` of the case id (the id itself when it is a
            plain lower-case name; else a cleaned id plus a digest of it); the heatmap is
            computed only then.
        heatmap_kind: the score the scene's heatmap explains (``deep.heatmap.HEATMAP_KINDS``);
            it changes the scene only, never the results row.

    Returns:
        The prediction.

    Raises:
        DLRError: an unreadable image or mask, or an unusable lesion or clinical value.
    """
    from ..inputs import images, lesion

    volume = images.read_image(job["image"], spacing_mm=job.get("spacing_mm"))
    mask = lesion.read_mask(job["mask"], volume, segment=job.get("segment") or None)
    result = pred.predict(
        volume,
        mask,
        job.get("clinical"),
        stability=stability,
        heatmap=scenes_dir is not None,
        heatmap_kind=heatmap_kind,
        case=job["case_id"],
        site=job.get("site"),
    )
    if scenes_dir is not None:
        from ..scene.case_scene import write_case_scene

        path = Path(scenes_dir) / f"{case_file_stem(job['case_id'])}.mrb"
        write_case_scene(path, volume, mask, pred, result)
    return result


def result_columns(pred: Predictor) -> list[str]:
    """Columns of the results CSV for this bundle (one score column per signature).

    ``input_digest`` comes after ``label``: the fingerprint a rerun compares before it
    reuses the row (``fingerprint``); it is in the results file, not only in the journal, because
    a finished run deletes its journal and a rerun after a corrected manifest reads the file.
    ``bundle_digest`` comes last: the verified bundle's content digest (``bundle.trust``).
    """
    scores = [f"score_{s}" for s in pred.signature_names]
    base = list(BASE_COLUMNS)
    if pred.pipeline.calibration is not None:  # the model's own probability beside the recalibrated one
        base.insert(base.index("probability") + 1, "probability_uncalibrated")
    if pred.classes is not None:  # K-class: every class's probability, as `report --classes` reads them
        at = base.index("probability") + 1
        base[at:at] = [f"probability:{c}" for c in pred.classes]
    return [*base, *scores, *EXTRA_COLUMNS, "label", "input_digest", "bundle_digest"]


def _fmt(x: float | None) -> str:
    # repr() of a float round-trips exactly: rerunning gives byte-identical files.
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def result_row(pred: Predictor, case_id: str, res: CasePrediction, label: Any = "") -> dict[str, Any]:
    """One results-CSV row for a successful prediction."""
    row: dict[str, Any] = {
        "case_id": case_id,
        "status": "ok",
        "error": "",
        "probability": _fmt(res.probability),
        "predicted_label": res.label,
        "cutoff": _fmt(res.cutoff),
        "model_used": res.model_used,
        "bundle_id": pred.bundle_id,
        "total_points": _fmt(res.total_points),
        "out_of_distribution": str(res.out_of_distribution).lower(),
        "ood_distance": _fmt(res.ood_distance),
        "warnings": " | ".join(res.warnings),
        "label": label,
        "bundle_digest": pred.bundle_digest,
    }
    if res.probability_uncalibrated is not None:
        row["probability_uncalibrated"] = _fmt(res.probability_uncalibrated)
    for name, p in (res.class_probabilities or {}).items():
        row[f"probability:{name}"] = _fmt(p)
    for name in pred.signature_names:
        row[f"score_{name}"] = _fmt(res.signature_scores.get(name))
    if res.stability is not None:
        row["stability_min"] = _fmt(min(res.stability.probabilities))
        row["stability_max"] = _fmt(max(res.stability.probabilities))
        row["stability_label_changes"] = str(res.stability.label_changes).lower()
    return row


def error_row(job: dict[str, Any], message: str, bundle_id: str = "") -> dict[str, Any]:
    """A results row for a failed case: one line, no traceback."""
    return {
        "case_id": job["case_id"],
        "status": "error",
        "error": " ".join(str(message).split()),
        "bundle_id": bundle_id,
        "label": job.get("label", ""),
    }


def safe_row(pred: Any, job: dict[str, Any], predict_job: PredictJob) -> dict[str, Any]:
    """The results row of one case: its prediction, or its error as one line; never raises.

    Args:
        pred: the loaded bundle.
        job: from :func:`job_from_cohort_row`.
        predict_job: predicts the case, e.g. :func:`predict_cohort_row`.

    Returns:
        :func:`result_row` or :func:`error_row`.
    """
    try:
        result = predict_job(pred, job)
        return result_row(pred, job["case_id"], result, job.get("label"))
    except DLRError as exc:
        return error_row(job, str(exc), pred.bundle_id)
    except Exception as exc:  # a bug must not stop the cohort; its row says what happened
        message = f"internal error ({type(exc).__name__}: {exc}); please report it"
        return error_row(job, message, pred.bundle_id)


def write_csv_atomic(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write a CSV to a temporary sibling and rename it into place (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or Ctrl-C leaves no half-written temporary file
        raise
