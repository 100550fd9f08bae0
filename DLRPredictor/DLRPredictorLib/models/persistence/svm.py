"""Loaded binary SVC (linear / RBF kernel) with libsvm's Platt probabilities, reproduced exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ...base.errors import BundleError
from .protocols import ClassifierBase, pairwise_distances


def _libsvm_pairwise_coupling(r01: np.ndarray) -> np.ndarray:
    """libsvm's ``multiclass_probability`` for two classes, vectorised over rows.

    sklearn's libsvm fork runs this iterative solver (Wu, Lin and Weng, method 2) even for two
    classes; it stops once its error is below 0.005 / 2, so the result is close to, but not equal
    to, the Platt probability ``[r01, 1 - r01]``. The operation order follows svm.cpp.
    """
    r10 = 1 - r01
    q = np.array([[r10 * r10, -r10 * r01], [-r10 * r01, r01 * r01]])  # Q[t][j] per row
    p = np.full((2, r01.size), 0.5)
    active = np.ones(r01.size, dtype=bool)
    for _ in range(100):
        qp = np.stack([0.0 + q[t, 0] * p[0] + q[t, 1] * p[1] for t in range(2)])
        pqp = 0.0 + p[0] * qp[0] + p[1] * qp[1]
        max_error = np.maximum(np.abs(qp[0] - pqp), np.abs(qp[1] - pqp))
        active &= ~(max_error < 0.005 / 2)
        if not active.any():
            break
        for t in range(2):
            diff = (-qp[t] + pqp) / q[t, t]
            new_p = p.copy()
            new_p[t] += diff
            pqp = np.where(active, (pqp + diff * (diff * q[t, t] + 2 * qp[t])) / (1 + diff) / (1 + diff), pqp)
            new_qp = (qp + diff * q[t]) / (1 + diff)
            new_p = new_p / (1 + diff)
            qp = np.where(active, new_qp, qp)
            p = np.where(active, new_p, p)
    return p.T.copy()


class SafeSVC(ClassifierBase):
    """Binary SVC (linear / RBF kernel) with libsvm's probability output, reproduced exactly.

    ``decision_function`` is sklearn's (``K(x, SV) @ dual_coef + intercept``, positive towards
    ``classes[1]``). libsvm's own decision value is its negation; its Platt probability of
    ``classes[0]`` is ``1 / (1 + exp(A * dec + B))`` clipped to [1e-7, 1 - 1e-7] (A, B: sklearn's
    ``probA_``, ``probB_``), so the Platt log-odds of ``classes[1]`` is ``-A * decision_function + B``:
    that is ``decision_logit`` (linear in x for the linear kernel, hence exact contributions).
    ``predict_proba`` then goes through libsvm's pairwise-coupling solver, which stops within about
    0.005 of the Platt probability; ``expit(decision_logit)`` differs from it by that much.
    """

    kind = "svc"
    response = "decision_function"

    def __init__(
        self,
        *,
        kernel: str,
        gamma: float,
        support_vectors: np.ndarray,
        dual_coef: np.ndarray,
        intercept: float,
        platt: tuple[float, float] | None,
        classes: tuple[Any, ...],
    ) -> None:
        super().__init__(support_vectors.shape[1], classes)
        self.kernel, self.gamma, self.platt = kernel, gamma, platt
        self.support_vectors, self.dual_coef, self.intercept = support_vectors, dual_coef, intercept
        self.contribution_scale = "logit" if kernel == "linear" else None

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """sklearn's SVC ``decision_function``.

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            Array (n,): the signed distance to the margin, positive towards ``classes[1]``.

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._response(self._check(X))

    def _response(self, X: np.ndarray) -> np.ndarray:
        if self.kernel == "linear":
            gram = X @ self.support_vectors.T
        else:
            gram = np.exp(-self.gamma * pairwise_distances(X, self.support_vectors, "sqeuclidean"))
        return gram @ self.dual_coef + self.intercept

    def _platt(self) -> tuple[float, float]:
        if self.platt is None:
            raise BundleError("This SVC was stored without Platt parameters and cannot give probabilities.")
        return self.platt

    def _proba(self, X: np.ndarray) -> np.ndarray:
        a, b = self._platt()
        f = a * -self._response(X) + b  # libsvm: fApB = dec_value * A + B
        e = np.exp(-np.abs(f))
        r01 = np.where(f >= 0, e / (1.0 + e), 1.0 / (1.0 + e))  # libsvm's sigmoid_predict
        r01 = np.minimum(np.maximum(r01, 1e-7), 1 - 1e-7)
        return _libsvm_pairwise_coupling(r01)

    def _logit(self, X: np.ndarray) -> np.ndarray:
        a, b = self._platt()
        return -a * self._response(X) + b

    def _affine_response(self) -> tuple[np.ndarray, float] | None:
        if self.kernel != "linear":
            return None
        return self.dual_coef @ self.support_vectors, self.intercept

    def _affine_logit(self) -> tuple[np.ndarray, float] | None:
        affine = self._affine_response()
        if affine is None or self.platt is None:
            return None
        a, b = self.platt
        return -a * affine[0], -a * affine[1] + b
