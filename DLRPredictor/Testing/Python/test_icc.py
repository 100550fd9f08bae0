"""ICC across contour variants: a published worked example, an independent ANOVA, the screen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import ConfigError, InputError
from DLRPredictorLib.models.icc import icc_keep, icc_two_way, variant_icc
from DLRPredictorLib.training.config import load_config

# Shrout P.E., Fleiss J.L. (1979) "Intraclass correlations: uses in assessing rater reliability",
# Psychological Bulletin 86(2):420-428, Table 2: six targets rated by four judges.
SHROUT_FLEISS_TABLE2 = np.array(
    [
        [9, 2, 5, 8],
        [6, 1, 3, 2],
        [8, 4, 6, 8],
        [7, 1, 2, 6],
        [10, 5, 6, 9],
        [6, 2, 4, 7],
    ],
    dtype=float,
)
# Their Table 4 (published to two decimals): ICC(2,1) = .29, ICC(3,1) = .71.
PUBLISHED_ICC21, PUBLISHED_ICC31 = 0.29, 0.71


def test_shrout_fleiss_worked_example():
    res = icc_two_way(SHROUT_FLEISS_TABLE2)
    assert (res.n_targets, res.n_raters) == (6, 4)
    # the published values are rounded to two decimals
    assert abs(res.icc21[0] - PUBLISHED_ICC21) < 0.005
    assert abs(res.icc31[0] - PUBLISHED_ICC31) < 0.005


def _statsmodels_icc(x: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) and ICC(3,1) from statsmodels' two-way ANOVA table (an independent route to the
    mean squares: OLS with target and rater factors)."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    n, k = x.shape
    frame = pd.DataFrame(
        {
            "v": x.ravel(),
            "t": np.repeat(np.arange(n), k).astype(str),
            "r": np.tile(np.arange(k), n).astype(str),
        }
    )
    table = anova_lm(smf.ols("v ~ C(t) + C(r)", data=frame).fit())
    msr, msc, mse = (table.loc[i, "sum_sq"] / table.loc[i, "df"] for i in ("C(t)", "C(r)", "Residual"))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n), (msr - mse) / (msr + (k - 1) * mse)


def test_matches_an_independent_anova_on_random_features():
    rng = np.random.default_rng(7)
    n, k, p = 40, 5, 6
    target = rng.normal(size=(n, 1, p)) * rng.uniform(0.2, 3, size=p)
    rater = rng.normal(size=(1, k, p)) * rng.uniform(0, 1, size=p)  # systematic contour shifts
    x = 10 + target + rater + rng.normal(size=(n, k, p))
    res = icc_two_way(x)
    for f in range(p):
        want21, want31 = _statsmodels_icc(x[:, :, f])
        assert res.icc21[f] == pytest.approx(want21, abs=1e-10)
        assert res.icc31[f] == pytest.approx(want31, abs=1e-10)


def test_agreement_penalises_a_systematic_shift_that_consistency_ignores():
    rng = np.random.default_rng(0)
    lesions = rng.normal(size=(30, 1))
    shifted = np.hstack([lesions, lesions + 2.0, lesions - 2.0])  # dilate/erode-like offsets
    res = icc_two_way(shifted)
    assert res.icc31[0] == pytest.approx(1.0)
    assert res.icc21[0] < 0.3


def test_variant_icc_uses_lesions_with_every_variant_and_the_screen_keeps_no_variance_features():
    rng = np.random.default_rng(1)
    table = {}
    for i in range(20):
        base = rng.normal(size=3)
        for j, v in enumerate(("exact", "erode2", "dilate2")):
            # feature 0 robust, feature 1 pure noise across variants, feature 2 constant
            table[(f"c{i}", v)] = np.array([base[0] + 0.01 * j, rng.normal(), 5.0])
    del table[("c0", "erode2")]
    res = variant_icc(table, [f"c{i}" for i in range(20)], ["exact", "erode2", "dilate2"])
    assert res.n_targets == 19
    assert res.icc21[0] > 0.99 and res.icc21[1] < 0.5 and np.isnan(res.icc21[2])
    np.testing.assert_array_equal(icc_keep(res, 0.75), [True, False, True])
    with pytest.raises(InputError, match="at least 2 variants"):
        variant_icc(table, ["c1"], ["exact"])
    with pytest.raises(InputError, match="missing or infinite"):
        icc_two_way(np.array([[1.0, np.nan], [2.0, 3.0]]))


def test_the_config_option_is_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("selection: {icc_min: 0.75}\n")
    # Exact: a parsed YAML literal.
    assert load_config(path).selection.icc_min == 0.75
    assert load_config(None).selection.icc_min is None  # off by default
    for text, why in (
        ("selection: {icc_min: 1.5}\n", "icc_min"),
        ("selection: {icc_min: high}\n", "icc_min"),
        ("selection: {icc_min: 0.75}\ncontours: {variants: [exact]}\n", "two contour variants"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_config(path)
