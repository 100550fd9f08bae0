"""Shared pieces of the experiment scripts: paths, cohort loading, feature matrices, models.

Every script resolves its paths from the repository root (so it can run from any directory) and
imports DLRPredictorLib as installed (editable) in .venv: run them with ``.venv/bin/python``.
The cohort is the one the bundled model was built on (see scripts/make_manifests.py):
``out/manifests/combined_train.csv`` (BUS-BRA official folds 1-4 + 70 % of BrEaST) and
``out/manifests/combined_test.csv``; results are reported on the BUS-BRA part of the test
manifest (official fold 5).

Backs: shared by every script here; each script names the decision of docs/EXPERIMENTS.md it
backs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXP_DIR = ROOT / "out" / "exp"
RADIOMICS_CACHE = ROOT / "out" / "bundle.work" / "cache"
MANIFESTS = (
    ("train", ROOT / "out" / "manifests" / "combined_train.csv"),
    ("test", ROOT / "out" / "manifests" / "combined_test.csv"),
)
LABEL_VALUES = {"malignant": 1, "benign": 0}
CLINICAL_NAMES = ["age", "birads"]
# Seeds the random contour variants (jitter) per case, as the trainer does.
CASE_SEED = 42
# The contour variants the radiomics experiments train on (see training_data.make_variant).
ALL_VARIANTS = ["exact", "ellipse", "jitter", "dilate2", "erode2"]
TEST_DATASET = "BUS-BRA"
PROBABILITY_CLIP = 1e-6


def print_flush(line: str) -> None:
    """Print one progress line at once (the scripts are usually run with output to a log file)."""
    print(line, flush=True)


def add_crop_arguments(ap: Any, size: int) -> None:
    """``--size`` and ``--margin``: the lesion crops the CNN scripts train on."""
    ap.add_argument("--size", type=int, default=size, help="crop and network input side (px)")
    ap.add_argument("--margin", type=float, default=0.15, help="context on each side, x lesion box side")


def load_cases(
    variants: Sequence[str],
    log: Callable[[str], None] = print_flush,
    manifests: Sequence[tuple[str, Path]] = MANIFESTS,
) -> tuple[list, np.ndarray]:
    """Read every case of the train and test manifests, with the given contour variants.

    Cases whose image or lesion cannot be used are reported through ``log`` and left out.
    ``manifests`` ((split name, path) pairs) replaces the default train and test manifests.

    Returns:
        (list of training_data.TrainingCase, array of "train" / "test" per case).
    """
    from DLRPredictorLib.base.errors import DLRError
    from DLRPredictorLib.inputs import cohort_csv as manifest
    from DLRPredictorLib.training import data as training_data

    cases = []
    split = []
    for split_name, path in manifests:
        rows = manifest.read_cohort_csv(
            path,
            required=("case_id", "image", "mask", "label"),
            clinical_names=CLINICAL_NAMES,
            label_values=LABEL_VALUES,
        )
        for row in rows:
            try:
                case = training_data.load_case(
                    row, int(row.label), list(variants), pixel_units=True, seed=CASE_SEED
                )
            except DLRError as exc:
                log(f"excluded {row.case_id}: {exc}")
                continue
            cases.append(case)
            split.append(split_name)
    return cases, np.array(split)


def split_masks(split: np.ndarray, dataset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean rows of the training split and of the held-out BUS-BRA test fold."""
    train = split == "train"
    test = (split == "test") & (dataset == TEST_DATASET)
    return train, test


def check_same_cases(ids_a: np.ndarray, ids_b: np.ndarray, what: str) -> None:
    """Stop when two caches do not hold the same cases in the same order."""
    if ids_a.shape != ids_b.shape or not (ids_a == ids_b).all():
        raise SystemExit(f"{what}: the cached files do not hold the same cases in the same order")


def signed_log(values: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): tames the heavy tails of many radiomics features."""
    return np.sign(values) * np.log1p(np.abs(values))


def radiomics_matrix(
    data: Mapping[str, np.ndarray], variant: str, rows: np.ndarray, log_transform: bool = False
) -> np.ndarray:
    """Radiomics of one contour variant for the selected rows (failed extractions become 0).

    Args:
        data: a prepare_features.py cache (``R_<variant>`` arrays).
        variant: contour variant name.
        rows: boolean row selection.
        log_transform: apply :func:`signed_log` before replacing NaN by 0.
    """
    values = data["R_" + variant][rows].copy()
    if log_transform:
        values = signed_log(values)
    return np.nan_to_num(values)


def stacked_training_set(
    data: Mapping[str, np.ndarray],
    variants: Sequence[str],
    rows: np.ndarray,
    log_transform: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One training row per (variant, case): the variants' matrices stacked, labels repeated."""
    features = np.vstack([radiomics_matrix(data, v, rows, log_transform) for v in variants])
    labels = np.concatenate([data["labels"][rows]] * len(variants))
    return features, labels


def _l1_arguments() -> dict[str, Any]:
    """An L1 penalty for LogisticRegression in the spelling of the installed scikit-learn.

    From 1.8 ``penalty`` is deprecated and ``l1_ratio=1`` means L1 (identical fit); before,
    ``l1_ratio`` is ignored unless ``penalty="elasticnet"``, so ``penalty="l1"`` is needed.
    """
    from sklearn.linear_model import LogisticRegression

    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        return {"l1_ratio": 1.0}
    return {"penalty": "l1"}


def l1_logistic(c: float, max_iter: int = 5000) -> Any:
    """Standardisation + L1 logistic regression (liblinear) with inverse penalty strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=c, solver="liblinear", max_iter=max_iter, **_l1_arguments()),
    )


def l2_logistic(c: float, max_iter: int = 5000) -> Any:
    """Standardisation + L2 logistic regression (lbfgs) with inverse penalty strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))


def logit(probability: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped away from 0 and 1."""
    p = np.clip(probability, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return np.log(p / (1 - p))
