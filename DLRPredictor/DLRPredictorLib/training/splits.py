"""The patient-level split of a cohort: held-out test cases and the training folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import InputError
from .config import TrainConfig


@dataclass
class FoldPlan:
    """Case indices of the training split, the test split and the training folds."""

    train: np.ndarray
    test: np.ndarray
    folds: list[np.ndarray]  # validation indices into `train`, per fold


def plan_splits(
    labels: np.ndarray,
    groups: np.ndarray,
    config: TrainConfig,
    n_external: int = 0,
    fold_values: np.ndarray | None = None,
) -> FoldPlan:
    """Patient-level test split and training folds (stratified, seeded).

    Args:
        labels: (N,) 0/1 labels of every case.
        groups: (N,) patient ids; a patient's cases stay on one side of every split.
        config: ``split.test_fraction``, ``split.folds`` and ``seed``.
        n_external: the last ``n_external`` cases come from an external test manifest and are
            the test split.
        fold_values: (N,) the ``split.fold_column`` value of every case (e.g. the scanner): the
            training folds are then one per value, each holding that value out.

    Returns:
        The plan (test indices sorted).

    Raises:
        InputError: when fold values split a patient or give fewer than 2 folds.
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
    if fold_values is not None:
        return FoldPlan(train=train, test=np.sort(test), folds=group_folds(groups[train], fold_values[train]))
    folds = [
        va for _, va in stratified_folds(labels[train], groups[train], config.split.folds, config.seed + 1)
    ]
    return FoldPlan(train=train, test=np.sort(test), folds=folds)


def group_folds(patients: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    """Leave-one-group-out folds: the positions of each value (sorted), e.g. one scanner per fold.

    Raises:
        InputError: a case without a value, a patient with cases of two values (a fold would
            split the patient), or fewer than 2 values.
    """
    blank = int(sum(not str(v).strip() for v in values.tolist()))
    if blank:
        raise InputError(f"split.fold_column: {blank} training case(s) have no value in that column")
    seen: dict[str, str] = {}
    for p, v in zip_strict(patients.tolist(), values.tolist()):
        if seen.setdefault(str(p), str(v)) != str(v):
            raise InputError(
                f"split.fold_column: a patient has cases with the values '{seen[str(p)]}' and '{v}'; "
                "each patient must belong to one group"
            )
    distinct = sorted({str(v) for v in values.tolist()})
    if len(distinct) < 2:
        raise InputError(
            f"split.fold_column: the training cases have {len(distinct)} value(s); need 2 or more"
        )
    text = np.array([str(v) for v in values.tolist()])
    return [np.flatnonzero(text == v) for v in distinct]


def plan_external(
    labels: np.ndarray,
    groups: np.ndarray,
    datasets: np.ndarray,
    config: TrainConfig,
    fold_values: np.ndarray | None = None,
    *,
    n_external: int = 0,
) -> FoldPlan:
    """:func:`plan_splits` with every case of ``split.external_dataset`` held out as an external cohort.

    The training split, its folds and the within-dataset test split come from the other cases
    only, so no case of the external cohort reaches training, selection or any fitted step.

    Args:
        labels: (N,) 0/1 labels of every case.
        groups: (N,) patient ids.
        datasets: (N,) the manifest's `dataset` value of every case.
        config: ``split.external_dataset`` and what :func:`plan_splits` reads.
        fold_values: as for :func:`plan_splits`.
        n_external: the last ``n_external`` cases come from a test manifest; those outside the
            external dataset are the within-dataset test split (e.g. a predefined fold), in place
            of the random ``split.test_fraction``.

    Returns:
        The plan; its test split is the within-dataset test cases and the external cohort.

    Raises:
        InputError: no case (or every case) belongs to the external dataset, or a patient has
            cases in it and in another dataset.
    """
    name = config.split.external_dataset
    external = np.array([str(d) == name for d in datasets.tolist()], dtype=bool)
    if not external.any() or external.all():
        found = ", ".join(sorted({str(d) for d in datasets.tolist()} - {""})) or "none"
        what = "no case" if not external.any() else "every case"
        raise InputError(
            f"split.external_dataset '{name}': {what} of the manifest belongs to it "
            f"(dataset values: {found}); it must name one of several datasets"
        )
    shared = set(groups[external].tolist()) & set(groups[~external].tolist())
    if shared:
        raise InputError(
            f"split.external_dataset '{name}': {len(shared)} patient(s) have cases in it and in another "
            "dataset; an external cohort must share no patient with the training data"
        )
    inner = np.flatnonzero(~external)
    # `inner` keeps the manifest order, so the test manifest's within-dataset cases are its tail.
    from_test_manifest = np.arange(labels.size) >= labels.size - int(n_external)
    n_inner_test = int(np.count_nonzero(from_test_manifest[inner]))
    inner_values = None if fold_values is None else fold_values[inner]
    sub = plan_splits(labels[inner], groups[inner], config, n_inner_test, inner_values)
    # fold indices point into `train`, which keeps its order: they stay valid
    test = np.sort(np.concatenate([inner[sub.test], np.flatnonzero(external)]))
    return FoldPlan(train=inner[sub.train], test=test, folds=sub.folds)
