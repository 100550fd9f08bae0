"""The contour gate of the DLR fusion (models/contour_gate.py): outline detail, weights, persistence.

The outline detail is checked against an independent perimeter (the complete elliptic integral in
scipy) and on PyRadiomics' own shape2D features of real rasterised outlines; the gated probability
against a logit blend written here with scipy's logit / expit.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.case import LesionSlice
from DLRPredictorLib.base.errors import ConfigError
from DLRPredictorLib.features import radiomics as rf
from DLRPredictorLib.inputs.contours import ellipse_mask
from DLRPredictorLib.models.contour_gate import (
    GATE_COLUMNS,
    ContourGatedFusion,
    ellipse_perimeter,
    gate_thresholds,
    outline_detail,
)
from DLRPredictorLib.models.fusion import StackingFusion
from DLRPredictorLib.models.selection import SelectionConfig
from DLRPredictorLib.models.signatures import Signature
from DLRPredictorLib.training.config import ConfigError as TrainConfigError
from DLRPredictorLib.training.config import load_config
from scipy.special import ellipe, expit, logit

FAST = SelectionConfig(lasso_cs=5, cv=3, max_features=5)
RAD = [f"rad{i}" for i in range(5)]
DL = [f"dl{i}" for i in range(4)]


@pytest.mark.parametrize("ratio", [1.0, 0.8, 0.5, 0.3])
def test_ellipse_perimeter_matches_the_elliptic_integral(ratio: float) -> None:
    major, minor = 40.0, 40.0 * ratio
    a, b = major / 2, minor / 2
    exact = 4 * a * ellipe(1 - (b / a) ** 2)  # perimeter = 4 a E(e^2)
    # Ramanujan's first formula: relative error 5.4e-5 at an axis ratio of 0.3, less above
    assert ellipse_perimeter(np.array([major]), np.array([minor]))[0] == pytest.approx(exact, rel=1e-4)
    detail = outline_detail(np.array([exact]), np.array([major]), np.array([minor]))[0]
    assert detail == pytest.approx(0, abs=1e-4)


def _shape2d(mask: np.ndarray) -> dict[str, float]:
    """PyRadiomics' shape2D features of a mask on a textured image (real extraction)."""
    rng = np.random.default_rng(3)
    image = (rng.normal(100, 20, mask.shape)).astype(np.float32)
    rows, cols = np.nonzero(mask)
    lesion = LesionSlice(
        image=image,
        mask=mask.astype(np.uint8),
        spacing=(0.1, 0.1),
        slice_index=0,
        bbox=(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1),
    )
    params = {
        "setting": {"force2D": True},
        "imageType": {"Original": {}},
        "featureClass": {"shape2D": []},
    }
    return rf.extract_features(lesion, params)


def _lobulated(n: int = 160, lobes: int = 7, depth: float = 0.25) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    radius = np.hypot(yy, xx)
    angle = np.arctan2(yy, xx)
    return (radius < 45 * (1 + depth * np.sin(lobes * angle))).astype(np.uint8)


def test_outline_detail_separates_a_lobulated_outline_from_its_ellipse() -> None:
    lobed = _lobulated()
    detail = {}
    for name, mask in (("lobulated", lobed), ("ellipse", ellipse_mask(lobed))):
        f = _shape2d(mask)
        detail[name] = outline_detail(*(np.array([f[c]]) for c in GATE_COLUMNS))[0]
    # A rasterised ellipse: only its staircase (a few per cent); seven lobes a quarter deep: much more.
    assert 0.0 < detail["ellipse"] < 0.08
    assert detail["lobulated"] > 0.15


def _frame(n: int, detail: np.ndarray, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    latent = rng.normal(size=n)
    y = (latent + rng.normal(size=n) * 0.5 > 0).astype(int)
    X = rng.normal(size=(n, len(RAD) + len(DL)))
    X[:, 0] = latent + rng.normal(size=n) * 0.5
    X[:, len(RAD)] = latent + rng.normal(size=n) * 0.8
    frame = pd.DataFrame(X, columns=RAD + DL)
    diameter = rng.uniform(20, 80, size=n)  # circles: the moment-matched ellipse has this diameter
    frame[GATE_COLUMNS[0]] = np.pi * diameter * (1 + detail)
    frame[GATE_COLUMNS[1]] = diameter
    frame[GATE_COLUMNS[2]] = diameter
    return frame, y


@pytest.fixture(scope="module")
def stacking() -> StackingFusion:
    rng = np.random.default_rng(0)
    frame, y = _frame(120, np.full(120, 0.1), rng)
    members = [
        Signature("Rad", RAD, "lr", selection=FAST, cv=3),
        Signature("DL", DL, "lr", selection=FAST, cv=3),
    ]
    return StackingFusion(members, cv=3, seed=1).fit(frame, y, np.arange(len(y)))


def test_gated_probability_is_the_logit_blend_of_fusion_and_fallback(stacking: StackingFusion) -> None:
    gate = ContourGatedFusion(stacking, fallback=1, low=0.06, high=0.08)
    detail = np.array([0.0, 0.05, 0.06, 0.065, 0.07, 0.075, 0.08, 0.2])
    frame, _ = _frame(len(detail), detail, np.random.default_rng(1))
    got = gate.predict_proba(frame)
    fused = stacking.predict_proba(frame)
    dl = stacking.members[1].predict_proba(frame)
    w = np.clip((detail - 0.06) / 0.02, 0, 1)
    want = expit(w * logit(fused) + (1 - w) * logit(dl))
    # two implementations of the blend (scipy here, base.numeric in the gate): 1e-12
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[:3], dl[:3], rtol=1e-12)  # no detail: the DL signature alone
    np.testing.assert_allclose(got[-2:], fused[-2:], rtol=1e-12)  # detailed outline: the fusion
    assert not np.allclose(got[3:6], fused[3:6]) and not np.allclose(got[3:6], dl[3:6])


def test_gate_spec_round_trip_and_refusals(stacking: StackingFusion) -> None:
    gate = ContourGatedFusion(stacking, fallback=1, low=0.061, high=0.072)
    spec = json.loads(json.dumps(gate.gate_spec()))
    frame, _ = _frame(6, np.linspace(0.04, 0.1, 6), np.random.default_rng(2))
    # Bit-identical: JSON keeps the floats exactly and the same code applies them.
    rebuilt = ContourGatedFusion.from_spec(spec, stacking)
    np.testing.assert_array_equal(rebuilt.predict_proba(frame), gate.predict_proba(frame))
    with pytest.raises(ConfigError, match="not a contour gate"):
        ContourGatedFusion.from_spec({**spec, "kind": "Other"}, stacking)
    with pytest.raises(ConfigError, match="this version reads"):
        ContourGatedFusion.from_spec({**spec, "columns": ["original_shape2D_Sphericity"]}, stacking)
    with pytest.raises(ConfigError, match="high > low"):
        ContourGatedFusion(stacking, fallback=1, low=0.07, high=0.07)
    with pytest.raises(ConfigError, match="not a member"):
        ContourGatedFusion(stacking, fallback=2, low=0.06, high=0.07)


def test_gate_thresholds_from_training_outlines() -> None:
    rng = np.random.default_rng(4)
    ellipses = rng.uniform(0.04, 0.06, 500)
    exact = rng.uniform(0.07, 0.5, 500)
    low, high = gate_thresholds(ellipses, exact)
    assert low == pytest.approx(np.percentile(ellipses, 99), rel=1e-12)
    assert high == pytest.approx(np.percentile(exact, 5), rel=1e-12)
    assert 0.059 < low < 0.06
    assert 0.07 < high < 0.1
    with pytest.raises(ConfigError, match="cannot tell the outlines apart"):
        gate_thresholds(exact, ellipses)
    with pytest.raises(ConfigError, match="both the exact and the ellipse"):
        gate_thresholds(np.array([]), exact)


def test_config_refuses_a_gate_without_late_fusion(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {fusion: early, contour_gate: true}\n")
    with pytest.raises(TrainConfigError, match="contour_gate"):
        load_config(path)
    path.write_text("cnn: {enabled: false}\nmodel: {contour_gate: true}\n")
    with pytest.raises(TrainConfigError, match="enable the CNN"):
        load_config(path)
    path.write_text("task: {classes: [a, b, c]}\nmodel: {contour_gate: true}\n")
    with pytest.raises(TrainConfigError, match="two-class"):
        load_config(path)
    path.write_text("model: {contour_gate: true}\n")
    assert load_config(path).model.contour_gate is True
