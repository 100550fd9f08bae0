"""Only the radiomics features the model reads (batch without scenes): the same predictions.

pyradiomics computes each enabled feature from the same image, mask and texture matrices whatever
else is enabled, so a prediction from the features the model reads runs the same deterministic
code on the same numbers as one from all of them: compared exactly.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def pred():
    from DLRPredictorLib.inference import predictor

    loaded = predictor.load_predictor(predictor.default_bundle_path())
    yield loaded
    loaded.model_features_only = False  # the cached predictor is shared with other tests


def test_model_parameters_enable_exactly_the_columns_the_model_reads(pred):
    pipeline = pred.pipeline
    read = pipeline.model_radiomics_columns()
    params = pipeline.model_radiomics_parameters()
    enabled = {f"{c}_{n}" for c, names in params["featureClass"].items() for n in names}
    assert enabled == {c.split("_", 1)[1] for c in read}
    assert 0 < len(read) < len(pipeline.radiomics_columns)
    assert params["setting"] == pipeline.radiomics_parameters["setting"]
    assert params["imageType"] == pipeline.radiomics_parameters["imageType"]


def test_a_missing_column_the_model_reads_is_still_a_bundle_error(pred):
    from DLRPredictorLib.base.errors import BundleError

    features = {c: 1.0 for c in pred.pipeline.radiomics_columns}
    unread = [c for c in features if c not in set(pred.pipeline.model_radiomics_columns())]
    for c in unread:
        del features[c]
    row = pred.pipeline.feature_row(features, None)  # unread columns may be absent
    assert len(row.columns) == len(pred.pipeline.radiomics_columns) - len(unread)
    del features[pred.pipeline.model_radiomics_columns()[0]]
    with pytest.raises(BundleError, match="that the model needs"):
        pred.pipeline.feature_row(features, None)


def test_predictions_from_the_features_the_model_reads_equal_the_full_ones(pred, breast_cases, busbra_cases):
    from DLRPredictorLib.inputs import images, lesion

    known = [v.name for v in pred.clinical_variables]
    for case in [*breast_cases[::120], *busbra_cases[::900]]:
        volume = images.read_image(case.image, spacing_mm=case.spacing_mm)
        mask = lesion.read_mask(case.mask, volume)
        clinical = {k: v for k, v in {"age": case.age, "birads": case.birads}.items() if k in known and v}
        results = []
        for only in (False, True):
            pred.model_features_only = only
            results.append(pred.predict(volume, mask, clinical, heatmap=False))
        pred.model_features_only = False
        full, part = results
        assert set(part.features) == set(pred.pipeline.model_radiomics_columns())
        # Exact: pyradiomics computes each enabled feature by the same function from the same
        # class matrix whichever other features are enabled, and every step after it is the same
        # code on the same numbers, in the same process and thread settings.
        assert all(part.features[k] == full.features[k] for k in part.features)
        assert part.probability == full.probability
        assert part.signature_scores == full.signature_scores
        assert part.ood_distance == full.ood_distance
        assert part.contributions == full.contributions
        assert (part.label, part.model_used, part.warnings) == (full.label, full.model_used, full.warnings)
