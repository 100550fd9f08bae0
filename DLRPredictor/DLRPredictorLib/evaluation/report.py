"""Evaluation report: every metric per score, as HTML with PNG figures, CSV and JSON.

:func:`evaluate_scores` computes the metrics (discrimination, cutoff metrics, calibration,
decision curves, pairwise DeLong tests); :func:`write_report` writes them as a report folder
(tables: :mod:`.report_tables`, figures: :mod:`.report_figures`, page: :mod:`.report_html`).
Cutoffs are never chosen on the data being scored unless the caller asks for it explicitly
(``optimistic_youden=True``), and such cutoffs are labelled "optimistic" everywhere they appear.
A report is written into a temporary folder next to the destination and renamed into place at the
end, so that a failure leaves no half-written report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import InputError
from ..base.json_values import to_json_value
from ..base.labels import validate_labels
from ..base.version import __version__
from . import report_figures, report_html, report_tables, subgroups
from .auc import auc_delong, pairwise_delong, roc_curve_points
from .bootstrap import BootstrapSettings
from .calibration import calibration, hosmer_lemeshow
from .cutoff_metrics import binary_metrics, youden_cutoff
from .decision_curve import decision_curve
from .reader import compare_with_reader
from .report_intervals import add_intervals
from .sample_size import auc_warnings
from .validation import validate_scores

DEFAULT_CUTOFF = 0.5
SOURCE_GIVEN = "pre-specified"
#: Start of the source of per-case cutoffs (each case called at its own model's cutoff).
SOURCE_PER_CASE = "pre-specified per case"
SOURCE_DEFAULT = "default 0.5 (no cutoff given)"
SOURCE_OPTIMISTIC = "optimistic: Youden cutoff chosen on these same data"
SOURCE_NONE = "none (not a probability and no cutoff given)"


def evaluate_scores(
    y: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    cutoffs: Mapping[str, float | Sequence[float] | np.ndarray] | None = None,
    *,
    optimistic_youden: bool = False,
    n_bins: int = 10,
    thresholds: Sequence[float] | np.ndarray | None = None,
    clusters: Sequence[object] | np.ndarray | None = None,
    reader: Sequence[object] | np.ndarray | None = None,
    reader_name: str = "BI-RADS",
    clinical: str | None = None,
    bootstrap: BootstrapSettings | None = None,
) -> dict[str, Any]:
    """Every evaluation metric for each named score, and pairwise DeLong tests.

    A score whose values all lie in [0, 1] is treated as a probability: it gets cutoff metrics,
    calibration, Hosmer-Lemeshow and a decision curve. Other scores get AUC/ROC, and cutoff metrics
    only when a cutoff is given (or with ``optimistic_youden``). Without a given cutoff a
    probability uses 0.5, and the output says so in ``cutoff_source``.

    Args:
        y: 0/1 labels (both classes required).
        scores: name -> one score per case (same cases, same order).
        cutoffs: name -> pre-specified cutoff (positive when score >= cutoff), or one cutoff per
            case when the cases were called by different models (a results CSV's ``cutoff``
            column): the cutoff metrics then count each case as its own model called it, and
            ``cutoff`` is None with ``cutoff_source`` listing the cutoffs used.
        optimistic_youden: for scores without a given cutoff, choose Youden's cutoff on these same
            data (labelled optimistic) instead of 0.5.
        n_bins: bins of the calibration curve (equal width on [0, 1]).
        thresholds: decision-curve threshold probabilities (default 0.01-0.99).
        clusters: one cluster id per case (e.g. the patient, when several images show one
            lesion): adds Obuchowski's clustered AUC intervals and tests and makes every bootstrap
            resample whole clusters. The ids are used for grouping only; no id is returned.
        reader: the reader's BI-RADS per case ('' where not given): adds the reader comparison.
        reader_name: the reader's display name.
        clinical: the name of a score that is a clinical-only model (compared with the reader).
        bootstrap: resamples, seed and level of the bootstrap intervals (default 2000, fixed seed).

    Returns:
        dict with n, n_positive, n_negative, prevalence, scores (per-score results), delong (list of
        pairwise tests with raw and Holm-adjusted p), delong_clustered, clusters (counts only),
        bootstrap (its settings), reader_comparison (or None), warnings and notes (lists of strings).

    Raises:
        InputError: no scores, invalid labels or scores, cluster ids or reader values, a cutoff
            or a clinical score for an unknown score.
    """
    if not scores:
        raise InputError("No scores to evaluate: give at least one score column.")
    cutoffs = dict(cutoffs or {})
    unknown = sorted(set(cutoffs) - set(scores))
    if unknown:
        raise InputError(f"Cutoffs given for unknown score(s) {unknown}; the scores are {list(scores)}.")
    if clinical is not None and clinical not in scores:
        raise InputError(f"The clinical-only score '{clinical}' is not among the scores {list(scores)}.")
    lab = validate_labels(y)
    arrays = {str(k): validate_scores(v, lab.size, str(k)) for k, v in scores.items()}
    notes: list[str] = []
    per_score: dict[str, Any] = {}
    called_at: dict[str, Any] = {}
    for name, s in arrays.items():
        per_score[name] = _evaluate_one(
            lab,
            s,
            name,
            cutoffs.get(name),
            optimistic=optimistic_youden,
            n_bins=n_bins,
            thresholds=thresholds,
        )
        notes.extend(per_score[name].pop("_notes"))
        called_at[name] = per_score[name].pop("_called_at")
    delong = [t.record() for t in pairwise_delong(lab, arrays)]
    if len(delong) > 1:
        notes.append("DeLong p-values: raw (p) and Holm-adjusted over the pairwise tests (p_holm).")
    result: dict[str, Any] = {
        "n": int(lab.size),
        "n_positive": int(lab.sum()),
        "n_negative": int(lab.size - lab.sum()),
        "prevalence": float(lab.mean()),
        "scores": per_score,
        "delong": delong,
        "notes": notes,
    }
    settings = bootstrap or BootstrapSettings()
    codes = add_intervals(result, lab, arrays, called_at, clusters=clusters, settings=settings)
    result["reader_comparison"] = None
    if reader is not None:
        comparison = compare_with_reader(
            lab,
            reader,
            arrays,
            clusters=codes,
            clinical=clinical,
            settings=settings,
            thresholds=thresholds,
            reader_name=reader_name,
        )
        notes.extend(comparison.pop("notes"))
        result["reader_comparison"] = comparison
        if comparison["n_missing"]:  # the comparison's own, smaller set
            unit = f"cases with a {reader_name} value"
            result["warnings"] += auc_warnings(comparison["n_positive"], comparison["n_negative"], unit)
    return result


def _evaluate_one(
    lab: np.ndarray,
    s: np.ndarray,
    name: str,
    given: float | Sequence[float] | np.ndarray | None,
    *,
    optimistic: bool,
    n_bins: int,
    thresholds: Sequence[float] | np.ndarray | None,
) -> dict[str, Any]:
    notes: list[str] = []
    is_prob = bool(s.min() >= 0.0 and s.max() <= 1.0)
    auc = auc_delong(lab, s)
    fpr, tpr, thr = roc_curve_points(lab, s)
    cutoff: float | None = None
    per_case: np.ndarray | None = None
    if given is not None and np.ndim(given) == 1:
        per_case = validate_scores(given, lab.size, f"cutoff of '{name}'")
        values, counts = np.unique(per_case, return_counts=True)
        if values.size == 1:
            cutoff, per_case = float(values[0]), None  # one cutoff after all
    elif given is not None:
        cutoff = float(np.asarray(given, dtype=float))
    if per_case is not None:
        used = ", ".join(f"{v:.4g} for {int(c)} cases" for v, c in zip_strict(values, counts))
        source = f"{SOURCE_PER_CASE} (the cutoff of the model that called each case: {used})"
    elif cutoff is not None:
        source = SOURCE_GIVEN
    elif optimistic:
        cutoff, source = youden_cutoff(lab, s), SOURCE_OPTIMISTIC
        notes.append(
            f"'{name}': cutoff {cutoff:.4g} was chosen on the evaluated data (Youden); its "
            "sensitivity/specificity are optimistic."
        )
    elif is_prob:
        cutoff, source = DEFAULT_CUTOFF, SOURCE_DEFAULT
        notes.append(f"'{name}': no cutoff given; 0.5 used (not tuned on these data).")
    else:
        source = SOURCE_NONE
        notes.append(f"'{name}' is not a probability in [0, 1]: only AUC/ROC reported (no cutoff given).")
    called_at = per_case if per_case is not None else cutoff
    out: dict[str, Any] = {
        "is_probability": is_prob,
        "auc": {"auc": auc.auc, "se": auc.se, "ci_low": auc.ci_low, "ci_high": auc.ci_high},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()},
        "cutoff": None if cutoff is None else float(cutoff),
        "cutoff_source": source,
        "metrics": None if called_at is None else binary_metrics(lab, s, called_at),
        "calibration": None,
        "hosmer_lemeshow": None,
        "decision_curve": None,
        "_notes": notes,
        "_called_at": called_at,
    }
    if not is_prob:
        return out
    cal = calibration(lab, s, n_bins=n_bins)
    if not cal.converged:
        notes.append(f"'{name}': the logistic recalibration fit did not converge (separation?).")
    out["calibration"] = {
        "slope": cal.slope,
        "intercept": cal.intercept,
        "intercept_joint": cal.intercept_joint,
        "brier": cal.brier,
        "converged": cal.converged,
        "bins": [
            {
                "bin": int(b),
                "bin_low": float(cal.bin_edges[b]),
                "bin_high": float(cal.bin_edges[b + 1]),
                "n": int(c),
                "mean_predicted": float(m),
                "observed": float(o),
            }
            for b, c, m, o in zip_strict(cal.bin_index, cal.counts, cal.mean_predicted, cal.observed)
        ],
    }
    try:
        hl_stat, hl_dof, hl_p = hosmer_lemeshow(lab, s)
        out["hosmer_lemeshow"] = {"statistic": hl_stat, "dof": hl_dof, "p": hl_p}
    except InputError as exc:
        notes.append(f"'{name}': Hosmer-Lemeshow not computed: {exc}")
    out["decision_curve"] = decision_curve(lab, s, thresholds).to_dict(orient="records")
    return out


def _check_destination(target: Path) -> bool:
    """True when ``target`` holds a previous report to replace; raises if it holds anything else."""
    if not target.exists():
        return False
    if not target.is_dir():
        raise InputError(f"The report destination {target} is a file; choose a folder name.")
    if not any(target.iterdir()):
        return False
    if (target / "metrics.json").is_file() and (target / "index.html").is_file():
        return True
    raise InputError(
        f"The report folder {target} already exists and is not a DLRPredictor report; choose a new "
        "or empty folder so that nothing of yours is overwritten."
    )


def write_report(
    report_dir: str | Path,
    y: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    cutoffs: Mapping[str, float | Sequence[float] | np.ndarray] | None = None,
    *,
    title: str = "",
    notes: list[str] | None = None,
    clusters: Sequence[object] | np.ndarray | None = None,
    reader: Sequence[object] | np.ndarray | None = None,
    reader_name: str = "BI-RADS",
    clinical: str | None = None,
    bootstrap: BootstrapSettings | None = None,
    optimistic_youden: bool = False,
    groups: Sequence[Any] | np.ndarray | None = None,
    group_column: str = "group",
) -> Path:
    """Write an evaluation report: index.html, PNG figures, CSV tables and metrics.json.

    Files: index.html (self-contained page referring to the PNGs next to it), roc.png,
    calibration.png and decision_curve.png (when at least one score is a probability),
    metrics.csv, delong.csv, calibration.csv, decision_curve.csv and metrics.json. Everything is
    written into a temporary sibling folder which is renamed to ``report_dir`` at the end; a
    previous report in ``report_dir`` is replaced, any other non-empty folder is refused.

    Args:
        report_dir: destination folder.
        y: 0/1 labels.
        scores: name -> one score per case.
        cutoffs: name -> pre-specified cutoff, or one cutoff per case (see :func:`evaluate_scores`).
        title: page title.
        notes: extra lines shown first in the notes (e.g. how many rows were excluded).
        clusters, reader, reader_name, clinical, bootstrap: see :func:`evaluate_scores`; with
            clusters the report adds clustered AUC intervals and tests (patient ids are never
            written), with a reader the reader comparison (``reader_comparison.csv``).
        optimistic_youden: see :func:`evaluate_scores`.
        groups: one group value per case (e.g. the scanner): adds the per-group AUCs
            (``subgroups.csv``, a page section and ``subgroups`` in metrics.json).
        group_column: the name of the grouping, as the report shows it.

    Returns:
        The report folder.

    Raises:
        InputError: invalid inputs, or a destination that is a file or a non-report folder.
    """
    target = Path(report_dir).expanduser().resolve()
    replace = _check_destination(target)
    result = evaluate_scores(
        y,
        scores,
        cutoffs,
        optimistic_youden=optimistic_youden,
        clusters=clusters,
        reader=reader,
        reader_name=reader_name,
        clinical=clinical,
        bootstrap=bootstrap,
    )
    per_group = None if groups is None else subgroups.subgroup_rows(y, scores, groups)
    all_notes = [*(notes or []), *result["notes"]]

    def write(tmp: Path) -> None:
        metrics = report_tables.write_tables(result, tmp)
        payload = {
            "title": title,
            "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": {"dlrpredictor": __version__},
            **result,
            "notes": all_notes,
        }
        if per_group is not None:
            payload["subgroups"] = {"column": group_column, "rows": per_group}
            subgroups.write_subgroups(tmp, per_group, group_column)
        (tmp / "metrics.json").write_text(json.dumps(to_json_value(payload), indent=1, allow_nan=False))
        figures = report_figures.write_figures(result, tmp)
        html = report_html.render_html(result, metrics, title, all_notes, figures)
        if per_group is not None:
            html = subgroups.add_section(html, subgroups.subgroups_html(per_group, group_column))
        (tmp / "index.html").write_text(html, encoding="utf-8")

    write_staged(target, replace, write)
    return target


def write_staged(target: Path, replace: bool, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temporary sibling folder of ``target`` and rename it into place.

    On any failure the temporary folder, and the parent folders this call created, are removed:
    nothing half-written is left. ``replace`` comes from :func:`_check_destination`.
    """
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        _move_into_place(tmp, target, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # only folders this call created, innermost first, only if empty
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise


def _move_into_place(tmp: Path, target: Path, replace: bool) -> None:
    if target.is_dir() and not replace:
        target.rmdir()  # checked empty by _check_destination
    if not replace:
        tmp.rename(target)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    backup.rmdir()
    target.rename(backup)
    try:
        tmp.rename(target)
    except BaseException:
        backup.rename(target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
