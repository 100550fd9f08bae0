"""The shipped bundle's contour gate on real lesions: an expert outline keeps the fusion, its
moment-matched ellipse gets the DL signature's score, says so, and the explanation still adds up."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import pin_predictions

# BUS-BRA lesions of the pinned set (benign and malignant), with their exact masks
BUSBRA_CASES = [c for c in pin_predictions.CASES if c[0].startswith("BUS-BRA/")]


def _predict(pred, volume, mask):
    return pred.predict(volume, mask, {}, heatmap=False, case="c")


def _dlr_terms(res) -> list[tuple[str, float]]:
    return [(name, value) for name, value in res.contributions if name.startswith("dlr: ")]


@pytest.mark.parametrize("case", BUSBRA_CASES, ids=lambda c: c[0].rsplit("/", 1)[-1])
def test_gate_on_exact_and_ellipse_outlines(shared_data, case):
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import images, lesion
    from DLRPredictorLib.inputs.contours import ellipse_mask
    from DLRPredictorLib.models.contour_gate import ContourGatedFusion

    pred = predictor.load_predictor()
    gate = pred.pipeline.dlr
    assert isinstance(gate, ContourGatedFusion), "the shipped DLR fusion has a contour gate"
    image, mask_path, spacing, _ = case
    volume = images.read_image(shared_data / image, spacing_mm=spacing)
    exact = lesion.read_mask(shared_data / mask_path, volume)
    flat = np.squeeze(exact)
    ellipse = ellipse_mask(flat).reshape(exact.shape).astype(exact.dtype)

    detailed = _predict(pred, volume, exact)
    smooth = _predict(pred, volume, ellipse)
    for res in (detailed, smooth):
        p = res.signature_scores["dlr"]
        # the explanation sums to the gated DLR log-odds (float sums in two orders: 1e-6)
        assert math.fsum(v for _, v in _dlr_terms(res)) == pytest.approx(math.log(p / (1 - p)), abs=1e-6)

    # The ellipse has no detail: the DLR score is the DL signature's, and predict says why.
    assert smooth.signature_scores["dlr"] == pytest.approx(smooth.signature_scores["dl"], abs=1e-9)
    assert any("little detail beyond its ellipse" in w for w in smooth.warnings)
    # An expert outline of these lesions has more detail than the gate's upper threshold: the
    # fusion answers alone, the DL-alone term is zero and nothing is said.
    alone = [v for n, v in _dlr_terms(detailed) if "alone" in n]
    # Exact: (1 - w) * x with w = 1.0 is 0.0.
    assert alone == [0.0]
    assert not any("little detail" in w for w in detailed.warnings)
    assert detailed.signature_scores["dlr"] != pytest.approx(detailed.signature_scores["dl"], abs=1e-3)
