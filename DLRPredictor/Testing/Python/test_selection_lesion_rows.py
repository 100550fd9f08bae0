"""Selection on one row per lesion: contour variants fit the classifier, never the statistics."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.models.selection import FeatureSelector, SelectionConfig, stratified_folds
from DLRPredictorLib.models.signatures import Signature
from DLRPredictorLib.training.config import load_config
from DLRPredictorLib.training.crossfit import CrossFitter
from DLRPredictorLib.training.splits import group_folds, plan_splits

VARIANTS = ("exact", "ellipse", "erode2", "dilate2", "jitter")


def lesion_rows(
    n: int = 160, p: int = 40, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Features of n lesions, each as five variant rows (exact first); labels and lesion ids per row."""
    rng = np.random.default_rng(seed)
    exact = rng.normal(size=(n, p))
    y = (exact[:, 0] - 0.8 * exact[:, 1] + 0.6 * exact[:, 2] + rng.normal(size=n) > 0).astype(int)
    blocks = [exact + (0 if v == "exact" else 0.3) * rng.normal(size=(n, p)) for v in VARIANTS]
    X = np.stack(blocks, axis=1).reshape(n * len(VARIANTS), p)
    names = [f"f{j:02d}" for j in range(p)]
    return (
        pd.DataFrame(X, columns=names),
        np.repeat(y, len(VARIANTS)),
        np.repeat(np.arange(n), len(VARIANTS)),
        np.tile(np.array(VARIANTS), n) == "exact",
    )


CONFIG = SelectionConfig(alpha=0.05, max_features=10, seed=3)


def test_selection_with_variants_equals_selection_on_exact_rows_alone():
    X, y, lesion, exact = lesion_rows()
    with_variants = FeatureSelector(CONFIG).fit(X, y, groups=lesion, selection_rows=exact)
    alone = FeatureSelector(CONFIG).fit(X[exact], y[exact], groups=lesion[exact])
    # Bit-identical: the mask hands the same rows to the same seeded, deterministic code.
    assert with_variants.selected_names == alone.selected_names
    assert with_variants.lasso_c == alone.lasso_c
    np.testing.assert_array_equal(with_variants.mean, alone.mean)
    np.testing.assert_array_equal(with_variants.std, alone.std)
    assert with_variants.report().equals(alone.report())
    # Without the mask the tests see every lesion five times: smaller p values for the same signal.
    every = FeatureSelector(CONFIG).fit(X, y, groups=lesion).report().set_index("feature")
    p_once = alone.report().set_index("feature")["p_value"]
    assert every.loc["f00", "p_value"] < p_once["f00"]


def test_a_signature_selects_on_exact_rows_and_fits_its_classifier_on_every_row():
    X, y, lesion, exact = lesion_rows(seed=1)
    sig = Signature("Rad", classifier="lr", selection=CONFIG, grid={}, cv=3, seed=3)
    sig.fit(X, y, groups=lesion, selection_rows=exact)
    alone = FeatureSelector(CONFIG).fit(X[exact], y[exact], groups=lesion[exact])
    assert sig.selected_features == alone.selected_names
    from sklearn.linear_model import LogisticRegression

    # the classifier saw every variant row: the same fit by sklearn directly on all rows
    Z = alone.transform(X)
    want = LogisticRegression(**sig.estimator.get_params()).fit(Z, y)
    np.testing.assert_allclose(sig.estimator.coef_, want.coef_, rtol=1e-6, atol=1e-9)


def test_a_bad_mask_is_refused():
    X, y, _, exact = lesion_rows(n=20)
    with pytest.raises(InputError, match="boolean mask"):
        FeatureSelector(CONFIG).fit(X, y, selection_rows=exact[:-1])
    with pytest.raises(InputError, match="boolean mask"):
        FeatureSelector(CONFIG).fit(X, y, selection_rows=exact.astype(int))


def test_the_trainer_passes_exact_rows_unless_told_otherwise(tmp_path):
    pairs = [(0, "exact"), (0, "ellipse"), (1, "exact"), (1, "jitter")]
    on = CrossFitter(load_config(None), None, tmp_path, print)  # type: ignore[arg-type]
    np.testing.assert_array_equal(on.selection_rows(pairs), [True, False, True, False])
    (tmp_path / "c.yaml").write_text("selection: {lesion_rows: false}\n")
    off = CrossFitter(load_config(tmp_path / "c.yaml"), None, tmp_path, print)  # type: ignore[arg-type]
    assert off.selection_rows(pairs) is None


def _never_split(folds: list[tuple[np.ndarray, np.ndarray]], groups: np.ndarray) -> None:
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])


def test_busbra_folds_keep_every_patient_and_its_variants_together(shared_data):
    """BUS-BRA views bus_NNNN-l/-r/-s share the patient `Case`; every view has five variant rows."""
    with open(shared_data / "BUS-BRA" / "bus_data.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    patients = np.array([f"busbra-{r['Case']}" for r in rows])  # as scripts/make_manifests.py writes
    labels = np.array([int(r["Pathology"] == "malignant") for r in rows])
    assert len(set(patients)) < len(rows)  # several views of one patient exist
    config = load_config(None)
    plan = plan_splits(labels, patients, config)
    assert not set(patients[plan.train]) & set(patients[plan.test])
    tr_patients = patients[plan.train]
    for va in plan.folds:
        rest = np.setdiff1d(np.arange(len(plan.train)), va)
        assert not set(tr_patients[va]) & set(tr_patients[rest])
    # the LASSO / grid-search folds on variant rows: patient groups repeated per variant
    row_groups = np.repeat(patients[plan.train], len(VARIANTS))
    row_y = np.repeat(labels[plan.train], len(VARIANTS))
    _never_split(stratified_folds(row_y, row_groups, 5, 0), row_groups)


def test_leave_one_group_out_folds(tmp_path):
    patients = np.array(["p1", "p1", "p2", "p3", "p4", "p4"])
    device = np.array(["A", "A", "B", "A", "C", "C"])
    folds = group_folds(patients, device)
    assert [f.tolist() for f in folds] == [[0, 1, 3], [2], [4, 5]]
    with pytest.raises(InputError, match="a patient has cases"):
        group_folds(patients, np.array(["A", "B", "B", "A", "C", "C"]))
    with pytest.raises(InputError, match="no value"):
        group_folds(patients, np.array(["A", "A", "", "A", "C", "C"]))
    with pytest.raises(InputError, match="need 2 or more"):
        group_folds(patients, np.array(["A"] * 6))
    (tmp_path / "c.yaml").write_text("split: {fold_column: device, test_fraction: 0.0}\n")
    plan = plan_splits(np.array([0, 0, 1, 1, 0, 1]), patients, load_config(tmp_path / "c.yaml"), 0, device)
    assert [f.tolist() for f in plan.folds] == [[0, 1, 3], [2], [4, 5]]
