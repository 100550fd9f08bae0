"""Held-out evaluation of a freshly trained pipeline: exact and rough (ellipse) contours.

The test split is scored once, with the frozen models and cutoffs. Next to the signatures, a
radiomics-only baseline (LASSO-selected logistic regression on the Original-image features,
trained on the exact training masks) is scored on the same cases, as published studies report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..base.errors import DLRError
from .combat_fit import harmonise_rows
from .run import TrainingRun

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..inference.pipeline import FrozenPipeline
    from ..models.signatures import Signature

CONTOURS = ("exact", "ellipse")


def _baseline(run: TrainingRun) -> Signature:
    from ..models.selection import SelectionConfig
    from ..models.signatures import Signature

    cohort, seed = run.cohort, run.config.seed
    cols = [n for n in cohort.rad_names if n.startswith("original_")]
    pairs, R = cohort.rows(cohort.plan.train, ["exact"])
    frame = pd.DataFrame(R, columns=cohort.rad_names)
    y = cohort.labels[[i for i, _ in pairs]]
    # The plain radiomics baseline: quantile-normal transform, L1 logistic selection with C by CV,
    # exact contours only (docs/EXPERIMENTS.md, "A Rad signature that transfers").
    sel = SelectionConfig(
        univariate="none",
        correlation="none",
        lasso="logistic",
        max_features=50,
        transform="quantile",
        seed=seed,
    )
    return Signature("Baseline", cols, "lr", selection=sel, grid={}, seed=seed).fit(
        frame, y, groups=cohort.groups[[i for i, _ in pairs]]
    )


def _clinical_matrix(run: TrainingRun, pipe: FrozenPipeline, idx: list[int]) -> tuple[list[int], np.ndarray]:
    keep, rows = [], []
    for j, i in enumerate(idx):
        clin = run.cohort.cases[i].clinical
        try:
            values = pipe.check_clinical(
                {k: v for k, v in clin.items() if k in {x.name for x in pipe.clinical_variables}}
            )
            rows.append(pipe.encode_clinical(values)[0])
            keep.append(j)
        except DLRError:
            continue
    return keep, np.array(rows)


def evaluate_heldout(run: TrainingRun, pipe: FrozenPipeline, report_root: Path) -> dict[str, Any]:
    """Scores and metrics of every signature on the test split, per contour kind and dataset.

    Args:
        run: the finished run (its test split, cases, radiomics and final deep features).
        pipe: the frozen pipeline built from it.
        report_root: folder of the per-subset reports (``heldout_<key>``).

    Returns:
        {key: entry} with key ``<contour>`` for the whole test split and ``<contour>:<dataset>``
        per value of the manifest's `dataset` column when there are several (with an external
        cohort, see :func:`_subsets`); an entry has n,
        n_positive, "all" (evaluate_scores of every signature and the baseline) and, when clinical
        values exist, "clinical_subset" with the combined model.
    """
    cohort = run.cohort
    test = cohort.plan.test
    if len(test) == 0:
        return {}
    baseline = _baseline(run)
    datasets = sorted({cohort.cases[i].dataset for i in test} - {""})
    out: dict[str, Any] = {}
    for contour in CONTOURS:
        pairs, R = cohort.rows(test, [contour])
        if not pairs:
            continue
        # The signatures read the radiomics harmonised as at prediction (held-out cases of a site
        # the training split lacks stay as they are); the baseline was fitted unharmonised.
        raw = cohort.frame(pairs, R, None, None)
        R = harmonise_rows(run.signatures.get("harmoniser"), cohort, pairs, R)
        frame = cohort.frame(pairs, R, run.final_deep, pipe.reducer)
        scores = {"rad": pipe.rad.predict_proba(frame)}
        if pipe.dl is not None:
            scores["dl"] = pipe.dl.predict_proba(frame)
        if pipe.dlr is not None:
            scores["dlr"] = pipe.dlr.predict_proba(frame)
        scores["baseline"] = baseline.predict_proba(raw)
        idx = np.array([i for i, _ in pairs])
        subsets = _subsets(run, contour, idx, datasets)
        for key, sel in subsets.items():
            entry = _evaluate_subset(
                run,
                pipe,
                idx[sel],
                {k: v[sel] for k, v in scores.items()},
                report_dir=report_root / f"heldout_{key.replace(':', '_')}",
                key=key,
            )
            if entry:
                out[key] = entry
    return out


def _subsets(run: TrainingRun, contour: str, idx: np.ndarray, datasets: list[str]) -> dict[str, np.ndarray]:
    """The held-out subsets of one contour kind: key -> row mask.

    Without an external cohort: ``<contour>`` (every test case) and ``<contour>:<dataset>`` per
    dataset when there are several. With ``split.external_dataset``: ``<contour>`` is the
    within-dataset test split only, ``<contour>:external:<name>`` the external cohort.
    """
    cases = run.cohort.cases
    external = run.config.split.external_dataset
    is_ext = np.array([cases[i].dataset == external for i in idx], dtype=bool)
    subsets = {contour: ~is_ext}
    within = [d for d in datasets if d != external]
    if len(within) > 1:
        for name in within:
            subsets[f"{contour}:{name}"] = np.array([cases[i].dataset == name for i in idx])
    if external is not None and is_ext.any():
        subsets[f"{contour}:external:{external}"] = is_ext
    return subsets


def _evaluate_subset(
    run: TrainingRun,
    pipe: FrozenPipeline,
    idx: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    report_dir: Path,
    key: str,
) -> dict[str, Any]:
    from ..evaluation import report
    from .heldout_evidence import clinical_subset_block, evaluation_kwargs, evidence_kwargs, subgroup_table

    y = run.cohort.labels[idx]
    cutoffs = {k: v for k, v in pipe.cutoffs.items() if k in scores}
    entry: dict[str, Any] = {"n": len(idx), "n_positive": int(y.sum())}
    if len(set(y)) < 2:
        return entry
    evidence = evidence_kwargs(run, idx)  # patient clusters, BI-RADS, scanner (no id is written)
    entry["all"] = report.evaluate_scores(y, scores, cutoffs, **evaluation_kwargs(evidence))
    entry["all_subgroups"] = subgroup_table(y, scores, evidence)
    step = pipe.calibration
    if step is not None and step.model in scores:
        from .recalibration_fit import before_after

        entry["recalibration"] = before_after(step, y, scores[step.model])
    title = f"Held-out test split: {key} contours"
    report.write_report(report_dir, y, scores, cutoffs, title=title, **evidence)
    if pipe.combined is not None:
        keep, X = _clinical_matrix(run, pipe, list(idx))
        if len(keep) >= 10 and len(set(y[keep])) == 2:
            image = pipe.image_only_model
            sub = {k: v[keep] for k, v in scores.items() if k != "baseline"}
            sub["combined"] = pipe.combined.predict_proba(scores[image][keep], X)
            block, args = clinical_subset_block(run, idx[keep], y[keep], sub, pipe.cutoffs)
            entry["clinical_subset"] = block
            entry["clinical_subset_subgroups"] = subgroup_table(y[keep], args["scores"], args)
            report.write_report(
                report_dir.with_name(report_dir.name + "_clinical"),
                y[keep],
                args.pop("scores"),
                {k: v for k, v in pipe.cutoffs.items() if k in sub},
                title=f"Held-out test split: {key} contours, cases with clinical values",
                **args,
            )
            entry["n_clinical"] = len(keep)
    return entry
