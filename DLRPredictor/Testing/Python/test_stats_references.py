"""The patient-level and reclassification statistics against references outside this code base.

Each reference is either a published worked example or a value computed by another library
on the data written out below; the source of every recorded number is given next to it.

- Obuchowski's clustered AUC, its variance and the clustered paired test: ``doAUCcluster`` of the
  FDA's DIDSR/mitoticFigureCounts R package (``R/doAUCcluster.R``, commit 5675b0b, an adaptation of
  the Cleveland Clinic's ``funcs_clusteredROC.R`` by Obuchowski's group), run in R 4.2.2.
- DeLong's variance, CI and paired test, and the unpaired test: pROC 1.18.0 (``var(roc,
  method="delong")``, ``ci.auc``, ``roc.test(method="delong")``), R 4.2.2.
- Continuous and categorical NRI with Pencina's standard errors, and the IDI: Hmisc 4.8.0
  ``improveProb`` (categorical: applied to the category index of each risk), R 4.2.2.
- Categorical NRI, its 95% CI and p from a published reclassification table: Eur Heart J
  2020;41(35):3325-3333 (doi 10.1093/eurheartj/ehaa571), Table 2, three model comparisons at the
  5% risk threshold with 338 events and 14 260 non-events.
- Bootstrap percentile intervals: scipy.stats.bootstrap (method="percentile") on the same data
  with its own resamples, so the two agree within Monte Carlo error (tolerance stated below).
- Holm: statsmodels ``multipletests`` (test_clustered_stats.py).

R values were printed with ``options(digits=17)``; both sides compute in double precision with a
different order of summation, hence the relative tolerance 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.evaluation.auc import auc_delong, delong_unpaired, pairwise_delong
from DLRPredictorLib.evaluation.bootstrap import (
    BootstrapSettings,
    bootstrap_auc,
    bootstrap_net_benefit,
    bootstrap_ratios,
)
from DLRPredictorLib.evaluation.clustered_auc import auc_obuchowski, cluster_codes, pairwise_obuchowski
from DLRPredictorLib.evaluation.reclassification import integrated_discrimination, net_reclassification
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

REL = 1e-9

# 56 images of 30 patients (1-3 images each; some patients with images of both classes), two
# scores with ties and a shared patient effect. Drawn once with numpy and written out here so that
# the R runs and this test read the same numbers.
PID = [1, 2, 2, 2, 3, 4, 5, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10, 10, 11, 12, 13, 13, 13, 14, 15, 16,
       17, 17, 17, 18, 18, 19, 20, 21, 21, 22, 22, 23, 23, 23, 24, 24, 25, 25, 25, 26, 27, 27, 28, 28,
       29, 29, 29, 30]  # fmt: skip
Y = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0,
     0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1]  # fmt: skip
A = [0.49, 0.26, 0.17, 0.22, 0.4, 0.03, 0.68, 0.3, 0.55, 0.63, 0.73, 0.97, 0.99, 0.98, 0.02, 0.04,
     0.04, 0.72, 0.63, 0.46, 0.8, 0.28, 0.47, 0.08, 0.48, 0.35, 0.11, 0.64, 0.84, 0.75, 0.46, 0.75,
     0.63, 0.78, 0.45, 0.5, 0.44, 0.27, 0.61, 0.44, 0.22, 0.3, 0.08, 0.33, 0.75, 0.52, 0.25, 0.84,
     0.47, 0.26, 0.06, 0.13, 0.46, 0.64, 0.49, 0.67]  # fmt: skip
B = [0.41, 0.4, 0.37, 0.1, 0.93, 0.01, 0.54, 0.3, 0.77, 0.22, 0.27, 0.71, 0.66, 0.81, 0.11, 0.04,
     0.02, 0.53, 0.58, 0.55, 0.41, 0.41, 0.54, 0.07, 0.3, 0.23, 0.05, 0.33, 0.84, 0.94, 0.14, 0.63,
     0.67, 0.81, 0.31, 0.48, 0.27, 0.58, 0.73, 0.32, 0.43, 0.59, 0.26, 0.18, 0.77, 0.58, 0.49, 0.66,
     0.61, 0.69, 0.09, 0.13, 0.1, 0.71, 0.49, 0.5]  # fmt: skip
# An independent second sample (50 cases) for the unpaired test.
Y2 = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1,
      0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # fmt: skip
C = [0.51, 0.6, 0.76, 1.42, 0.62, 1.4, 1.31, 0.91, 0.9, 1.48, 0.73, 0.43, 0.08, 0.5, 0.95, 0.48, 0.14,
     0.51, 0.38, 0.43, 0.77, 0.5, 0.02, 0.4, 0.89, 0.3, 0.66, 0.51, 0.57, 0.22, 0.33, 1.28, 0.89, 0.73,
     0.19, 0.29, 1.46, 0.51, 0.74, 1.45, 0.85, 0.68, 1.35, 0.16, 0.72, 0.96, 0.36, 0.09, 0.52,
     0.74]  # fmt: skip

y, a, b, pid = np.array(Y), np.array(A), np.array(B), np.array(PID)
SETTINGS = BootstrapSettings(n_resamples=200, seed=3)  # the bootstrap columns are not checked here


# ------------------------------------------------------------------ Obuchowski (R doAUCcluster)


def test_clustered_auc_matches_doAUCcluster():
    # doAUCcluster(predictor1 = a, response = y, clusterID = pid, alpha = 0.05)
    got = auc_obuchowski(y, a, pid)
    assert got.auc == pytest.approx(0.84935897435897434, rel=REL)
    assert got.se**2 == pytest.approx(0.0032339594057032212, rel=REL)
    assert got.ci_low == pytest.approx(0.73789991512732411, rel=REL)
    assert got.ci_high == pytest.approx(0.96081803359062457, rel=REL)
    assert (got.n_clusters, got.n_clusters_positive, got.n_clusters_negative) == (30, 16, 19)


def test_clustered_paired_test_matches_doAUCcluster():
    # doAUCcluster(predictor1 = a, predictor2 = b, response = y, clusterID = pid, alpha = 0.05)
    (got,) = pairwise_obuchowski(y, {"a": a, "b": b}, pid)
    assert got.auc_b == pytest.approx(0.81282051282051282, rel=REL)
    assert got.diff == pytest.approx(0.03653846153846152, rel=REL)
    assert got.se_diff**2 == pytest.approx(0.0046089805196547883, rel=REL)
    assert got.p == pytest.approx(0.5904354490190837357, rel=REL)
    assert auc_obuchowski(y, b, pid).se ** 2 == pytest.approx(0.0046459371454342238, rel=REL)


# ------------------------------------------------------------------ DeLong (R pROC)


def test_delong_matches_proc():
    # roc(y, a, direction = "<"); var(., method = "delong"); ci.auc(., method = "delong")
    got = auc_delong(y, a)
    assert got.se**2 == pytest.approx(0.0025384898773492936, rel=REL)
    assert (got.ci_low, got.ci_high) == pytest.approx((0.75060926888808999, 0.94810867982986002), rel=REL)
    # roc.test(roc_a, roc_b, method = "delong", paired = TRUE)
    (paired,) = pairwise_delong(y, {"a": a, "b": b})
    assert paired.z == pytest.approx(0.63421336483025748, rel=REL)
    assert paired.p == pytest.approx(0.52594158664397606, rel=REL)
    # cov(roc_a, roc_b, method = "delong") recovered from var(a) + var(b) - 2 cov = se_diff^2
    var_b = auc_delong(y, b).se ** 2
    assert (got.se**2 + var_b - paired.se_diff**2) / 2 == pytest.approx(0.0012157348840372713, rel=1e-8)


def test_unpaired_delong_matches_proc_statistic():
    # roc.test(roc_a, roc_c, method = "delong", paired = FALSE): D = -0.2465706497381584. pROC
    # refers D to a t distribution (p 0.80573); this code to the normal, as DeLong's test is
    # asymptotic, so only the statistic is compared and the p-value is the normal tail of D.
    got = delong_unpaired(y, a, np.array(Y2), np.array(C))
    assert got.z == pytest.approx(-0.2465706497381584, rel=REL)
    assert got.p == pytest.approx(2 * sps.norm.sf(0.2465706497381584), rel=REL)


# ------------------------------------------------------------------ NRI and IDI (R Hmisc)


def test_continuous_nri_and_idi_match_hmisc_improveprob():
    # improveProb(x1 = b, x2 = a, y = y): a is the new model, b the old
    codes = np.arange(y.size)
    nri = net_reclassification(y, a, b, codes, SETTINGS, cutoffs=None)
    assert nri.value == pytest.approx(-0.0230769230769230504, rel=REL)
    assert nri.events == pytest.approx(0.0769230769230769273, rel=REL)
    assert nri.nonevents == pytest.approx(-0.0999999999999999778, rel=REL)
    assert nri.se == pytest.approx(0.2548372856917303086, rel=REL)
    assert nri.z == pytest.approx(-0.0905555206110559979, rel=REL)
    idi = integrated_discrimination(y, a, b, codes, SETTINGS)
    assert idi.value == pytest.approx(0.0362051282051282022, rel=REL)
    assert idi.events == pytest.approx(0.0415384615384615380, rel=REL)  # Hmisc improveSens
    assert idi.nonevents == pytest.approx(-0.0053333333333333349, rel=REL)  # Hmisc improveSpec
    assert idi.se == pytest.approx(0.0570400420086296309, rel=REL)
    assert idi.z == pytest.approx(0.6347317941955705756, rel=REL)


def test_categorical_nri_matches_hmisc_on_category_indices():
    # improveProb(x1 = findInterval(b, cuts) / 10, x2 = findInterval(a, cuts) / 10, y = y) with
    # cuts 0.25, 0.5, 0.75; findInterval puts a risk equal to a cut into the higher category, as
    # this code does (the data hold 0.25 and 0.5).
    got = net_reclassification(y, a, b, np.arange(y.size), SETTINGS, cutoffs=(0.25, 0.5, 0.75))
    assert got.value == pytest.approx(0.0769230769230769, rel=REL)
    assert got.events == pytest.approx(0.26923076923076922 - 0.19230769230769232, rel=REL)
    assert got.nonevents == pytest.approx(0.0, abs=1e-15)
    assert got.se == pytest.approx(0.17566225990648762, rel=REL)
    assert got.z == pytest.approx(0.43790326370630933, rel=REL)


# ------------------------------------------------------------------ a published reclassification table


def _table_cases(events: tuple[int, ...], nonevents: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Cases of a two-category (< 5%, >= 5%) reclassification table: counts (stay low, up, down,
    stay high) of events and of non-events; risks 3% and 7% stand for the two categories."""
    moves = ((0.03, 0.03), (0.03, 0.07), (0.07, 0.03), (0.07, 0.07))
    lab, old, new = [], [], []
    for label, counts in ((1, events), (0, nonevents)):
        for (o, n), k in zip(moves, counts, strict=True):
            lab += [label] * k
            old += [o] * k
            new += [n] * k
    return np.array(lab), np.array(new), np.array(old)


# Eur Heart J 2020;41:3325-3333, Table 2 (derivation cohort, 338 CVD deaths, 14 260 without):
# counts, then the published NRI, its 95% CI, p and the events' / non-events' components.
EHJ_TABLE2 = {
    "original -> recalibrated SCORE": (
        (67, 10, 47, 214),
        (8885, 288, 2377, 2710),
        None,
        (-0.01, 0.08),
        0.09,
        (-0.11, 0.15),
    ),
    "recalibrated -> HAPIEE SCORE": (
        (90, 24, 16, 208),
        (10671, 591, 654, 2344),
        0.03,
        (-0.01, 0.07),
        0.14,
        (0.024, 0.004),
    ),
    "original -> HAPIEE SCORE": (
        (60, 17, 46, 215),
        (8774, 399, 2551, 2536),
        0.07,
        (0.02, 0.11),
        0.005,
        (-0.086, 0.15),
    ),
}


@pytest.mark.parametrize("name", list(EHJ_TABLE2))
def test_categorical_nri_reproduces_a_published_table(name):
    # Tolerance: half a unit of the published last digit; the CI limits 0.005 + 1e-4 because one
    # published limit (0.07) lies on a rounding boundary (computed 0.06499). The first comparison's
    # printed NRI, 0.03, disagrees with its own printed components (-11% + 15%) and CI midpoint
    # (0.035), so only its components, CI and p are compared (computed NRI 0.037).
    events, nonevents, nri, ci, p, (comp_e, comp_n) = EHJ_TABLE2[name]
    lab, new, old = _table_cases(events, nonevents)
    settings = BootstrapSettings(n_resamples=100, seed=1)
    got = net_reclassification(lab, new, old, np.arange(lab.size), settings, cutoffs=(0.05,))
    digits = lambda v: 0.5 * 10.0 ** -len(f"{abs(v):.10g}".split(".")[1])  # noqa: E731
    if nri is not None:
        assert abs(got.value - nri) <= digits(nri)
    assert abs(got.ci_low - ci[0]) <= 0.0051 and abs(got.ci_high - ci[1]) <= 0.0051
    assert abs(got.p - p) <= digits(p)
    assert abs(got.events - comp_e) <= digits(comp_e)
    assert abs(got.nonevents - comp_n) <= digits(comp_n)


# ------------------------------------------------------------------ bootstrap (scipy.stats.bootstrap)

# Two percentile bootstraps with 4000 resamples each, with different generators: their limits differ
# by Monte Carlo error only. Tolerance 0.3 SE of the statistic: for a smooth statistic the SD of
# the difference of two 2.5% limits is about 0.06 SE; on these 56 cases (a lattice of AUCs,
# proportions and net benefits) the largest difference over five pairs of seeds was 0.18 SE.
N_BOOT = 4000
TOL_SE = 0.3


def _scipy_cluster_interval(
    statistic, n_clusters: int, seed: int, vectorized: bool = False
) -> tuple[float, float]:
    res = sps.bootstrap(
        (np.arange(n_clusters),),
        statistic,
        n_resamples=N_BOOT,
        method="percentile",
        vectorized=vectorized,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def test_cluster_bootstrap_auc_agrees_with_scipy():
    codes = cluster_codes(pid, y.size)
    members = [np.flatnonzero(codes == k) for k in range(int(codes.max()) + 1)]

    def auc_of(drawn):
        idx = np.concatenate([members[k] for k in drawn])
        return roc_auc_score(y[idx], a[idx]) if len(set(y[idx].tolist())) == 2 else np.nan

    low, high = _scipy_cluster_interval(auc_of, len(members), seed=5)
    got = bootstrap_auc(y, a, codes, BootstrapSettings(n_resamples=N_BOOT, seed=9))
    se = auc_obuchowski(y, a, pid).se
    assert abs(got.low - low) < TOL_SE * se and abs(got.high - high) < TOL_SE * se


def test_case_bootstrap_sensitivity_and_net_benefit_agree_with_scipy():
    called = a >= 0.5
    tp, pos = (called & (y == 1)).astype(float), (y == 1).astype(float)
    (sens,) = bootstrap_ratios(tp[:, None], pos[:, None], np.arange(y.size), BootstrapSettings(N_BOOT, 9))
    low, high = _scipy_cluster_interval(
        lambda i, axis: tp[i].sum(axis) / pos[i].sum(axis), y.size, seed=6, vectorized=True
    )
    se = np.sqrt(tp.sum() / pos.sum() * (1 - tp.sum() / pos.sum()) / pos.sum())
    assert abs(sens.low - low) < TOL_SE * se and abs(sens.high - high) < TOL_SE * se
    pt = 0.3
    contrib = (a >= pt) * (y - (1 - y) * pt / (1 - pt))  # NB = mean of this
    nb_low, nb_high = bootstrap_net_benefit(
        y, a, np.array([pt]), np.arange(y.size), BootstrapSettings(N_BOOT, 9)
    )
    low, high = _scipy_cluster_interval(
        lambda i, axis: contrib[i].mean(axis), y.size, seed=7, vectorized=True
    )
    se = contrib.std(ddof=1) / np.sqrt(y.size)
    assert abs(nb_low[0] - low) < TOL_SE * se and abs(nb_high[0] - high) < TOL_SE * se
