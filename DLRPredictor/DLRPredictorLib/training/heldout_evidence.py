"""What the held-out evaluation of `train` adds beyond per-image metrics: patients, readers, scanners.

- Patients: the cohort's patient groups (the manifest's ``patient_id``, else the case itself) of
  the held-out cases are the clusters of Obuchowski's AUC intervals and tests and of the patient
  bootstrap (``evaluation.report.evaluate_scores``). The ids are used for grouping only; nothing
  here returns or writes one.
- Readers: the readers' BI-RADS (the manifest's ``birads`` column, a clinical variable or not) is
  the comparator of the reader comparison (tests, NRI, IDI, the "biopsy every BI-RADS >= 4" policy).
- Scanners / sites: ``split.fold_column`` when set, else the manifest's ``device`` column: the
  per-group AUC table.
- Comparator models, fitted on the training split only and scored on the held-out cases: a
  clinical-only model (the combined model's clinical predictors without the image score) and a
  BI-RADS-only model (the BI-RADS clinical variable alone), both unpenalised logistic regressions
  (``models.combined.CombinedModel`` without a score term).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import DLRError, InputError
from .data import TrainingCase
from .run import TrainingRun

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models.clinical_variables import ClinicalVariable
    from ..models.combined import CombinedModel

#: The manifest column holding the readers' BI-RADS assessment.
READER_COLUMN = "birads"
#: The manifest column of the scanner, used for the per-group table without ``split.fold_column``.
DEVICE_COLUMN = "device"
#: Score names of the comparator models in the held-out tables.
CLINICAL_ONLY = "clinical_only"
BIRADS_ONLY = "birads_only"


def _cell(case: TrainingCase, column: str) -> str:
    """A manifest cell of the case by column name (case-insensitive), '' when absent."""
    for source in (case.clinical, case.extra):
        for key, value in source.items():
            if key.strip().lower() == column:
                return "" if value is None else str(value).strip()
    return ""


def reader_values(cases: Sequence[TrainingCase]) -> np.ndarray | None:
    """The BI-RADS cell of each case, or None when the comparison cannot be made on them.

    None when no case has a value, a value is not a BI-RADS category, or the cases with one are
    of one class (``evaluation.reader.parse_birads`` decides what counts as a value).
    """
    from ..evaluation.reader import parse_birads

    values = np.array([_cell(c, READER_COLUMN) for c in cases], dtype=object)
    try:
        present, _, _ = parse_birads(values)
    except InputError:
        return None
    labels = np.array([c.label for c in cases])
    if present.sum() < 2 or len(set(labels[present].tolist())) < 2:
        return None
    return values


def group_values(run: TrainingRun, cases: Sequence[TrainingCase]) -> tuple[str, np.ndarray] | None:
    """(column, value per case) of the scanner / site grouping, or None without one."""
    return _grouping(cases, run.config.split.fold_column or DEVICE_COLUMN)


def _grouping(cases: Sequence[TrainingCase], column: str) -> tuple[str, np.ndarray] | None:
    values = np.array([_cell(c, column.lower()) for c in cases], dtype=object)
    if not any(values.tolist()):
        return None
    return column, np.array([v or "(none)" for v in values.tolist()], dtype=object)


@dataclass
class Comparators:
    """The clinical-only and BI-RADS-only models of a run (either may be None)."""

    variables: list[ClinicalVariable]
    clinical_only: CombinedModel | None
    birads_only: CombinedModel | None

    def models(self) -> dict[str, CombinedModel]:
        """name -> fitted model, for the ones that exist."""
        out = {CLINICAL_ONLY: self.clinical_only, BIRADS_ONLY: self.birads_only}
        return {k: v for k, v in out.items() if v is not None}

    def score(self, cases: Sequence[TrainingCase]) -> dict[str, np.ndarray]:
        """Each model's probability on the cases; a model lacking a value of one case is left out."""
        encoded = [_encoded(c, self.variables) for c in cases]
        out: dict[str, np.ndarray] = {}
        for name, model in self.models().items():
            if all(all(n in row for n in model.names) for row in encoded):
                X = np.array([[row[n] for n in model.names] for row in encoded], dtype=float)
                out[name] = model.predict_proba(None, X)
        return out


def _encoded(case: TrainingCase, variables: Sequence[ClinicalVariable]) -> dict[str, float]:
    """Encoded column -> value of the case's clinical values (variables without a usable value absent)."""
    row: dict[str, float] = {}
    for var in variables:
        try:
            row.update(zip(var.encoded_names(), var.encode(case.clinical.get(var.name))))
        except DLRError:
            continue
    return row


def _fit(names: list[str], rows: list[dict[str, float]], y: np.ndarray) -> CombinedModel | None:
    from ..models.combined import CombinedModel

    keep = [j for j, r in enumerate(rows) if all(n in r for n in names)]
    if not names or len(keep) < 20 or len(set(y[keep].tolist())) < 2:
        return None  # the combined model's own minimum (fusion_fit.fit_clinical)
    X = np.array([[rows[j][n] for n in names] for j in keep], dtype=float)
    return CombinedModel(score_name=None).fit(None, X, y[keep], names)


def fit_comparator_models(
    variables: Sequence[ClinicalVariable],
    predictors: Sequence[str],
    cases: Sequence[TrainingCase],
    y: np.ndarray,
) -> Comparators:
    """The clinical-only model (the encoded ``predictors`` of the combined model, without the image
    score) and the BI-RADS-only model, fitted on ``cases`` (training cases: only their clinical
    values are read) with labels ``y``."""
    rows = [_encoded(c, variables) for c in cases]
    birads = [v for v in variables if v.name.strip().lower() == READER_COLUMN]
    return Comparators(
        variables=list(variables),
        clinical_only=_fit(list(predictors), rows, y),
        birads_only=_fit(birads[0].encoded_names(), rows, y) if birads else None,
    )


def fit_comparators(run: TrainingRun) -> Comparators | None:
    """Fit the clinical-only and BI-RADS-only models on the training split (None without a
    clinical model: there is then no clinical predictor to compare with)."""
    clin = run.clinical
    if clin is None:
        return None
    cohort = run.cohort
    train = cohort.plan.train
    cases = [cohort.cases[i] for i in train]
    return fit_comparator_models(clin.variables, clin.model.names, cases, cohort.labels[train])


def evidence_kwargs(run: TrainingRun, idx: np.ndarray) -> dict[str, Any]:
    """The ``evaluate_scores`` / ``write_report`` arguments of the held-out cases ``idx``:
    clusters (patient groups), reader (BI-RADS) and, for ``write_report``, groups."""
    cases = [run.cohort.cases[i] for i in idx]
    return _case_kwargs(cases, run.cohort.groups[idx], run.config.split.fold_column or DEVICE_COLUMN)


def _case_kwargs(cases: Sequence[TrainingCase], clusters: np.ndarray, column: str) -> dict[str, Any]:
    out: dict[str, Any] = {"clusters": clusters}
    reader = reader_values(cases)
    if reader is not None:
        out["reader"] = reader
    grouping = _grouping(cases, column)
    if grouping is not None:
        out["group_column"], out["groups"] = grouping
    return out


def subgroup_table(
    y: np.ndarray, scores: dict[str, np.ndarray], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The per-group AUC rows of these scores, or None without a grouping."""
    from ..evaluation.subgroups import subgroup_rows

    if "groups" not in kwargs:
        return None
    return {"column": kwargs["group_column"], "rows": subgroup_rows(y, scores, kwargs["groups"])}


def evaluation_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``evidence_kwargs`` without the report-only grouping (for ``evaluate_scores``)."""
    return {k: v for k, v in kwargs.items() if k not in ("groups", "group_column")}


def clinical_subset_block(
    run: TrainingRun, idx: np.ndarray, y: np.ndarray, scores: dict[str, np.ndarray], cutoffs: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The clinical subset's evaluation with the comparator models and its report arguments.

    Args:
        run: the finished run (comparators are fitted on its training split here).
        idx: the held-out cases with clinical values.
        y: their labels.
        scores: the image signatures' and the combined model's scores of those cases.
        cutoffs: the frozen cutoffs (the comparators have none: 0.5, said in the notes).

    Returns:
        (the ``evaluate_scores`` result, the ``write_report`` keyword arguments).
    """
    from ..evaluation import report

    comparators = fit_comparators(run)
    scores = dict(scores)
    if comparators is not None:
        scores.update(comparators.score([run.cohort.cases[i] for i in idx]))
    kwargs = evidence_kwargs(run, idx)
    kwargs["clinical"] = CLINICAL_ONLY if CLINICAL_ONLY in scores else None
    block = report.evaluate_scores(
        y, scores, {k: v for k, v in cutoffs.items() if k in scores}, **evaluation_kwargs(kwargs)
    )
    return block, {**kwargs, "scores": scores}


def scored_evidence_entry(
    cases: Sequence[TrainingCase],
    scores: dict[str, np.ndarray],
    cutoffs: dict[str, float],
    *,
    group_column: str = DEVICE_COLUMN,
    clinical_scores: dict[str, np.ndarray] | None = None,
    bootstrap: Any = None,
) -> dict[str, Any]:
    """A held-out entry as ``heldout.evaluate_heldout`` makes one, from cases already scored.

    For a bundle scored outside ``train`` (e.g. by ``dlrpredictor evaluate``), so that its model
    card gets the same patient-level, reader and per-group sections (``evidence_card.py``).

    Args:
        cases: the scored cases (label, patient, clinical values incl. BI-RADS, manifest columns).
        scores: image signature name -> score per case.
        cutoffs: the frozen cutoffs by score name.
        group_column: the manifest column of the per-group table (scanner / site).
        clinical_scores: name -> score per case, NaN where absent, for the combined model and the
            comparators (``clinical_only``, ``birads_only``): the clinical subset is the cases
            where all of them are present.
        bootstrap: ``evaluation.bootstrap.BootstrapSettings`` (default: the report's).

    Returns:
        {"n", "n_positive", "all", "all_subgroups"} and, with clinical scores, "n_clinical",
        "clinical_subset", "clinical_subset_subgroups".
    """
    from ..evaluation import report

    y = np.array([c.label for c in cases])
    clusters = np.array([c.patient_id for c in cases], dtype=object)
    kwargs = _case_kwargs(cases, clusters, group_column)
    entry: dict[str, Any] = {"n": len(cases), "n_positive": int(y.sum())}
    cut = {k: v for k, v in cutoffs.items() if k in scores}
    entry["all"] = report.evaluate_scores(y, scores, cut, bootstrap=bootstrap, **evaluation_kwargs(kwargs))
    entry["all_subgroups"] = subgroup_table(y, scores, kwargs)
    if not clinical_scores:
        return entry
    keep = np.all([np.isfinite(np.asarray(v, dtype=float)) for v in clinical_scores.values()], axis=0)
    sub_y = y[keep]
    if keep.sum() < 10 or len(set(sub_y.tolist())) < 2:
        return entry
    sub = {k: np.asarray(v)[keep] for k, v in {**scores, **clinical_scores}.items()}
    sub_cases = [c for c, k in zip(cases, keep) if k]
    sub_kwargs = _case_kwargs(sub_cases, clusters[keep], group_column)
    sub_kwargs["clinical"] = CLINICAL_ONLY if CLINICAL_ONLY in sub else None
    cut = {k: v for k, v in cutoffs.items() if k in sub}
    entry["n_clinical"] = int(keep.sum())
    entry["clinical_subset"] = report.evaluate_scores(
        sub_y, sub, cut, bootstrap=bootstrap, **evaluation_kwargs(sub_kwargs)
    )
    entry["clinical_subset_subgroups"] = subgroup_table(sub_y, sub, sub_kwargs)
    return entry
