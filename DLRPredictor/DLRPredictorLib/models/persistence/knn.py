"""Loaded k-nearest-neighbours classifier, with sklearn's brute-force tie breaking."""

from __future__ import annotations

from typing import Any

import numpy as np

from .protocols import ClassifierBase, pairwise_distances


def _heap_neighbours(dist: np.ndarray, k: int) -> np.ndarray:
    """The k neighbours sklearn's fixed-size max-heap keeps when fed training rows in order.

    This is sklearn's ``heap_push`` (sklearn/utils/_heap.pyx), vectorised over query rows: a value
    equal to the current maximum is rejected, so among equal distances the choice depends on the
    heap layout, not simply on the lowest index. Only rows with a tie at the k-th distance need it.
    """
    m = dist.shape[0]
    values = np.full((m, k), np.inf)
    indices = np.full((m, k), -1, dtype=np.intp)
    for j in range(dist.shape[1]):
        val = dist[:, j]
        rows = np.flatnonzero(val < values[:, 0])
        v, cur = val[rows], np.zeros(rows.size, dtype=np.intp)
        while rows.size:
            left = 2 * cur + 1
            right = left + 1
            has_left, has_right = left < k, right < k
            lv = np.where(has_left, values[rows, np.minimum(left, k - 1)], -np.inf)
            rv = np.where(has_right, values[rows, np.minimum(right, k - 1)], -np.inf)
            use_left = ~has_right | (lv >= rv)
            target = np.where(use_left, left, right)
            swap = has_left & (v < np.where(use_left, lv, rv))
            stop = ~swap
            values[rows[stop], cur[stop]] = v[stop]
            indices[rows[stop], cur[stop]] = j
            r, t, c = rows[swap], target[swap], cur[swap]
            values[r, c] = values[r, t]
            indices[r, c] = indices[r, t]
            rows, cur, v = r, t, v[swap]
    return indices


class SafeKNN(ClassifierBase):
    """k-nearest neighbours (uniform or distance weights; Euclidean or Manhattan).

    Distances are exact (from differences). The neighbour set is unique unless the k-th and
    (k+1)-th distances tie; for those rows sklearn's brute-force heap is replayed so that ties break
    as sklearn's ``algorithm="brute"`` does. sklearn's kd-tree / ball-tree searches break such ties by
    their tree layout, which is not stored, so tied rows may differ from a tree-based original.
    """

    kind = "k_neighbors"

    def __init__(
        self,
        *,
        fit_X: np.ndarray,
        fit_y: np.ndarray,
        n_neighbors: int,
        weights: str,
        metric: str,
        classes: tuple[Any, ...],
    ) -> None:
        super().__init__(fit_X.shape[1], classes)
        self.fit_X, self.fit_y = fit_X, fit_y
        self.n_neighbors, self.weights, self.metric = n_neighbors, weights, metric

    def _neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_neighbors
        dist = pairwise_distances(X, self.fit_X, self.metric)
        order = np.argsort(dist, axis=1, kind="stable")
        ind = order[:, :k].copy()
        if dist.shape[1] > k:
            ranked = np.take_along_axis(dist, order[:, k - 1 : k + 1], axis=1)
            tied = np.flatnonzero(ranked[:, 0] == ranked[:, 1])
            if tied.size:
                ind[tied] = _heap_neighbours(dist[tied], k)
        return np.take_along_axis(dist, ind, axis=1), ind

    def _proba(self, X: np.ndarray) -> np.ndarray:
        dist, ind = self._neighbours(X)
        if self.weights == "uniform":
            weight = np.ones_like(dist)
        else:  # sklearn's _get_weights: 1/d, and rows with an exact match use only the matches
            with np.errstate(divide="ignore"):
                weight = 1.0 / dist
            exact = np.isinf(weight)
            rows = exact.any(axis=1)
            weight[rows] = exact[rows]
        labels = self.fit_y[ind]
        proba = np.zeros((X.shape[0], 2))
        every_row = np.arange(X.shape[0])
        for i in range(ind.shape[1]):
            proba[every_row, labels[:, i]] += weight[:, i]
        return proba / proba.sum(axis=1, keepdims=True)
