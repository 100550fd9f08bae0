"""ComBat harmonisation by site: the stored step against neuroCombat, its effect, bundle and sites.

- ``models.combat.ComBat.transform`` (numpy, the predict path) reproduces neuroCombat's own
  harmonised training rows from the estimates ``training.combat_fit`` keeps (within 1e-9 of the
  feature scale: the same arithmetic in another order);
- on a synthetic cohort with an injected per-site shift and scale, the per-site means and
  variances are equalised while the label effect survives;
- the block round-trips through ``pipeline.json``; a corrupted block is refused with a clear
  error; a site the training data lacked is predicted unharmonised with a warning.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import BundleError, ConfigError, InputError
from DLRPredictorLib.models.combat import ComBat
from DLRPredictorLib.training.combat_fit import fit_combat

SITES = ("GE", "Toshiba", "U-Systems")


def _site_data(seed: int = 0, n: int = 120, effect: float = 1.0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(X, sites, labels): 4 features, the first two carry a label effect; each site shifts every
    feature and scales its noise (GE 1, Toshiba x2 and +3, U-Systems x0.5 and -2)."""
    rng = np.random.default_rng(seed)
    shift, scale = (
        {"GE": 0.0, "Toshiba": 3.0, "U-Systems": -2.0},
        {"GE": 1.0, "Toshiba": 2.0, "U-Systems": 0.5},
    )
    X, sites, y = [], [], []
    for s in SITES:
        lab = rng.permutation(np.arange(n) % 2)  # half malignant at every site
        noise = rng.normal(size=(n, 4)) * scale[s]
        X.append(10.0 + noise + shift[s] + np.outer(lab, [effect, effect, 0.0, 0.0]))
        sites += [s] * n
        y.append(lab)
    return np.vstack(X), sites, np.concatenate(y)


NAMES = ["f0", "f1", "f2", "f3"]


@pytest.mark.parametrize("eb", [True, False])
def test_apply_reproduces_neurocombat_on_training_rows(eb: bool) -> None:
    from neuroCombat import neuroCombat

    X, sites, _ = _site_data(seed=1)
    step = fit_combat(X, sites, NAMES, "device", empirical_bayes=eb)
    mine, done = step.transform(X, NAMES, list(sites))
    with contextlib.redirect_stdout(io.StringIO()):
        ref = neuroCombat(X.T, pd.DataFrame({"batch": sites}), "batch", eb=eb)["data"].T
    assert done.all()
    np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-9 * np.abs(X).max())
    assert np.abs(mine - X).max() > 1.0  # it did harmonise


def test_site_effect_removed_label_effect_kept() -> None:
    X, sites, y = _site_data(seed=2, n=200)
    s = np.array(sites)
    step = fit_combat(X, sites, NAMES, "device")
    H = step.transform(X, NAMES, list(sites))[0]

    def site_spread(Z: np.ndarray) -> tuple[float, float]:
        # every site holds half of each label, so the site means and variances compare like with
        # like; no label covariate is modelled, so ComBat equalises each site's total variance
        # (noise and label effect together): that is what is checked
        R = Z - np.array([Z[y == k].mean(axis=0) for k in (0, 1)])[y]
        means = np.array([Z[s == v].mean(axis=0) for v in SITES])
        var = np.array([Z[s == v].var(axis=0) for v in SITES])
        return float(np.ptp(means, axis=0).max() / R.std()), float((var.max(axis=0) / var.min(axis=0)).max())

    mean_before, ratio_before = site_spread(X)
    mean_after, ratio_after = site_spread(H)
    assert mean_before > 2.0 and ratio_before > 10.0  # the injected effect is there
    assert mean_after < 0.15, mean_after  # per-site means equal within 0.15 pooled SD
    assert ratio_after < 1.3, ratio_after  # per-site variances within 30 % of each other
    # the label effect survives: pooled over the sites, f0 and f1 separate the labels at least as
    # well as before (the site noise no longer blurs them), f2 and f3 (no label effect) still do not
    from sklearn.metrics import roc_auc_score

    auc_before = np.array([roc_auc_score(y, X[:, j]) for j in range(4)])
    auc_after = np.array([roc_auc_score(y, H[:, j]) for j in range(4)])
    assert np.all(auc_after[:2] > 0.7) and np.all(auc_after[:2] >= auc_before[:2] - 0.01), auc_after
    assert np.all(np.abs(auc_after[2:] - 0.5) < 0.06), auc_after
    # within a site ComBat is an increasing affine map of each feature: the site's own
    # standardised label effect (Cohen's d) is unchanged (up to rounding)
    for v in SITES:
        m = s == v

        def d(Z: np.ndarray, m: np.ndarray = m) -> np.ndarray:
            return (Z[m & (y == 1)].mean(axis=0) - Z[m & (y == 0)].mean(axis=0)) / Z[m].std(axis=0)

        np.testing.assert_allclose(d(H), d(X), rtol=1e-9)


def test_unseen_and_missing_sites_pass_through() -> None:
    X, sites, _ = _site_data(seed=3)
    step = fit_combat(X, sites, NAMES, "device")
    new = X[:3].copy()
    out, done = step.transform(new, NAMES, ["Philips", None, "GE"])
    # Exact: rows of an unseen or missing site are copied through, no arithmetic touches them.
    np.testing.assert_array_equal(out[:2], new[:2])
    assert done.tolist() == [False, False, True]
    # columns the step does not know pass through; known ones are matched by name, not position
    swapped, _ = step.transform(new[:, ::-1], NAMES[::-1], ["GE"] * 3)
    np.testing.assert_allclose(swapped[:, ::-1], step.transform(new, NAMES, ["GE"] * 3)[0], rtol=1e-12)


def test_fit_refuses_unusable_sites_and_skips_constant_features() -> None:
    X, sites, _ = _site_data(seed=4, n=30)
    with pytest.raises(InputError, match="no value in the manifest column 'device'"):
        fit_combat(X, [*sites[:-1], ""], NAMES, "device")
    with pytest.raises(InputError, match="fewer than 3 training lesions"):
        fit_combat(X[:-28], sites[:-28], NAMES, "device")
    with pytest.raises(InputError, match="need 2 or more"):
        fit_combat(X[:30], sites[:30], NAMES, "device")
    Xc = X.copy()
    Xc[:, 3] = 5.0  # constant: ComBat cannot scale it; it passes through
    step = fit_combat(Xc, sites, NAMES, "device")
    assert step.features == NAMES[:3]
    # Exact: a feature the step does not harmonise is copied through unchanged.
    np.testing.assert_array_equal(step.transform(Xc, NAMES, list(sites))[0][:, 3], Xc[:, 3])


def test_config_needs_the_batch_column() -> None:
    from DLRPredictorLib.training.config import HarmonisationConfig, TrainConfig, validate

    assert TrainConfig().harmonisation.method == "none"  # off by default
    with pytest.raises(ConfigError, match=r"harmonisation\.batch_column"):
        validate(TrainConfig(harmonisation=HarmonisationConfig(method="combat")))
    with pytest.raises(ConfigError, match=r"harmonisation\.method"):
        validate(TrainConfig(harmonisation=HarmonisationConfig(method="zscore", batch_column="device")))


def _step() -> ComBat:
    X, sites, _ = _site_data(seed=5)
    return fit_combat(X, sites, NAMES, "device")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(method="harmony"), "'method'"),
        (lambda d: d.update(column=""), "'column'"),
        (lambda d: d.update(features=["f0", "f0", "f2", "f3"]), "twice"),
        (lambda d: d["delta"][1].__setitem__(2, -0.5), "'delta' holds a value that is not positive"),
        (lambda d: d["gamma"].pop(), "'gamma' has shape"),
        (lambda d: d.update(grand_mean=["x", 1, 2, 3]), "'grand_mean' must hold numbers"),
        (lambda d: d["var_pooled"].__setitem__(0, float("nan")), "not finite"),
    ],
)
def test_corrupted_block_refused(mutate, message: str) -> None:
    spec = json.loads(json.dumps(_step().to_spec()))
    assert ComBat.from_spec(spec).sites == sorted(SITES)  # the clean block reads
    mutate(spec)
    with pytest.raises(BundleError, match=message):
        ComBat.from_spec(spec)
    with pytest.raises(BundleError, match="not an object"):
        ComBat.from_spec([1, 2])


@pytest.fixture(scope="module")
def shipped_pipeline():
    from DLRPredictorLib.bundle.verify import load_bundle
    from DLRPredictorLib.inference.pipeline import FrozenPipeline
    from DLRPredictorLib.inference.predictor import default_bundle_path

    bundle = load_bundle(default_bundle_path())
    return bundle, FrozenPipeline.from_bundle(bundle)


def _harmonising_copy(bundle, pipe, step: ComBat):
    """The shipped pipeline.json with ``step``'s block added, through JSON text, and its reader."""
    from DLRPredictorLib.inference.pipeline import FrozenPipeline

    doc = json.loads(json.dumps({**bundle.read_json("pipeline.json"), "harmonisation": step.to_spec()}))
    arrays = bundle.read_arrays("pipeline.npz")
    return doc, arrays, lambda d: FrozenPipeline._from_doc(d, arrays, pipe.radiomics_parameters)


def _features(pipe, seed: int) -> tuple[dict[str, float], np.ndarray]:
    rng = np.random.default_rng(seed)
    ood = dict(zip(pipe.ood["columns"], pipe.ood["mean"], strict=True))
    sd = dict(zip(pipe.ood["columns"], pipe.ood["std"], strict=True))
    feats = {c: float(ood.get(c, 1.0) + 0.3 * sd.get(c, 1.0) * rng.normal()) for c in pipe.radiomics_columns}
    deep = rng.normal(size=len(pipe.reducer.mean)) if pipe.reducer is not None else None
    return feats, deep


def test_bundle_block_round_trip_and_prediction(shipped_pipeline) -> None:
    bundle, pipe = shipped_pipeline
    assert pipe.harmonisation is None  # the shipped bundle has no block
    cols = [c for c in pipe.radiomics_columns if c in pipe.rad.selected_features][:5]
    rng = np.random.default_rng(6)
    step = ComBat(
        column="device",
        features=cols,
        sites=["A", "B"],
        grand_mean=np.array([float(np.mean(pipe.ood["mean"]))] * len(cols)),
        var_pooled=rng.uniform(0.5, 2.0, len(cols)),
        gamma=rng.normal(scale=0.5, size=(2, len(cols))),
        delta=rng.uniform(0.5, 2.0, (2, len(cols))),
        rows={"A": 10, "B": 12},
    )
    doc, _, read = _harmonising_copy(bundle, pipe, step)
    assert "harmonisation" in doc and "calibration" not in json.dumps(doc["harmonisation"])
    again = read(doc)
    assert again.harmonisation.to_spec() == step.to_spec()  # exact JSON round trip
    feats, deep = _features(pipe, 7)
    plain = pipe.predict(feats, deep, {})
    # a known site: the prediction equals the unharmonised pipeline fed the harmonised features
    res = again.predict(feats, deep, {}, site="B")
    moved = dict(feats)
    x = np.array([[feats[c] for c in cols]])
    moved.update(zip(cols, step.transform(x, cols, ["B"])[0][0], strict=True))
    ref = pipe.predict(moved, deep, {})
    assert res.signature_scores == pytest.approx(ref.signature_scores, rel=1e-12)
    assert res.signature_scores["rad"] != pytest.approx(plain.signature_scores["rad"], rel=1e-6)
    assert "harmonised (ComBat, device 'B')" in res.model_used
    # an unseen or missing site: the unharmonised prediction, flagged
    for site, why in (
        ("Philips", "device 'Philips' was not in the training data"),
        (None, "no 'device' value"),
    ):
        out = again.predict(feats, deep, {}, site=site)
        # Exact: an unseen or missing site leaves the row as it is, so the same signatures run on
        # the same numbers.
        assert out.signature_scores == plain.signature_scores
        assert "radiomics not harmonised" in out.model_used  # followed by a recalibration, if any
        assert any(why in w for w in out.warnings), out.warnings
    # a block naming a feature the bundle does not have is refused
    doc["harmonisation"]["features"][0] = "original_made_up_feature"
    with pytest.raises(BundleError, match="not a radiomics column"):
        read(doc)


def test_cohort_row_carries_the_site() -> None:
    from DLRPredictorLib.cohort.fingerprint import input_digest
    from DLRPredictorLib.cohort.rows import job_from_cohort_row
    from DLRPredictorLib.inputs.cohort_csv import CohortRow

    row = CohortRow(
        row_number=2,
        case_id="c1",
        image="i.png",
        mask="m.png",
        resolved_image=None,
        resolved_mask=None,
        segment=None,
        spacing_mm=None,
        label=None,
        label_raw=None,
        patient_id=None,
        clinical={},
        extra={"device": " GE Logiq 7 "},
    )
    assert "site" not in job_from_cohort_row(row)  # a bundle that does not harmonise
    assert job_from_cohort_row(row, "device")["site"] == "GE Logiq 7"
    assert job_from_cohort_row(row, "scanner")["site"] is None
    a = input_digest({**job_from_cohort_row(row, "device")}, "b", stability=False)
    b = input_digest({**job_from_cohort_row(row, "device"), "site": "Toshiba"}, "b", stability=False)
    assert a != b  # a resumed run does not reuse a row predicted for another site


COMBAT_CONFIG = """
bundle_id: combat-test
title: ComBat by site (radiomics only)
seed: 0
split: {test_fraction: 0.25, folds: 3}
cnn: {enabled: false}
contours: {variants: [exact]}
selection: {max_features: 8}
model: {grid_search: false, calibration: none}
harmonisation: {method: combat, batch_column: site}
radiomics_parameters: original_only.yaml
"""


def test_training_with_combat_writes_a_harmonising_bundle(tmp_path) -> None:
    """train fits ComBat by site, the bundle stores it (and verifies), and a cohort row's site
    column reaches the prediction: a known site is harmonised, an unknown one is flagged."""
    import csv

    from conftest import original_only_parameters
    from DLRPredictorLib.cohort.rows import job_from_cohort_row, predict_cohort_row
    from DLRPredictorLib.inference.predictor import load_predictor
    from DLRPredictorLib.inputs.cohort_csv import read_cohort_csv
    from DLRPredictorLib.inputs.synthetic_cohort import write_cohort
    from DLRPredictorLib.training import trainer as training

    manifest = write_cohort(tmp_path / "cohort", n_cases=36, seed=5, signal=True)
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # one site per patient
        r["site"] = ("north", "south")[sum(map(ord, r["patient_id"])) % 2]
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "original_only.yaml").write_text(original_only_parameters())
    (tmp_path / "c.yaml").write_text(COMBAT_CONFIG)
    bundle = training.train_from_manifest(
        manifest, tmp_path / "b", tmp_path / "c.yaml", work_dir=tmp_path / "w", log=lambda s: None
    )
    block = json.loads((bundle / "pipeline.json").read_text(encoding="utf-8"))["harmonisation"]
    assert block["column"] == "site" and block["sites"] == ["north", "south"]
    manifest_json = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest_json["metrics"]["harmonisation"]["rows"] == block["rows"]
    assert "Harmonisation: ComBat" in (bundle / "model_card.md").read_text(encoding="utf-8")

    pred = load_predictor(bundle)  # verified: checksums, schema, the block read back
    assert pred.harmonisation_column == "site"
    row = read_cohort_csv(manifest, clinical_names=[], label_values={"malignant": 1, "benign": 0})[0]
    job = job_from_cohort_row(row, pred.harmonisation_column)
    known = predict_cohort_row(pred, job)
    assert f"site '{job['site']}'" in known.model_used and "harmonised (ComBat" in known.model_used
    unseen = predict_cohort_row(pred, {**job, "site": "east"})
    assert unseen.model_used.endswith("radiomics not harmonised")
    assert any("site 'east' was not in the training data" in w for w in unseen.warnings)
    assert unseen.signature_scores["rad"] != pytest.approx(known.signature_scores["rad"], rel=1e-9)
    with pytest.raises(InputError, match="site must be text"):
        predict_cohort_row(pred, {**job, "site": 3})
