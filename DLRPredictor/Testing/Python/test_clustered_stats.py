"""Patient-level statistics against independent references: the clustered AUC (Obuchowski 1997)
against a loop implementation of the paper's equations and against DeLong where the two must
agree exactly; the unpaired DeLong test against an O(m*n) computation; Holm against statsmodels;
the bootstrap intervals against the normal-theory intervals they estimate; NRI and IDI against
hand-counted examples and a direct implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.evaluation.auc import auc_delong, delong_unpaired, pairwise_delong
from DLRPredictorLib.evaluation.bootstrap import (
    BootstrapSettings,
    bootstrap_auc,
    bootstrap_net_benefit,
    bootstrap_ratios,
    resample_counts,
)
from DLRPredictorLib.evaluation.clustered_auc import auc_obuchowski, cluster_codes, pairwise_obuchowski
from DLRPredictorLib.evaluation.multiplicity import holm_adjust
from DLRPredictorLib.evaluation.reclassification import integrated_discrimination, net_reclassification
from scipy import stats as sps
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

Z = sps.norm.ppf(0.975)


# ------------------------------------------------------------------------------- reference code


def psi(x: float, y: float) -> float:
    return 1.0 if x > y else (0.5 if x == y else 0.0)


def obuchowski_loops(y: np.ndarray, a: np.ndarray, b: np.ndarray, patients: np.ndarray) -> dict[str, float]:
    """Obuchowski (1997) equations written out with loops over patients and cases.

    theta = sum over all positive-negative pairs of psi / (N1 N0); V10(X_ij) = mean over negatives,
    V01(Y_ik) = mean over positives; V10_i, V01_i their sums in patient i; S10, S01, S11 and the
    variance S10/N1 + S01/N0 + 2 S11/(N1 N0), and the covariance of two modalities.
    """
    ids = sorted(set(patients.tolist()))
    pos_idx = [k for k in range(y.size) if y[k] == 1]
    neg_idx = [k for k in range(y.size) if y[k] == 0]
    n1, n0 = len(pos_idx), len(neg_idx)

    def parts(s: np.ndarray) -> tuple[float, list[float], list[float]]:
        theta = sum(psi(s[i], s[j]) for i in pos_idx for j in neg_idx) / (n1 * n0)
        v10_i, v01_i = [], []
        for pid in ids:
            v10_i.append(
                sum(sum(psi(s[i], s[j]) for j in neg_idx) / n0 for i in pos_idx if patients[i] == pid)
            )
            v01_i.append(
                sum(sum(psi(s[i], s[j]) for i in pos_idx) / n1 for j in neg_idx if patients[j] == pid)
            )
        return theta, v10_i, v01_i

    m = [sum(1 for i in pos_idx if patients[i] == pid) for pid in ids]
    n = [sum(1 for j in neg_idx if patients[j] == pid) for pid in ids]
    i10 = sum(1 for v in m if v > 0)
    i01 = sum(1 for v in n if v > 0)
    big_i = len(ids)
    ta, xa, ya = parts(a)
    tb, xb, yb = parts(b)

    def s10(x1, t1, x2, t2):
        return i10 / ((i10 - 1) * n1) * sum((x1[k] - m[k] * t1) * (x2[k] - m[k] * t2) for k in range(big_i))

    def s01(y1, t1, y2, t2):
        return i01 / ((i01 - 1) * n0) * sum((y1[k] - n[k] * t1) * (y2[k] - n[k] * t2) for k in range(big_i))

    def s11(x1, t1, y2, t2):
        return big_i / (big_i - 1) * sum((x1[k] - m[k] * t1) * (y2[k] - n[k] * t2) for k in range(big_i))

    var_a = s10(xa, ta, xa, ta) / n1 + s01(ya, ta, ya, ta) / n0 + 2 * s11(xa, ta, ya, ta) / (n1 * n0)
    var_b = s10(xb, tb, xb, tb) / n1 + s01(yb, tb, yb, tb) / n0 + 2 * s11(xb, tb, yb, tb) / (n1 * n0)
    cov = (
        s10(xa, ta, xb, tb) / n1
        + s01(ya, ta, yb, tb) / n0
        + (s11(xa, ta, yb, tb) + s11(xb, tb, ya, ta)) / (n1 * n0)
    )
    return {"auc_a": ta, "auc_b": tb, "var_a": var_a, "var_b": var_b, "cov": cov}


def delong_variance_direct(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong (1988) variance by the O(m*n) kernel (S10/m + S01/n)."""
    x, z = s[y == 1], s[y == 0]
    kernel = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    return float(kernel.mean()), float(v10.var(ddof=1) / x.size + v01.var(ddof=1) / z.size)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """70 patients with 1-3 images each (some patients with a positive and a negative image),
    two correlated scores rounded to 0.1 (ties), a shared patient effect."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 4, size=70)
    patients = np.repeat(np.arange(70), sizes)
    patient_label = rng.random(70) < 0.4
    y = patient_label[patients].astype(int)
    flip = rng.random(y.size) < 0.1  # a few patients with both classes
    y = np.where(flip, 1 - y, y)
    effect = rng.normal(size=70)[patients]
    a = np.round(1 / (1 + np.exp(-(1.3 * y + effect + 0.5 * rng.normal(size=y.size)))), 1)
    b = np.round(1 / (1 + np.exp(-(0.8 * y + 0.8 * effect + rng.normal(size=y.size)))), 1)
    return y, a, b, patients


# ------------------------------------------------------------------------------- clustered AUC


def test_obuchowski_matches_the_papers_equations_written_as_loops(clustered):
    y, a, b, patients = clustered
    ref = obuchowski_loops(y, a, b, patients)
    got_a = auc_obuchowski(y, a, patients)
    assert got_a.auc == pytest.approx(ref["auc_a"], rel=1e-12)
    assert got_a.se == pytest.approx(math.sqrt(ref["var_a"]), rel=1e-9)
    (test,) = pairwise_obuchowski(y, {"a": a, "b": b}, patients)
    var_diff = ref["var_a"] + ref["var_b"] - 2 * ref["cov"]
    assert test.se_diff == pytest.approx(math.sqrt(var_diff), rel=1e-9)
    assert test.p == pytest.approx(
        2 * sps.norm.sf(abs(ref["auc_a"] - ref["auc_b"]) / math.sqrt(var_diff)), rel=1e-9
    )
    assert abs(got_a.se - auc_delong(y, a).se) > 0.05 * got_a.se  # the clustering changes the SE


def test_one_case_per_patient_equals_delong(clustered):
    y, a, b, _ = clustered
    singles = np.arange(y.size)
    auc, var = delong_variance_direct(y, a)
    got = auc_obuchowski(y, a, singles)
    assert got.auc == pytest.approx(auc, rel=1e-12)
    assert got.se == pytest.approx(math.sqrt(var), rel=1e-9)
    (clus,) = pairwise_obuchowski(y, {"a": a, "b": b}, [f"p{i}" for i in singles])
    (plain,) = pairwise_delong(y, {"a": a, "b": b})
    assert clus.se_diff == pytest.approx(plain.se_diff, rel=1e-9)
    assert clus.p == pytest.approx(plain.p, rel=1e-9)


def test_each_case_twice_in_its_own_patient_gives_the_original_delong_variance(clustered):
    # Duplicating every image inside its patient adds no information: Obuchowski's variance of
    # the doubled set equals DeLong's of the original set exactly, whereas DeLong on the doubled
    # set, taking the copies as independent, is about half as large.
    y, a, _, _ = clustered
    y2, a2, pid2 = np.repeat(y, 2), np.repeat(a, 2), np.repeat(np.arange(y.size), 2)
    original = auc_delong(y, a)
    assert auc_obuchowski(y2, a2, pid2).se == pytest.approx(original.se, rel=1e-9)
    assert auc_delong(y2, a2).se < 0.75 * original.se


def test_cluster_ids_are_checked():
    with pytest.raises(InputError, match="one cluster id per case"):
        cluster_codes(["a", "b"], 3)
    with pytest.raises(InputError, match="no cluster id"):
        cluster_codes(["a", "", "b"], 3)
    assert cluster_codes(["x", "y", "x"], 3).tolist() == [0, 1, 0]


# ------------------------------------------------------------------------------- unpaired DeLong, Holm


def test_unpaired_delong_matches_direct_variances(clustered):
    y, a, _, _ = clustered
    rng = np.random.default_rng(3)
    y_ext = (rng.random(60) < 0.5).astype(int)
    s_ext = np.round(rng.random(60) + 0.4 * y_ext, 1)
    auc1, var1 = delong_variance_direct(y, a)
    auc2, var2 = delong_variance_direct(y_ext, s_ext)
    got = delong_unpaired(y, a, y_ext, s_ext)
    z = (auc1 - auc2) / math.sqrt(var1 + var2)
    assert got.diff == pytest.approx(auc1 - auc2, rel=1e-12)
    assert got.z == pytest.approx(z, rel=1e-9)
    assert got.p == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.2],
        [0.5, 0.5, 0.01, 0.01, 0.9],  # ties
        [0.001],
        [0.3, 0.02, 0.04, 0.04, 0.6, 0.011, 0.9, 0.049],
    ],
)
def test_holm_matches_statsmodels(p):
    _, ref, _, _ = multipletests(p, method="holm")
    np.testing.assert_allclose(holm_adjust(p), ref, rtol=1e-12, atol=0)


def test_holm_leaves_nan_out_of_the_family():
    got = holm_adjust([0.01, float("nan"), 0.04])
    _, ref, _, _ = multipletests([0.01, 0.04], method="holm")
    assert math.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2]], ref, rtol=1e-12)


# ------------------------------------------------------------------------------- bootstrap


def test_settings_are_checked():
    with pytest.raises(InputError, match="at least 100 resamples"):
        BootstrapSettings(n_resamples=10)
    with pytest.raises(InputError, match="confidence level"):
        BootstrapSettings(level=1.5)


def test_resamples_draw_whole_clusters_and_are_reproducible():
    settings = BootstrapSettings(n_resamples=200, seed=5)
    counts = resample_counts(30, settings)
    assert counts.shape == (200, 30)
    assert (counts.sum(axis=1) == 30).all()  # as many clusters as there are, with replacement
    np.testing.assert_array_equal(counts, resample_counts(30, settings))  # same seed, same draws
    assert not np.array_equal(counts, resample_counts(30, BootstrapSettings(n_resamples=200, seed=6)))


def test_weighted_auc_equals_sklearn_on_explicit_resamples(clustered):
    # An implementation check of the count weighting (not an independent statistical reference):
    # each resample rebuilt as an explicit data set and scored by sklearn.
    y, a, _, patients = clustered
    codes = cluster_codes(patients, y.size)
    settings = BootstrapSettings(n_resamples=300, seed=11)
    got = bootstrap_auc(y, a, codes, settings)
    counts = resample_counts(int(codes.max()) + 1, settings)
    aucs = []
    for row in counts:
        idx = np.repeat(np.arange(y.size), row[codes])
        if len(set(y[idx].tolist())) == 2:
            aucs.append(roc_auc_score(y[idx], a[idx]))
    assert got.n_used == len(aucs)
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(aucs, [0.025, 0.975])), rel=1e-12)


def test_case_bootstrap_agrees_with_delong_and_cluster_bootstrap_with_obuchowski():
    # Independent references: the bootstrap and the asymptotic variances estimate the same
    # sampling spread; with 400 patients the interval widths agree within 15%.
    rng = np.random.default_rng(21)
    n_pat = 400
    sizes = rng.integers(1, 4, size=n_pat)
    patients = np.repeat(np.arange(n_pat), sizes)
    y = (rng.random(n_pat) < 0.35)[patients].astype(int)
    effect = rng.normal(size=n_pat)[patients]
    s = 1.2 * y + effect + 0.4 * rng.normal(size=y.size)
    settings = BootstrapSettings(n_resamples=2000, seed=1)
    clus = auc_obuchowski(y, s, patients)
    boot = bootstrap_auc(y, s, cluster_codes(patients, y.size), settings)
    assert (boot.high - boot.low) == pytest.approx(2 * Z * clus.se, rel=0.15)
    plain = auc_delong(y, s)
    case_boot = bootstrap_auc(y, s, np.arange(y.size), settings)
    assert (case_boot.high - case_boot.low) == pytest.approx(2 * Z * plain.se, rel=0.15)
    assert (boot.high - boot.low) > 1.2 * (case_boot.high - case_boot.low)  # clustering matters here


def test_bootstrap_proportion_and_net_benefit_agree_with_normal_theory():
    rng = np.random.default_rng(8)
    n = 600
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=n))))
    settings = BootstrapSettings(n_resamples=2000, seed=2)
    called = p >= 0.5
    (sens,) = bootstrap_ratios((called & (y == 1))[:, None], (y == 1)[:, None], np.arange(n), settings)
    k, m = int((called & (y == 1)).sum()), int(y.sum())
    se = math.sqrt(k / m * (1 - k / m) / m)
    assert (sens.high - sens.low) == pytest.approx(2 * Z * se, rel=0.15)
    pt = np.array([0.1, 0.3, 0.5])
    low, high = bootstrap_net_benefit(y, p, pt, np.arange(n), settings)
    for j, t in enumerate(pt):
        c = (p >= t) * (y - (1 - y) * t / (1 - t))  # each case's contribution to NB = mean(c)
        assert (high[j] - low[j]) == pytest.approx(2 * Z * c.std(ddof=1) / math.sqrt(n), rel=0.15)
        assert low[j] < c.mean() < high[j]


# ------------------------------------------------------------------------------- NRI and IDI


SETTINGS = BootstrapSettings(n_resamples=500, seed=4)


def test_categorical_nri_hand_example():
    # 5 events, 5 non-events, cut-offs 0.2 and 0.5 (categories <0.2, 0.2-0.5, >=0.5).
    # Events: up (0.1->0.3), up (0.4->0.6), down (0.6->0.4), same (0.3->0.45), same (0.7->0.9).
    # Non-events: down (0.3->0.1), down (0.6->0.3), up (0.1->0.25), same (0.05->0.15), same (0.5->0.5).
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    old = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.3, 0.6, 0.1, 0.05, 0.5])
    new = np.array([0.3, 0.6, 0.4, 0.45, 0.9, 0.1, 0.3, 0.25, 0.15, 0.5])
    got = net_reclassification(y, new, old, np.arange(10), SETTINGS, cutoffs=(0.2, 0.5))
    assert got.events == pytest.approx((2 - 1) / 5, rel=1e-12)
    assert got.nonevents == pytest.approx((2 - 1) / 5, rel=1e-12)
    assert got.value == pytest.approx(0.4, rel=1e-12)
    # Pencina 2008 variance: (p_up + p_down - (p_up - p_down)^2) / n per class
    var = (0.2 + 0.4 - 0.2**2) / 5 + (0.4 + 0.2 - 0.2**2) / 5
    assert got.se == pytest.approx(math.sqrt(var), rel=1e-12)
    # Continuous: events up 4 (0.1->0.3, 0.4->0.6, 0.3->0.45, 0.7->0.9), down 1;
    # non-events down 2, up 2, equal 1.
    cont = net_reclassification(y, new, old, np.arange(10), SETTINGS, cutoffs=None)
    assert cont.value == pytest.approx((4 - 1) / 5 + (2 - 2) / 5, rel=1e-12)


def test_idi_hand_example():
    y = np.array([1, 1, 0, 0, 0])
    old = np.array([0.5, 0.6, 0.4, 0.3, 0.2])
    new = np.array([0.7, 0.7, 0.3, 0.3, 0.1])
    got = integrated_discrimination(y, new, old, np.arange(5), SETTINGS)
    # events' mean risk 0.55 -> 0.70 (+0.15); non-events' 0.30 -> 0.2333 (-0.0667)
    assert got.events == pytest.approx(0.15, rel=1e-12)
    assert got.nonevents == pytest.approx(0.2 / 3, rel=1e-12)
    assert got.value == pytest.approx(0.15 + 0.2 / 3, rel=1e-12)
    se = math.sqrt(np.var([0.2, 0.1], ddof=1) / 2 + np.var([-0.1, 0.0, -0.1], ddof=1) / 3)
    assert got.se == pytest.approx(se, rel=1e-12)


def test_nri_and_idi_of_a_model_against_itself_are_zero_with_intervals_around_zero(clustered):
    y, a, _, patients = clustered
    codes = cluster_codes(patients, y.size)
    for imp in (
        net_reclassification(y, a, a, codes, SETTINGS),
        net_reclassification(y, a, a, codes, SETTINGS, cutoffs=None),
        integrated_discrimination(y, a, a, codes, SETTINGS),
    ):
        # Exact: every per-case difference of a score with itself is 0.0 in IEEE arithmetic, so
        # every sum, mean and resample of those differences is 0.0 too.
        assert imp.value == 0 and imp.boot_ci_low == 0 and imp.boot_ci_high == 0


def test_bootstrap_nri_equals_direct_computation_on_explicit_resamples(clustered):
    # Implementation check of the weighted totals against the definition applied to rebuilt sets.
    y, a, b, patients = clustered
    codes = cluster_codes(patients, y.size)
    got = net_reclassification(y, a, b, codes, SETTINGS, cutoffs=(0.3, 0.6))
    vals = []
    for row in resample_counts(int(codes.max()) + 1, SETTINGS):
        idx = np.repeat(np.arange(y.size), row[codes])
        yy, ca, cb = y[idx], np.digitize(a[idx], [0.3, 0.6]), np.digitize(b[idx], [0.3, 0.6])
        ev, ne = yy == 1, yy == 0
        vals.append(
            (np.sum(ca[ev] > cb[ev]) - np.sum(ca[ev] < cb[ev])) / ev.sum()
            + (np.sum(ca[ne] < cb[ne]) - np.sum(ca[ne] > cb[ne])) / ne.sum()
        )
    assert (got.boot_ci_low, got.boot_ci_high) == pytest.approx(
        tuple(np.quantile(vals, [0.025, 0.975])), rel=1e-9
    )
