"""Loaded tree ensembles: random forest, extra trees and a single decision tree."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...base.errors import InputError
from .protocols import ClassifierBase


class SafeForest(ClassifierBase):
    """Random forest / extra trees / one decision tree: mean of the trees' leaf distributions.

    Trees are stored concatenated; traversal is vectorised over (tree, case) pairs. As sklearn,
    features are cast to float32 before comparison with the float64 thresholds.
    """

    contribution_scale = "probability"

    def __init__(
        self,
        *,
        kind: str,
        node_counts: np.ndarray,
        children_left: np.ndarray,
        children_right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        n_features_in: int,
        classes: tuple[Any, ...],
    ) -> None:
        super().__init__(n_features_in, classes)
        self.kind = kind
        self.roots = np.concatenate([[0], np.cumsum(node_counts)[:-1]]).astype(np.intp)
        offsets = np.repeat(self.roots, node_counts)
        self.left = np.where(children_left < 0, -1, children_left + offsets)
        self.right = np.where(children_right < 0, -1, children_right + offsets)
        self.feature = np.where(children_left < 0, 0, feature)
        self.threshold = threshold
        self.value = value / value.sum(axis=1, keepdims=True)  # sklearn normalises each leaf alike
        self.n_trees = node_counts.shape[0]

    def _walk(self, X: np.ndarray, contrib: np.ndarray | None = None) -> np.ndarray:
        """Leaf index per (tree, case); adds Saabas steps of the class-1 value to ``contrib``."""
        X32 = X.astype(np.float32)
        if not np.isfinite(X32).all():  # sklearn refuses values beyond float32 as well
            raise InputError(f"The {self.kind} model got feature values too large for float32 (> 3.4e38).")
        n = X.shape[0]
        node = np.repeat(self.roots, n)
        case = np.tile(np.arange(n), self.n_trees)
        active = np.flatnonzero(self.left[node] >= 0)
        while active.size:
            here = node[active]
            go_left = X32[case[active], self.feature[here]] <= self.threshold[here]
            child = np.where(go_left, self.left[here], self.right[here])
            if contrib is not None:
                flat = case[active] * X.shape[1] + self.feature[here]
                delta = self.value[child, 1] - self.value[here, 1]
                contrib += np.bincount(flat, weights=delta, minlength=contrib.size).reshape(contrib.shape)
            node[active] = child
            active = active[self.left[child] >= 0]
        return node.reshape(self.n_trees, n)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return self.value[self._walk(X)].sum(axis=0) / self.n_trees

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        steps = np.zeros((X.shape[0], X.shape[1]))
        self._walk(X, steps)
        out = np.empty((X.shape[0], X.shape[1] + 1))
        out[:, :-1] = steps / self.n_trees
        out[:, -1] = self.value[self.roots, 1].mean()
        return out
