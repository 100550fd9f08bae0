"""K-class fusion of the Rad and DL signatures' class probabilities into the DLR model.

- ``stacking``: a multinomial logistic meta-model whose inputs are the members' log class
  probabilities (K per member), fitted on out-of-fold probabilities only. Multinomial, not K
  one-vs-rest meta-models: the K fused probabilities sum to 1 by construction (one-vs-rest ones
  would have to be renormalised, which moves each away from the model fitted for it), and every
  class's score may use every member's evidence on every class (a DL signature that separates
  cysts from fibroadenomas informs both). Log probabilities because each member is itself a
  multinomial logistic model, linear on that scale: a meta-model with coefficient ``w_m`` on the
  diagonal of member m's block is the weighted log-linear pool of the members.
- ``ensemble``: the mean of the members' class probabilities (sums to 1; nothing is fitted).

Applying a fitted fusion needs numpy alone (``predict_proba``); its spec is plain numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.numeric import softmax
from .multiclass_signature import fit_multinomial

SPEC_KIND = "MulticlassFusion"
KINDS = ("stacking", "ensemble")
#: Floor of a probability before its logarithm (a member's softmax can underflow to 0).
PROB_FLOOR = 1e-12


@dataclass
class MulticlassFusion:
    """A fitted K-class fusion of member signatures' class probabilities.

    Attributes:
        kind: "stacking" or "ensemble".
        classes: class names in order.
        members: the member signatures' names in input order (e.g. ["rad", "dl"]).
        coef: stacking: (K, M*K) coefficients on the members' log probabilities (member-major);
            ensemble: None.
        intercept: stacking: (K,); ensemble: None.
        c, cv_log_loss: stacking: the chosen L2 strength and its cross-validated log loss.
    """

    kind: str
    classes: list[str]
    members: list[str]
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    c: float | None = None
    cv_log_loss: float | None = None

    def inputs(self, probs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, M*K) stacking inputs: each member's log class probabilities, side by side.

        Raises:
            InputError: not one (n, K) array per member, or values outside [0, 1].
        """
        k = len(self.classes)
        arrays = [np.atleast_2d(np.asarray(p, dtype=float)) for p in probs]
        if len(arrays) != len(self.members) or any(a.shape[1] != k for a in arrays):
            raise InputError(
                f"the K-class fusion takes one (n, {k}) probability array per member "
                f"({', '.join(self.members)}); got shapes {[a.shape for a in arrays]}"
            )
        if any(a.shape[0] != arrays[0].shape[0] for a in arrays):
            raise InputError("the K-class fusion's member probabilities have different row counts")
        stacked = np.hstack(arrays)
        if not np.isfinite(stacked).all() or (stacked < 0).any() or (stacked > 1).any():
            raise InputError("the K-class fusion got a member probability outside [0, 1]")
        return np.log(np.maximum(stacked, PROB_FLOOR))

    def predict_proba(self, probs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, K) fused class probabilities of the members' (n, K) probabilities."""
        L = self.inputs(probs)
        if self.kind == "ensemble":
            return np.mean([np.atleast_2d(np.asarray(p, dtype=float)) for p in probs], axis=0)
        assert self.coef is not None and self.intercept is not None
        return softmax(L @ self.coef.T + self.intercept, axis=1)

    def terms(self, probs: Sequence[np.ndarray], k: int) -> list[tuple[str, float]]:
        """Each input's term in class k's fused score for one case, then the intercept.

        Stacking: ``coef[k, j] * log p_j`` (the softmax input of class k); ensemble: each member's
        share ``p_m[k] / M`` of the averaged probability.
        """
        names = [f"{m}: {c}" for m in self.members for c in self.classes]
        if self.kind == "ensemble":
            share = [float(np.asarray(p, dtype=float).ravel()[k]) / len(self.members) for p in probs]
            return [(f"{m}: {self.classes[k]}", v) for m, v in zip(self.members, share)]
        assert self.coef is not None and self.intercept is not None
        x = self.inputs([np.asarray(p, dtype=float).reshape(1, -1) for p in probs])[0]
        terms = [(f"log p({n})", float(w * v)) for n, w, v in zip(names, self.coef[k], x)]
        return [*terms, ("(intercept)", float(self.intercept[k]))]

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict of the fitted fusion."""
        return {
            "kind": SPEC_KIND,
            "fusion": self.kind,
            "classes": list(self.classes),
            "members": list(self.members),
            "coef": None if self.coef is None else self.coef.tolist(),
            "intercept": None if self.intercept is None else self.intercept.tolist(),
            "c": self.c,
            "cv_log_loss": self.cv_log_loss,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MulticlassFusion:
        """Rebuild from :meth:`to_spec` output.

        Raises:
            ConfigError: not a K-class fusion spec, or inconsistent shapes or values.
        """
        if spec.get("kind") != SPEC_KIND or spec.get("fusion") not in KINDS:
            raise ConfigError(f"not a K-class fusion spec (kind={spec.get('kind')!r})")
        fusion = cls(
            kind=str(spec["fusion"]),
            classes=[str(c) for c in spec["classes"]],
            members=[str(m) for m in spec["members"]],
            coef=None if spec.get("coef") is None else np.asarray(spec["coef"], dtype=float),
            intercept=None if spec.get("intercept") is None else np.asarray(spec["intercept"], dtype=float),
            c=spec.get("c"),
            cv_log_loss=spec.get("cv_log_loss"),
        )
        k, m = len(fusion.classes), len(fusion.members)
        ok = k >= 3 and m >= 2
        coef, intercept = fusion.coef, fusion.intercept
        if fusion.kind == "stacking":
            ok = (
                ok
                and coef is not None
                and intercept is not None
                and coef.shape == (k, m * k)
                and intercept.shape == (k,)
                and bool(np.isfinite(coef).all() and np.isfinite(intercept).all())
            )
        if not ok:
            raise ConfigError(f"K-class fusion spec is inconsistent ({k} classes, {m} members)")
        return fusion


def fit_multiclass_fusion(
    kind: str,
    probs: Sequence[np.ndarray],
    y: np.ndarray,
    classes: Sequence[str],
    members: Sequence[str],
    *,
    groups: np.ndarray | None = None,
    cv: int = 5,
    seed: int = 0,
) -> MulticlassFusion:
    """Fit the fusion on the members' out-of-fold (n, K) probabilities of the same rows.

    Args:
        kind: "stacking" (multinomial meta-model) or "ensemble" (mean; nothing fitted).
        probs: one (n, K) array per member, out-of-fold.
        y: (n,) class index of each row.
        classes, members: names, in order.
        groups: (n,) patient ids for the meta-model's C search.
        cv, seed: folds of that search.

    Raises:
        ConfigError: an unknown kind.
    """
    if kind not in KINDS:
        raise ConfigError(f"K-class fusion must be one of {KINDS}, got {kind!r}")
    names, inputs = [str(c) for c in classes], [str(m) for m in members]
    fusion = MulticlassFusion(kind=kind, classes=names, members=inputs)
    if kind == "ensemble":
        return fusion
    L = fusion.inputs(probs)
    fit = fit_multinomial(L, np.asarray(y, dtype=int), len(names), groups=groups, cv=cv, seed=seed)
    return MulticlassFusion(kind, names, inputs, fit.coef, fit.intercept, fit.c, fit.cv_log_loss)


__all__ = ["KINDS", "MulticlassFusion", "fit_multiclass_fusion"]
