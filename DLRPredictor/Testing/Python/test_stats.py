"""The evaluation statistics (auc, cutoff_metrics, calibration, decision_curve) against independent
computations: direct DeLong (1988), sklearn, statsmodels, pandas, hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.evaluation.auc import auc_delong, delong_test, pairwise_delong, roc_curve_points
from DLRPredictorLib.evaluation.calibration import calibration, hosmer_lemeshow
from DLRPredictorLib.evaluation.cutoff_metrics import binary_metrics, wilson_ci, youden_cutoff
from DLRPredictorLib.evaluation.decision_curve import decision_curve
from scipy import stats as sps
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve
from statsmodels.stats.proportion import proportion_confint

Z = sps.norm.ppf(0.975)


# ------------------------------------------------------------------------------- reference code


def delong_direct(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong, DeLong & Clarke-Pearson (1988) by the O(m*n) Mann-Whitney kernel.

    Returns the AUCs and their covariance matrix S = S10/m + S01/n.
    """
    pos_mask = y == 1
    m, n = int(pos_mask.sum()), int((~pos_mask).sum())
    v10, v01, aucs = [], [], []
    for s in scores:
        x, z = s[pos_mask], s[~pos_mask]
        kernel = (x[:, None] > z[None, :]).astype(float) + 0.5 * (x[:, None] == z[None, :])
        aucs.append(kernel.mean())
        v10.append(kernel.mean(axis=1))  # one per positive
        v01.append(kernel.mean(axis=0))  # one per negative
    aucs_arr = np.array(aucs)
    k = len(scores)
    s10 = np.empty((k, k))
    s01 = np.empty((k, k))
    for r in range(k):
        for t in range(k):
            s10[r, t] = np.sum((v10[r] - aucs_arr[r]) * (v10[t] - aucs_arr[t])) / (m - 1)
            s01[r, t] = np.sum((v01[r] - aucs_arr[r]) * (v01[t] - aucs_arr[t])) / (n - 1)
    return aucs_arr, s10 / m + s01 / n


@pytest.fixture(scope="module")
def tied_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed random labels and two correlated scores rounded to one decimal (many ties)."""
    rng = np.random.default_rng(20240611)
    n = 157
    y = (rng.random(n) < 0.37).astype(int)
    latent = rng.normal(size=n)
    a = np.round(1 / (1 + np.exp(-(1.2 * y + latent))), 1)
    b = np.round(1 / (1 + np.exp(-(0.6 * y + 0.7 * latent + 0.7 * rng.normal(size=n)))), 1)
    assert len(np.unique(a)) < n / 5  # really tied
    return y, a, b


# ----------------------------------------------------------------------------------------- DeLong


def test_auc_and_variance_match_direct_delong(tied_data):
    y, a, _ = tied_data
    aucs, cov = delong_direct(y, [a])
    res = auc_delong(y, a)
    assert res.auc == pytest.approx(aucs[0], abs=1e-12)
    assert res.se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-10)
    assert res.ci_low == pytest.approx(aucs[0] - Z * math.sqrt(cov[0, 0]), rel=1e-10)
    assert res.ci_high == pytest.approx(aucs[0] + Z * math.sqrt(cov[0, 0]), rel=1e-10)


def test_auc_equals_sklearn(tied_data):
    y, a, b = tied_data
    assert auc_delong(y, a).auc == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert auc_delong(y, b).auc == pytest.approx(roc_auc_score(y, b), abs=1e-12)


def test_paired_test_matches_direct_delong(tied_data):
    y, a, b = tied_data
    aucs, cov = delong_direct(y, [a, b])
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    p = 2 * sps.norm.sf(abs(z))
    res = delong_test(y, a, b)
    assert res.auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert res.auc_b == pytest.approx(aucs[1], abs=1e-12)
    assert res.diff == pytest.approx(aucs[0] - aucs[1], abs=1e-12)
    assert res.z == pytest.approx(z, rel=1e-9)
    assert res.p == pytest.approx(p, rel=1e-9)
    assert res.se_diff == pytest.approx(math.sqrt(var), rel=1e-9)


def test_pairwise_delong_all_pairs_match_direct(tied_data):
    y, a, b = tied_data
    c = np.round(a * 0.5 + b * 0.5 + np.linspace(-0.05, 0.05, y.size), 2)
    names = ["A", "B", "C"]
    aucs, cov = delong_direct(y, [a, b, c])
    tests = pairwise_delong(y, {"A": a, "B": b, "C": c})
    assert [(t.name_a, t.name_b) for t in tests] == [("A", "B"), ("A", "C"), ("B", "C")]
    for t in tests:
        i, j = names.index(t.name_a), names.index(t.name_b)
        z = (aucs[i] - aucs[j]) / math.sqrt(cov[i, i] + cov[j, j] - 2 * cov[i, j])
        assert t.z == pytest.approx(z, rel=1e-9)
    assert pairwise_delong(y, {"A": a}) == []


def test_identical_scores_give_no_difference(tied_data):
    y, a, _ = tied_data
    res = delong_test(y, a, a.copy())
    # Exact: both AUCs are the same computation on equal rows, and a zero variance of the difference
    # gives z = 0, p = 1 by definition (evaluation.auc._paired).
    assert res.diff == 0.0
    assert res.z == 0.0
    assert res.p == 1.0


def test_perfect_separation_auc_one_with_clipped_ci():
    y = np.array([0, 0, 0, 1, 1, 1])
    res = auc_delong(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    # Exact: midranks of 6 cases are small halves and integers, so the AUC and its variance are
    # computed without rounding.
    assert res.auc == 1.0
    assert res.ci_high <= 1.0
    assert res.se == 0.0


def test_roc_points_match_sklearn(tied_data):
    y, a, _ = tied_data
    fpr, tpr, thr = roc_curve_points(y, a)
    fpr_ref, tpr_ref, thr_ref = roc_curve(y, a, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_ref)
    np.testing.assert_allclose(tpr, tpr_ref)
    np.testing.assert_allclose(thr[1:], thr_ref[1:])
    assert np.isinf(thr[0])


# ------------------------------------------------------------------------------ cutoff metrics


@pytest.mark.parametrize(("count", "nobs"), [(0, 7), (3, 4), (7, 7), (45, 120), (1, 1)])
def test_wilson_ci_matches_statsmodels(count, nobs):
    lo_ref, hi_ref = proportion_confint(count, nobs, alpha=0.05, method="wilson")
    lo, hi = wilson_ci(count, nobs)
    assert lo == pytest.approx(lo_ref, abs=1e-12)
    assert hi == pytest.approx(hi_ref, abs=1e-12)


def test_binary_metrics_hand_example():
    # cutoff 0.5, positive when prob >= 0.5 (0.5 itself is positive):
    #   label: 1    1    1    0    0    0    0    1
    #   prob : .9   .5   .2   .1   .5   .7   .3   .6
    #   call : +    +    -    -    +    +    -    +   -> TP 3, FN 1, FP 2, TN 2
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.5, 0.2, 0.1, 0.5, 0.7, 0.3, 0.6]
    m = binary_metrics(y, p, 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 2)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["ppv"] == pytest.approx(3 / 5)
    assert m["npv"] == pytest.approx(2 / 3)
    assert (m["ppv_num"], m["ppv_den"]) == (3, 5)
    lo, hi = proportion_confint(3, 4, method="wilson")
    assert (m["sensitivity_ci_low"], m["sensitivity_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    lo, hi = proportion_confint(2, 3, method="wilson")
    assert (m["npv_ci_low"], m["npv_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_binary_metrics_undefined_values_are_nan():
    no_pos = binary_metrics([0, 0, 0], [0.1, 0.6, 0.2], 0.5)
    assert math.isnan(no_pos["sensitivity"])
    assert math.isnan(no_pos["sensitivity_ci_low"])
    assert no_pos["specificity"] == pytest.approx(2 / 3)
    nobody_called = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3], 0.9)
    assert math.isnan(nobody_called["ppv"])
    assert nobody_called["npv"] == pytest.approx(1 / 3)


def test_youden_tie_returns_smallest_cutoff():
    # Candidates 0.1..0.6; J = 0, 1/3, 2/3, 1/3, 2/3, 1/3 -> tie between 0.3 and 0.5.
    y = [0, 0, 1, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert youden_cutoff(y, p) == 0.3  # one of the given scores, chosen by integer counts: exact


def test_youden_reaches_brute_force_maximum(tied_data):
    y, a, _ = tied_data

    def j(t: float) -> float:
        pred = a >= t
        return pred[y == 1].mean() + (~pred[y == 0]).mean() - 1

    best = max(j(t) for t in np.unique(a))
    cut = youden_cutoff(y, a)
    assert j(cut) == pytest.approx(best, abs=1e-12)
    assert all(j(t) < best - 1e-12 for t in np.unique(a) if t < cut)


# -------------------------------------------------------------------------------- calibration


@pytest.fixture(scope="module")
def overconfident() -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from true risks, predictions twice as extreme on the logit scale."""
    rng = np.random.default_rng(7)
    lp_true = rng.normal(-0.3, 1.2, size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-lp_true))).astype(int)
    prob = 1 / (1 + np.exp(-(2 * lp_true + 0.4)))
    return y, prob


def test_calibration_slope_and_intercept_match_statsmodels(overconfident):
    y, prob = overconfident
    lp = np.log(prob / (1 - prob))
    joint = sm.Logit(y, sm.add_constant(lp)).fit(disp=0)
    citl = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit()
    res = calibration(y, prob)
    assert res.converged
    assert res.slope == pytest.approx(joint.params[1], rel=1e-6)
    assert res.intercept_joint == pytest.approx(joint.params[0], rel=1e-6, abs=1e-8)
    assert res.intercept == pytest.approx(citl.params[0], rel=1e-6, abs=1e-8)
    assert res.slope < 0.8  # over-confident predictions are recognised as such
    assert res.brier == pytest.approx(brier_score_loss(y, prob), abs=1e-12)


def test_calibration_bins_match_pandas_cut(overconfident):
    y, prob = overconfident
    edges = np.linspace(0, 1, 11)
    frame = pd.DataFrame({"y": y, "p": prob, "bin": pd.cut(prob, edges, include_lowest=True, labels=False)})
    grouped = frame.groupby("bin").agg(n=("y", "size"), obs=("y", "mean"), pred=("p", "mean"))
    res = calibration(y, prob, n_bins=10)
    np.testing.assert_array_equal(res.bin_index, grouped.index.to_numpy())
    np.testing.assert_array_equal(res.counts, grouped["n"].to_numpy())
    np.testing.assert_allclose(res.observed, grouped["obs"].to_numpy())
    np.testing.assert_allclose(res.mean_predicted, grouped["pred"].to_numpy())


def test_calibration_separation_reports_non_convergence():
    res = calibration([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert not res.converged
    assert math.isnan(res.slope)


def hl_reference(y: np.ndarray, prob: np.ndarray, groups: int = 10) -> tuple[float, int, float]:
    frame = pd.DataFrame({"y": y, "p": prob})
    frame["g"] = pd.qcut(frame["p"], groups, labels=False, duplicates="drop")
    stat = 0.0
    for _, grp in frame.groupby("g"):
        o1, e1 = grp["y"].sum(), grp["p"].sum()
        o0, e0 = len(grp) - o1, len(grp) - e1
        stat += (o1 - e1) ** 2 / e1 + (o0 - e0) ** 2 / e0
    dof = frame["g"].nunique() - 2
    return stat, dof, sps.chi2.sf(stat, dof)


@pytest.mark.parametrize("rounding", [None, 2])
def test_hosmer_lemeshow_matches_independent_computation(overconfident, rounding):
    y, prob = overconfident
    p = prob if rounding is None else np.clip(np.round(prob, rounding), 0.01, 0.99)
    stat_ref, dof_ref, p_ref = hl_reference(y, p)
    stat, dof, pval = hosmer_lemeshow(y, p)
    assert dof == dof_ref
    assert stat == pytest.approx(stat_ref, rel=1e-9)
    assert pval == pytest.approx(p_ref, rel=1e-9)
    assert pval < 0.05  # the miscalibration is detected


def test_hosmer_lemeshow_small_sample_counts_only_formed_groups():
    # 8 cases, 10 requested groups: at least 2 quantile bins stay empty and are not groups.
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    p = np.array([0.1, 0.9, 0.4, 0.6, 0.35, 0.2, 0.8, 0.7])
    stat_ref, dof_ref, p_ref = hl_reference(y, p)
    stat, dof, pval = hosmer_lemeshow(y, p)
    assert dof == dof_ref == 6
    assert stat == pytest.approx(stat_ref, rel=1e-9)
    assert pval == pytest.approx(p_ref, rel=1e-9)


def test_hosmer_lemeshow_needs_three_groups():
    with pytest.raises(InputError, match="at least 3 risk groups"):
        hosmer_lemeshow([0, 1, 0, 1], [0.2, 0.2, 0.8, 0.8])


# ------------------------------------------------------------------------------ decision curve


def test_net_benefit_by_hand():
    # n = 5, prevalence 3/5.
    # pt 0.20: positives {.9,.4,.3,.6,.2}: TP 3, FP 2 -> 3/5 - 2/5 * 0.25 = 1/2
    # pt 0.25: positives {.9,.4,.3,.6}:    TP 2, FP 2 -> 2/5 - 2/5 * 1/3  = 4/15
    # pt 0.50: positives {.9,.6}:          TP 1, FP 1 -> 1/5 - 1/5 * 1    = 0
    # treat all at 0.25: 3/5 - 2/5 * 1/3 = 7/15
    y = [1, 1, 0, 0, 1]
    p = [0.9, 0.4, 0.3, 0.6, 0.2]
    dc = decision_curve(y, p, [0.2, 0.25, 0.5])
    np.testing.assert_allclose(dc["net_benefit"], [1 / 2, 4 / 15, 0.0], atol=1e-12)
    assert dc["treat_all"].iloc[1] == pytest.approx(7 / 15)
    assert dc["treat_all"].iloc[2] == pytest.approx(3 / 5 - 2 / 5)
    assert (dc["treat_none"] == 0).all()
    assert dc["tp"].tolist() == [3, 2, 1]
    assert dc["fp"].tolist() == [2, 2, 1]


@pytest.mark.parametrize("bad", [[0.0, 0.5], [0.5, 1.0], []])
def test_decision_curve_rejects_thresholds_outside_open_interval(bad):
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        decision_curve([0, 1], [0.2, 0.8], bad)


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "func",
    [
        auc_delong,
        youden_cutoff,
        calibration,
        hosmer_lemeshow,
        roc_curve_points,
    ],
)
def test_single_class_is_refused(func):
    with pytest.raises(InputError, match="both positive"):
        func([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4])


def test_nan_score_is_refused():
    with pytest.raises(InputError, match="missing or infinite"):
        auc_delong([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4])


def test_length_mismatch_is_refused():
    with pytest.raises(InputError, match="3 values but there are 4 labels"):
        binary_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3], 0.5)


@pytest.mark.parametrize("labels", [[0, 2, 1, 0], [0, np.nan, 1, 0], ["b", "m", "m", "b"]])
def test_bad_labels_are_refused(labels):
    with pytest.raises(InputError, match=r"(?i)label"):
        auc_delong(labels, [0.1, 0.2, 0.3, 0.4])


def test_non_probability_refused_by_calibration():
    with pytest.raises(InputError, match=r"probabilities in \[0, 1\]"):
        calibration([0, 1, 0, 1], [-1.0, 2.0, 0.3, 0.4])


def test_non_numeric_scores_refused():
    with pytest.raises(InputError, match="non-numeric"):
        auc_delong([0, 1], ["low", "high"])
