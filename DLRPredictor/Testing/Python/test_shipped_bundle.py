"""The shipped bundle: verifies, loads fast enough to be usable, and its predictions are pinned."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import pin_predictions

PINS = Path(__file__).parent / "data" / "pinned_predictions.json"


@pytest.fixture(scope="module")
def pins() -> dict:
    return json.loads(PINS.read_text(encoding="utf-8"))


def test_shipped_bundle_verifies_and_declares_its_clinical_variables():
    from DLRPredictorLib.bundle import verify as bundle
    from DLRPredictorLib.inference import predictor

    path = predictor.default_bundle_path()
    verified = bundle.load_bundle(path)
    names = {v.name: v for v in verified.clinical_variables}
    # The shipped nomogram reads BI-RADS only (its training data, BUS-BRA, records no age).
    assert set(names) == {"birads"}
    assert names["birads"].type == "categorical"
    assert set(names["birads"].allowed) == {"1", "2", "3", "4", "4a", "4b", "4c", "5"}
    assert verified.manifest["task"]["positive_class"] == "malignant"
    assert sum(f.stat().st_size for f in path.iterdir()) <= 60 * 1024 * 1024  # at most 60 MB


def test_pins_belong_to_the_shipped_bundle(pins):
    assert pins["bundle_manifest_sha256"] == pin_predictions.bundle_digest(), (
        "the shipped bundle changed: if on purpose, rerun scripts/pin_predictions.py"
    )


def test_predictions_on_real_cases_equal_the_pinned_ones(shared_data, pins):
    got = pin_predictions.predict_all(shared_data)
    assert len(got) == len(pins["cases"])
    for new, old in zip(got, pins["cases"], strict=True):
        assert new["model_used"] == old["model_used"], new["image"]
        assert new["probability"] == pytest.approx(old["probability"], abs=1e-6), new["image"]
        assert new["scores"] == pytest.approx(old["scores"], abs=1e-6), new["image"]


def test_two_runs_give_identical_predictions(shared_data):
    first = pin_predictions.predict_all(shared_data)
    second = pin_predictions.predict_all(shared_data)
    # Bit-identical: the same code twice; one crop runs on one BLAS thread, pyradiomics on one
    # SimpleITK thread (README), so a prediction's digits do not vary between runs.
    assert [c["probability"] for c in first] == [c["probability"] for c in second]


def test_dlr_contributions_add_up_to_the_dlr_logit(shared_data):
    """The explanation of the shipped fusion sums to its score, whatever its stacking inputs."""
    import math

    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import images, lesion

    pred = predictor.load_predictor()
    image, mask, spacing, _ = pin_predictions.CASES[0]
    volume = images.read_image(shared_data / image, spacing_mm=spacing)
    res = pred.predict(volume, lesion.read_mask(shared_data / mask, volume), {}, heatmap=False, case="c")
    dlr = [value for name, value in res.contributions if name.startswith("dlr: ")]
    assert len(dlr) == 4  # intercept, Rad score, DL score, the contour gate's DL-alone term
    p = res.signature_scores["dlr"]
    assert math.fsum(dlr) == pytest.approx(math.log(p / (1 - p)), abs=1e-6)


def test_age_given_to_the_shipped_bundle_is_refused_by_name_and_an_age_column_is_ignored(tmp_path):
    """The shipped nomogram has no age: an ``age`` value is an unknown variable (ClinicalValueError
    naming it and the variables the bundle knows, before any work), and an ``age`` column of a
    cohort manifest is reported once and left out of every row."""
    from DLRPredictorLib.base.errors import ClinicalValueError
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import phantom
    from DLRPredictorLib.inputs.cohort_csv import read_cohort_csv

    pred = predictor.load_predictor()
    declared = [v.name for v in pred.clinical_variables]
    assert "age" not in declared
    volume, mask = phantom.make_phantom(seed=0)
    with pytest.raises(ClinicalValueError) as caught:
        pred.predict(volume, mask, {"age": "54", "birads": "4a"}, heatmap=False)
    assert "unknown clinical variable(s) age" in str(caught.value)
    assert all(name in str(caught.value) for name in declared)

    paths = phantom.write_phantom(tmp_path, clinical_columns=("age", "birads"))
    said: list[str] = []
    rows = read_cohort_csv(paths["manifest"], clinical_names=declared, warn=said.append)
    assert said == ["column 'age' is not a clinical variable of this bundle; it is ignored"]
    assert rows and all(set(row.clinical) == set(declared) for row in rows)
