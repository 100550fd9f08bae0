#!/usr/bin/env python3
"""Why does the Rad signature lose on another scanner what a plain L1 model on exact contours keeps?

Every candidate is trained inside the BUS-BRA training split (official folds 1-4) and scored
on the left-out part of two cross-validations, with the exact and with the ellipse outline of
each left-out lesion:

- leave-one-scanner-out (LOSO): four folds, one per device of the manifest's ``device`` column
  (a domain-shift proxy inside the training data); the per-device AUCs and their mean are shown;
- grouped 5-fold CV (patients whole, stratified, seed 42): the pooled out-of-fold AUC.

Candidates (``CANDIDATES``) take the bundled model's Rad signature apart one factor at a time:
the contour variants it trains on, the selection pipeline (t-test, correlation, LASSO, then an
L2 logistic regression), the feature transform (none or quantile-normal), the statistics on one
row per lesion, and size-free features. "plain L1" is scikit-learn's QuantileTransformer
(normal) + an L1 logistic regression with C chosen by grouped 5-fold CV; "library" candidates
are the library's own ``models.signatures.Signature`` with the settings shown, as training fits
it. Nothing outside BUS-BRA folds 1-4 is read: the external data set is scored once, by
``dlrpredictor train`` (docs/EXPERIMENTS.md, "A Rad signature that transfers").

Input: out/exp/busbra5.npz (prepare_features.py, the five contour variants of the BUS-BRA
training split) and the device column of out/manifests/busbra_train.csv; for ``--external``
(run once, after the choice) out/exp/breast2.npz and out/manifests/breast_all.csv.
Usage: python scripts/experiments/rad_transfer.py [--only P,P1,...] [--no-cv5]
       python scripts/experiments/rad_transfer.py --only P1 --external out/exp/breast2.npz

Backs: docs/EXPERIMENTS.md, "A Rad signature that transfers": the Rad signature trains on the
exact contours only, with L1 selection and no transform (configs/busbra_rad_transfer.yaml).
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import ALL_VARIANTS, EXP_DIR, ROOT, load_cases, print_flush

SEED = 42
# C of the plain L1 model: 0.001-1 (liblinear crawls at larger C on these data; the chosen C
# stayed inside the range, printed per fold).
PLAIN_CS = np.logspace(-3, 0, 8)
EVAL_VARIANTS = ("exact", "ellipse")
# Features whose value grows with the lesion's size in pixels or its pixel count: they change
# with the scanner's resolution and the image size, not with the lesion's nature alone.
SIZE_FEATURES = (
    "shape2D_MajorAxisLength",
    "shape2D_MaximumDiameter",
    "shape2D_MeshSurface",
    "shape2D_MinorAxisLength",
    "shape2D_Perimeter",
    "shape2D_PerimeterSurfaceRatio",
    "shape2D_PixelSurface",
    "firstorder_Energy",
    "firstorder_TotalEnergy",
    "glrlm_GrayLevelNonUniformity",
    "glrlm_RunLengthNonUniformity",
    "glszm_GrayLevelNonUniformity",
    "glszm_SizeZoneNonUniformity",
    "gldm_DependenceNonUniformity",
    "gldm_GrayLevelNonUniformity",
)
# The bundled model's selection (configs/breastus_malignancy_resnet18.yaml) as the trainer passes it.
CURRENT_SELECTION = {
    "univariate": "ttest",
    "alpha": 0.05,
    "correlation": "pearson",
    "correlation_threshold": 0.95,
    "lasso": "logistic",
    "max_features": 40,
    "cv": 3,
}
# L1 selection alone, as configs/busbra_rad_transfer.yaml asks for it (and heldout._baseline).
PLAIN_SELECTION = {
    "univariate": "none",
    "correlation": "none",
    "lasso": "logistic",
    "max_features": 50,
    "cv": 5,
}


@dataclass(frozen=True)
class Candidate:
    """One way of fitting the Rad signature."""

    kind: str  # "library" (models.signatures.Signature) or "plain" (sklearn L1 baseline)
    variants: tuple[str, ...]
    selection: dict[str, Any] = field(default_factory=dict)
    transform: str = "none"
    lesion_rows: bool = False
    size_free: bool = False


CANDIDATES = {
    # exact-contour candidates first: they fit on a fifth of the rows
    "P plain L1 baseline (exact, quantile)": Candidate("plain", ("exact",), transform="quantile"),
    "L0 library L1 selection, exact, no transform": Candidate("library", ("exact",), PLAIN_SELECTION),
    "L library L1 selection, exact, quantile": Candidate("library", ("exact",), PLAIN_SELECTION, "quantile"),
    "C current selection, exact only": Candidate("library", ("exact",), CURRENT_SELECTION),
    "D current selection, exact, quantile": Candidate("library", ("exact",), CURRENT_SELECTION, "quantile"),
    "P1 plain L1, no transform": Candidate("plain", ("exact",)),
    "P4 plain L1, size-free features": Candidate("plain", ("exact",), transform="quantile", size_free=True),
    "L2 library L1, exact, quantile, size-free": Candidate(
        "library", ("exact",), PLAIN_SELECTION, "quantile", size_free=True
    ),
    "P5 plain L1, ellipse only": Candidate("plain", ("ellipse",), transform="quantile"),
    "P2 plain L1, 5 variants": Candidate("plain", tuple(ALL_VARIANTS), transform="quantile"),
    "E current, 5 variants, quantile": Candidate(
        "library", tuple(ALL_VARIANTS), CURRENT_SELECTION, "quantile"
    ),
    "A current (5 variants, t/corr/LASSO, L2 LR)": Candidate(
        "library", tuple(ALL_VARIANTS), CURRENT_SELECTION
    ),
    "B current, lesion rows": Candidate("library", tuple(ALL_VARIANTS), CURRENT_SELECTION, lesion_rows=True),
}


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "busbra5.npz", help="prepare_features.py cache")
    ap.add_argument("--manifest", type=Path, default=ROOT / "out" / "manifests" / "busbra_train.csv")
    ap.add_argument("--only", default="", help="candidate keys, e.g. A,P,L")
    ap.add_argument("--no-cv5", action="store_true", help="leave-one-scanner-out only")
    ap.add_argument(
        "--external",
        type=Path,
        help="ONCE per candidate: train on every lesion of --npz, score this cache (e.g. "
        "out/exp/breast2.npz), DeLong against P, one held-out ledger entry per candidate",
    )
    ap.add_argument("--ledger", type=Path, default=ROOT / "out" / "heldout_ledger_breast.jsonl")
    ap.add_argument("--external-manifest", type=Path, default=ROOT / "out" / "manifests" / "breast_all.csv")
    return ap.parse_args()


def devices(manifest: Path, ids: np.ndarray) -> np.ndarray:
    """The ``device`` of each cached case, read from the manifest."""
    with open(manifest, newline="", encoding="utf-8") as fh:
        by_id = {row["case_id"]: row["device"] for row in csv.DictReader(fh)}
    return np.array([by_id[str(i)] for i in ids])


def training_rows(data: Any, cand: Candidate, rows: np.ndarray, columns: np.ndarray) -> tuple:
    """Stacked (features, labels, groups, exact-row mask) of the candidate's variants."""
    X = np.vstack([np.nan_to_num(data["R_" + v][rows][:, columns]) for v in cand.variants])
    n = int(rows.sum())
    y = np.tile(data["labels"][rows], len(cand.variants))
    g = np.tile(data["groups"][rows], len(cand.variants))
    exact = np.concatenate([np.full(n, v == "exact") for v in cand.variants])
    return X, y, g, exact


def fit_predict(cand: Candidate, data: Any, names: list[str], train: np.ndarray, test: np.ndarray) -> dict:
    """Fit on the training rows; probabilities of the test rows for each evaluation variant."""
    columns = np.array([not (cand.size_free and n.split("original_")[-1] in SIZE_FEATURES) for n in names])
    X, y, g, exact = training_rows(data, cand, train, columns)
    cols = [n for n, keep in zip(names, columns, strict=True) if keep]
    if cand.kind == "plain":
        model = plain_l1(cand.transform, y, g).fit(X, y)
        predict = model.predict_proba
    else:
        from DLRPredictorLib.models.selection import SelectionConfig
        from DLRPredictorLib.models.signatures import Signature

        sel = SelectionConfig(**cand.selection, transform=cand.transform, seed=SEED)
        sig = Signature("Rad", cols, "lr", selection=sel, cv=sel.cv, seed=SEED)
        sig.fit(X, y, groups=g, feature_names=cols, selection_rows=exact if cand.lesion_rows else None)

        def predict(M: np.ndarray) -> np.ndarray:
            return np.column_stack([1 - sig.predict_proba(M, cols), sig.predict_proba(M, cols)])

    return {v: predict(np.nan_to_num(data["R_" + v][test][:, columns]))[:, 1] for v in EVAL_VARIANTS}


def plain_l1(transform: str, y: np.ndarray, groups: np.ndarray) -> Any:
    """(QuantileTransformer +) standardisation + L1 logistic regression, C by grouped 5-fold CV."""
    from DLRPredictorLib.models.selection import _l1_arguments, stratified_folds
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    folds = stratified_folds(y, groups, 5, SEED)
    lr = LogisticRegressionCV(
        Cs=PLAIN_CS,
        cv=folds,
        solver="liblinear",
        scoring="roc_auc",
        max_iter=5000,
        random_state=SEED,
        **_l1_arguments(LogisticRegressionCV),
    )
    steps: list[Any] = [StandardScaler(), lr]
    if transform == "quantile":
        steps.insert(0, QuantileTransformer(output_distribution="normal", random_state=SEED))
    return make_pipeline(*steps)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def external(args: argparse.Namespace, data: dict, names: list[str], keys: list[str]) -> None:
    """Train each candidate on every lesion of ``data``; score the external cache once, with
    DeLong against the plain baseline P; append one ledger entry per candidate."""
    from DLRPredictorLib.evaluation.auc import delong_test
    from DLRPredictorLib.features.radiomics import load_parameters
    from DLRPredictorLib.training.ledger import append_entry, config_digest, test_set_digest

    ext = dict(np.load(args.external, allow_pickle=False))
    if [str(n) for n in ext["names"]] != names:
        raise SystemExit("the external cache has other feature columns")
    cases, _ = load_cases(["exact"], manifests=(("external", args.external_manifest),))
    if [c.case_id for c in cases] != [str(i) for i in ext["ids"]]:
        raise SystemExit("the external manifest and cache hold other cases")
    digest = test_set_digest((c.case_id, c.variants["exact"].image) for c in cases)
    params = load_parameters(ROOT / "configs" / "breastus_radiomics.yaml")
    both = {
        k: np.concatenate([data[k], ext[k]]) for k in ("labels", "groups", *(f"R_{v}" for v in EVAL_VARIANTS))
    }
    for v in ALL_VARIANTS:
        if f"R_{v}" not in ext:  # variants the external set does not need: training rows only
            both[f"R_{v}"] = np.concatenate([data[f"R_{v}"], np.full_like(ext["R_exact"], np.nan)])
    train = np.arange(len(both["labels"])) < len(data["labels"])
    y = ext["labels"]
    scores = {k: fit_predict(CANDIDATES[k], both, names, train, ~train) for k in keys}
    base = next(k for k in CANDIDATES if k.startswith("P "))
    if base not in scores:
        scores[base] = fit_predict(CANDIDATES[base], both, names, train, ~train)
        keys = [*keys, base]
    for k in keys:
        aucs = {v: {"rad": auc(y, scores[k][v])} for v in EVAL_VARIANTS}
        entry = append_entry(
            args.ledger,
            {
                "config_digest": config_digest(
                    {"rad_transfer_candidate": k, **vars(CANDIDATES[k])},
                    params,
                    [str(i) for i in data["ids"]],
                ),
                "test_set_digest": digest,
                "bundle_id": "rad_transfer.py " + k.split(" ")[0],
                "n_test": len(y),
                "aucs": aucs,
            },
        )
        line = f"{k:48s} external (n={len(y)}, {int(y.sum())} malignant; ledger repeat {entry['repeat']})"
        for v in EVAL_VARIANTS:
            t = delong_test(y, scores[k][v], scores[base][v])
            line += f"  {v} {t.auc_a:.3f} vs P {t.auc_b:.3f} (DeLong p = {t.p:.3g})"
        print_flush(line)


def main() -> None:
    """Run every candidate through both cross-validations and print the AUC table."""
    args = parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    data = dict(np.load(args.npz, allow_pickle=False))
    names = [str(n) for n in data["names"]]
    y = data["labels"]
    dev = devices(args.manifest, data["ids"])
    n_cases = len(y)
    print_flush(
        f"{n_cases} lesions, {int(y.sum())} malignant; devices: "
        + ", ".join(f"{d} ({int((dev == d).sum())})" for d in np.unique(dev))
    )
    from DLRPredictorLib.models.selection import stratified_folds

    only = {k for k in args.only.split(",") if k}
    if args.external is not None:
        external(args, data, names, [k for k in CANDIDATES if k.split(" ")[0] in only])
        return
    cv5 = [] if args.no_cv5 else stratified_folds(y, data["groups"], 5, SEED)
    for key, cand in CANDIDATES.items():
        if only and key.split(" ")[0] not in only:
            continue
        start = time.time()
        loso: dict[str, list[float]] = {v: [] for v in EVAL_VARIANTS}
        pooled = {v: np.zeros(n_cases) for v in EVAL_VARIANTS}
        for d in np.unique(dev):
            test = dev == d
            scores = fit_predict(cand, data, names, ~test, test)
            for v in EVAL_VARIANTS:
                loso[v].append(auc(y[test], scores[v]))
                pooled[v][test] = scores[v]
        line = (
            f"{key:48s} LOSO mean exact {np.mean(loso['exact']):.3f} ellipse {np.mean(loso['ellipse']):.3f}"
        )
        line += f" pooled exact {auc(y, pooled['exact']):.3f} ellipse {auc(y, pooled['ellipse']):.3f}"
        line += "  per device exact " + "/".join(f"{a:.3f}" for a in loso["exact"])
        line += " ellipse " + "/".join(f"{a:.3f}" for a in loso["ellipse"])
        if cv5:
            oof = {v: np.zeros(n_cases) for v in EVAL_VARIANTS}
            for tr, va in cv5:
                train = np.zeros(n_cases, bool)
                train[tr] = True
                scores = fit_predict(cand, data, names, train, ~train)
                for v in EVAL_VARIANTS:
                    oof[v][np.sort(va)] = scores[v]
            line += f"  | CV5 exact {auc(y, oof['exact']):.3f} ellipse {auc(y, oof['ellipse']):.3f}"
        print_flush(f"{line}  ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
