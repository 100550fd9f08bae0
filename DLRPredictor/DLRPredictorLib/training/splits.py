"""The patient-level split of a cohort: held-out test cases and the training folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TrainConfig


@dataclass
class FoldPlan:
    """Case indices of the training split, the test split and the training folds."""

    train: np.ndarray
    test: np.ndarray
    folds: list[np.ndarray]  # validation indices into `train`, per fold


def plan_splits(labels: np.ndarray, groups: np.ndarray, config: TrainConfig, n_external: int = 0) -> FoldPlan:
    """Patient-level test split and training folds (stratified, seeded).

    Args:
        labels: (N,) 0/1 labels of every case.
        groups: (N,) patient ids; a patient's cases stay on one side of every split.
        config: ``split.test_fraction``, ``split.folds`` and ``seed``.
        n_external: the last ``n_external`` cases come from an external test manifest and are
            the test split.

    Returns:
        The plan (test indices sorted).
    """
    from ..models.selection import stratified_folds

    n = len(labels)
    if n_external:
        train = np.arange(n - n_external)
        test = np.arange(n - n_external, n)
    elif config.split.test_fraction > 0:
        k = max(2, round(1 / config.split.test_fraction))
        _, test = next(iter(stratified_folds(labels, groups, k, config.seed)))
        train = np.setdiff1d(np.arange(n), test)
    else:
        train, test = np.arange(n), np.arange(0)
    folds = [
        va for _, va in stratified_folds(labels[train], groups[train], config.split.folds, config.seed + 1)
    ]
    return FoldPlan(train=train, test=np.sort(test), folds=folds)
