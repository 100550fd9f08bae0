"""A null result the pipeline cannot fake: the full `train` on permuted labels scores chance.

The whole of ``train_from_manifest`` (radiomics, the CNN cross-fitted and final, the signatures,
the stacking fusion, the BI-RADS combined model, the held-out evaluation) runs twice on the same
160 real BUS-BRA images, one per patient (the first 80 malignant and 80 benign patients in ID
order; BI-RADS as the clinical variable):

- with the labels permuted (one seeded shuffle of the manifest's label column, before any split),
  every held-out AUC must lie inside the 99.9 % two-sided chance band of its test set;
- with the true labels, the default (combined) model's held-out AUC must lie above that band.

So the test fails if anything lets a label reach a held-out score except through what was
learned on the training split (a leak between splits, a cache keyed without the labels, the
test labels used in fitting), and it also fails if the pipeline learns nothing.

The band: under H0 (labels independent of the images and the clinical values) a held-out AUC is
the Mann-Whitney statistic of n+ positives and n- negatives divided by n+ n-, mean 1/2 and variance
(n+ + n- + 1) / (12 n+ n-) without ties (ties only shrink it, so the band is conservative); with
the normal approximation the band is 1/2 +- 3.2905 sd, [0.286, 0.714] for 40 + 40. Five AUCs
(rad, dl, dlr, baseline, combined) are checked in the permuted run: at most 5 x 0.1 % = 0.5 % false
failures (Bonferroni). One image per patient keeps the test cases independent, as the variance
assumes. The radiomics cache of the first run seeds the second: it is keyed on the case, the
contour and the image and mask bytes, and holds no label.
"""

from __future__ import annotations

import csv
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from DLRPredictorLib.features import radiomics as rf
from DLRPredictorLib.training import trainer as training

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

N_PER_CLASS = 80
PERMUTATION_SEED = 20181
Z_999 = 3.2905  # two-sided 99.9 % standard normal quantile
CONFIG = """
bundle_id: null-check
title: Permuted-label check (BUS-BRA subset, test only)
seed: 0
split: {{test_fraction: 0.5, folds: 2}}
cnn: {{arch: resnet18, input_size: 32, epochs: 1, batch_size: 16, patience: 1, num_threads: 1}}
contours: {{variants: [exact]}}
selection: {{max_features: 8}}
model: {{grid_search: false, pca_components: 4}}
radiomics_parameters: {params}
licence: "BUS-BRA, CC BY 4.0"
clinical:
  variables:
    - {{name: birads, type: categorical, label: BI-RADS, allowed: ["2", "3", "4", "5"],
       ordinal_values: [2, 3, 4, 5]}}
"""


def chance_band(n_pos: int, n_neg: int, z: float = Z_999) -> tuple[float, float]:
    """The AUC's two-sided chance band under H0 (Mann-Whitney normal approximation, no ties)."""
    sd = math.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))
    return 0.5 - z * sd, 0.5 + z * sd


def _exact_u_null(m: int, n: int) -> np.ndarray:
    """P(U = u), u = 0..m n, for m positives and n negatives without ties (counting arrangements:
    the largest of the m + n values is a positive, adding n to U, or a negative, adding 0)."""
    counts = [[np.zeros(0)] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                counts[i][j] = np.ones(1)
                continue
            with_pos = np.concatenate([np.zeros(j), counts[i - 1][j]])
            with_neg = counts[i][j - 1]
            size = max(len(with_pos), len(with_neg))
            counts[i][j] = np.pad(with_pos, (0, size - len(with_pos))) + np.pad(
                with_neg, (0, size - len(with_neg))
            )
    total = counts[m][n]
    return total / total.sum()


def test_chance_band_has_its_stated_coverage_under_the_exact_null() -> None:
    """The normal-approximation band against the exact distribution of U (and that against scipy)."""
    from scipy.stats import mannwhitneyu

    m = n = 40
    null = _exact_u_null(m, n)
    # The recursion against scipy's exact Mann-Whitney p-value at one U (no ties: distinct values).
    pos = [float(k) for k in range(m)]
    neg = [k - 10.5 for k in range(n)]
    u = sum(p > q for p in pos for q in neg)
    assert null[u:].sum() == pytest.approx(
        mannwhitneyu(pos, neg, alternative="greater", method="exact").pvalue, rel=1e-9
    )
    low, high = chance_band(m, n)
    assert (low, high) == pytest.approx((0.2860, 0.7140), abs=5e-4)
    auc = np.arange(len(null)) / (m * n)
    outside = null[(auc < low) | (auc > high)].sum()
    assert 0.0003 < outside < 0.002  # 0.1 % stated; the normal tails are close at 40 + 40


def _one_image_per_patient(cases: list) -> list:
    seen: set[str] = set()
    kept = []
    for case in sorted(cases, key=lambda c: c.case_id):
        patient = case.case_id.split("-")[0]  # bus_0001-l, bus_0001-r: one patient, two views
        if patient not in seen:
            seen.add(patient)
            kept.append(case)
    return kept


def _write_manifest(path: Path, cases: list, labels: list[int]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "image", "mask", "label", "birads"])
        for case, label in zip(cases, labels, strict=True):
            writer.writerow(
                [case.case_id, case.image, case.mask, "malignant" if label else "benign", case.birads]
            )
    return path


def _heldout(bundle: Path) -> dict:
    import json

    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return manifest["metrics"]["heldout"]["exact"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, busbra_cases) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("null")
    patients = _one_image_per_patient(busbra_cases)
    malignant = [c for c in patients if c.label == 1][:N_PER_CLASS]
    cases = malignant + [c for c in patients if c.label == 0][:N_PER_CLASS]
    params = yaml.safe_load(Path(rf.DEFAULT_PARAMETERS).read_text(encoding="utf-8"))
    params["imageType"] = {"Original": {}}  # fast: what is checked here is the pipeline, not the features
    params["featureClass"] = {
        k: v for k, v in params["featureClass"].items() if k in ("shape2D", "firstorder")
    }
    light = root / "light.yaml"
    light.write_text(yaml.safe_dump(params), encoding="utf-8")
    config = root / "config.yaml"
    config.write_text(CONFIG.format(params=light.as_posix()), encoding="utf-8")
    true_labels = [c.label for c in cases]
    permuted = list(true_labels)
    random.Random(PERMUTATION_SEED).shuffle(permuted)
    out = {}
    for name, labels in (("true", true_labels), ("permuted", permuted)):
        manifest = _write_manifest(root / f"{name}.csv", cases, labels)
        work = root / f"work_{name}"
        if name == "permuted":  # label-free radiomics cache (see the module docstring)
            shutil.copytree(root / "work_true" / "cache", work / "cache")
        bundle = training.train_from_manifest(
            manifest, root / name, config, work_dir=work, log=lambda _l: None
        )
        out[name] = _heldout(bundle)
    out["agreement"] = {"same_label": sum(a == b for a, b in zip(true_labels, permuted, strict=True))}
    for name in ("true", "permuted"):  # shown with pytest -rP (the figures docs/EXPERIMENTS.md quotes)
        print(name, {model: round(auc, 3) for model, (auc, _, _) in _aucs(out[name]).items()})
    return out


def _aucs(heldout: dict) -> dict[str, tuple[float, int, int]]:
    """(AUC, n+, n-) of every model scored on the held-out exact contours."""
    n, n_pos = int(heldout["n"]), int(heldout["n_positive"])
    found = {k: (float(v["auc"]), n_pos, n - n_pos) for k, v in heldout["all"].items() if isinstance(v, dict)}
    subset = heldout.get("clinical_subset") or {}
    if "combined" in subset:
        assert int(heldout["n_clinical"]) == n  # every BUS-BRA case has a BI-RADS value
        found["combined"] = (float(subset["combined"]["auc"]), n_pos, n - n_pos)
    return found


def test_permuted_labels_give_chance_auc_for_every_model(runs) -> None:
    aucs = _aucs(runs["permuted"])
    assert {"rad", "dl", "dlr", "baseline", "combined"} <= set(aucs)
    for model, (auc, n_pos, n_neg) in aucs.items():
        assert n_pos >= 30 and n_neg >= 30  # a band narrow enough to mean something
        low, high = chance_band(n_pos, n_neg)
        assert low <= auc <= high, (
            f"{model}: held-out AUC {auc:.3f} outside the chance band [{low:.3f}, {high:.3f}]"
        )


def test_true_labels_are_learned_above_the_chance_band(runs) -> None:
    auc, n_pos, n_neg = _aucs(runs["true"])["combined"]
    _, high = chance_band(n_pos, n_neg)
    assert auc > high, f"combined: held-out AUC {auc:.3f} not above the chance band's top {high:.3f}"


def test_the_permutation_really_scrambled_the_labels(runs) -> None:
    # A permutation of 80/80 labels agrees with the truth on about half the cases, not most.
    assert runs["agreement"]["same_label"] < 0.65 * 2 * N_PER_CLASS
