"""Fusion of signatures: out-of-fold probabilities, ensemble (decision-level) and stacking.

- :func:`out_of_fold_proba`: probabilities of each case from a model not trained on its patient.
- :class:`EnsembleFusion`: accuracy-weighted softmax average of the members' probabilities.
- :class:`StackingFusion`: logistic meta-learner on the members' out-of-fold probabilities or
  log-odds (``STACKING_INPUTS``).

Applying a fitted fusion needs numpy alone; sklearn and pandas are imported to fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.labels import TRAINING_NEEDS_BOTH, validate_labels
from ..base.numeric import expit, softmax
from .classifiers import ProbabilityModel, as_frame, check_named, proba_to_logit
from .selection import stratified_folds
from .signatures import Signature

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class OutOfFold:
    """Out-of-fold predictions.

    Attributes:
        proba: positive-class probability of each case, predicted by a model not trained on it
            (nor on any other case of its patient).
        fold: index of the fold in which each case was in validation.
    """

    proba: np.ndarray
    fold: np.ndarray


def out_of_fold_proba(
    factory: Callable[[], ProbabilityModel],
    X: Any,
    y: Any,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    cv: int = 5,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
) -> OutOfFold:
    """Out-of-fold probabilities with StratifiedGroupKFold, so that no patient leaks.

    Args:
        factory: returns a fresh unfitted model with ``fit(X, y, groups)`` and ``predict_proba``.
        X: DataFrame (or array + ``feature_names``).
        y: 0/1 labels.
        groups: patient ids; all cases of a patient are in the same fold.
        cv: number of folds.
        seed: fold shuffling seed.
        feature_names: column names of an array ``X``.

    Returns:
        OutOfFold with the probabilities and fold assignment.
    """
    frame = as_frame(X, feature_names).reset_index(drop=True)
    yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
    garr = None if groups is None else np.asarray(groups)
    proba = np.full(len(yb), np.nan)
    fold = np.full(len(yb), -1, dtype=int)
    for k, (tr, va) in enumerate(stratified_folds(yb, garr, cv, seed)):
        model = factory()
        model.fit(frame.iloc[tr], yb[tr], None if garr is None else garr[tr])  # type: ignore[attr-defined]
        proba[va] = model.predict_proba(frame.iloc[va])
        fold[va] = k
    return OutOfFold(proba=proba, fold=fold)


def _member_oof(
    members: Sequence[Signature], X: pd.DataFrame, y: np.ndarray, groups: Any, *, cv: int, seed: int
) -> np.ndarray:
    return np.column_stack(
        [out_of_fold_proba(m.clone, X, y, groups, cv=cv, seed=seed).proba for m in members]
    )


class EnsembleFusion:
    """Decision-level fusion: accuracy-weighted softmax average of member probabilities.

    weights = softmax(accuracy_i / temperature), accuracy_i of member i at a 0.5 threshold on its
    out-of-fold probabilities over the training cases; members are then refitted on all of them.
    """

    def __init__(
        self,
        members: Sequence[Signature],
        *,
        temperature: float = 0.1,
        cv: int = 5,
        seed: int = 0,
        name: str = "Ensemble",
    ) -> None:
        """Args:
        members: unfitted signatures (their settings are used).
        temperature: softmax temperature (smaller: more weight to the best member).
        cv: folds for the out-of-fold accuracies.
        seed: fold seed.
        name: display name.
        """
        if not members:
            raise ConfigError("ensemble fusion needs at least one member signature")
        if temperature <= 0:
            raise ConfigError("ensemble temperature must be positive")
        self.members = list(members)
        self.temperature = float(temperature)
        self.cv = cv
        self.seed = seed
        self.name = name
        self.accuracies = np.zeros(0)
        self.weights = np.zeros(0)

    def fit(
        self,
        X: Any,
        y: Any,
        groups: Sequence[Any] | np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> EnsembleFusion:
        """Out-of-fold accuracies -> weights, then refit every member on all cases."""
        frame = as_frame(X, feature_names).reset_index(drop=True)
        yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
        oof = _member_oof(self.members, frame, yb, groups, cv=self.cv, seed=self.seed)
        self.accuracies = ((oof >= 0.5).astype(int) == yb[:, None]).mean(axis=0)
        self.weights = softmax(self.accuracies / self.temperature)
        self.members = [m.clone().fit(frame, yb, groups) for m in self.members]
        return self

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Weighted average of the members' positive-class probabilities."""
        if self.weights.size == 0:
            raise InputError(f"fusion '{self.name}' is not fitted yet")
        check_named(X, feature_names)
        P = np.column_stack([m.predict_proba(X, feature_names) for m in self.members])
        return P @ self.weights

    def to_spec(self) -> dict[str, Any]:
        """JSON-able weights and member specs (members' estimators stay in ``members[i].estimator``)."""
        return {
            "kind": "EnsembleFusion",
            "name": self.name,
            "temperature": self.temperature,
            "cv": self.cv,
            "seed": self.seed,
            "accuracies": self.accuracies.tolist(),
            "weights": self.weights.tolist(),
            "members": [m.to_spec() for m in self.members],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> EnsembleFusion:
        """Rebuild from the spec and the fitted members (rebuilt with ``Signature.from_spec``).

        Raises:
            ConfigError: when the spec is not an ensemble spec or members do not match.
        """
        if spec.get("kind") != "EnsembleFusion":
            raise ConfigError(f"not an ensemble fusion spec (kind={spec.get('kind')!r})")
        _check_members(spec, members)
        ens = cls(
            members,
            temperature=spec["temperature"],
            cv=int(spec["cv"]),
            seed=int(spec["seed"]),
            name=spec["name"],
        )
        ens.accuracies = np.asarray(spec["accuracies"], dtype=float)
        ens.weights = np.asarray(spec["weights"], dtype=float)
        return ens


STACKING_INPUTS = ("probability", "logit")


class StackingFusion:
    """Stacking: a logistic-regression meta-learner on the members' out-of-fold scores.

    The meta-learner reads the members' probabilities or their log-odds (``inputs``). On log-odds
    it is a weighted sum of the members' logits, the scale on which logistic members are linear;
    on probabilities a confident member (p near 0 or 1) counts no more than a hesitant one.
    """

    def __init__(
        self,
        members: Sequence[Signature],
        *,
        cv: int = 5,
        seed: int = 0,
        meta_c: float = 1.0,
        name: str = "Stacking",
        inputs: str = "probability",
    ) -> None:
        """Args:
        members: unfitted signatures.
        cv: folds of the out-of-fold probabilities.
        seed: fold seed.
        meta_c: inverse L2 strength of the meta-learner.
        name: display name.
        inputs: "probability" or "logit": what the meta-learner reads of each member.

        Raises:
            ConfigError: no members, or unknown ``inputs``.
        """
        if not members:
            raise ConfigError("stacking fusion needs at least one member signature")
        if inputs not in STACKING_INPUTS:
            raise ConfigError(f"stacking inputs must be one of {STACKING_INPUTS}, got {inputs!r}")
        self.inputs = inputs
        self.members = list(members)
        self.cv = cv
        self.seed = seed
        self.meta_c = float(meta_c)
        self.name = name
        self.coef = np.zeros(0)
        self.intercept = 0.0
        self.oof: np.ndarray | None = None

    def fit(
        self,
        X: Any,
        y: Any,
        groups: Sequence[Any] | np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> StackingFusion:
        """Meta-learner on out-of-fold probabilities, then refit every member on all cases."""
        frame = as_frame(X, feature_names).reset_index(drop=True)
        yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
        self.oof = _member_oof(self.members, frame, yb, groups, cv=self.cv, seed=self.seed)
        self.fit_meta(self.oof, yb)
        self.members = [m.clone().fit(frame, yb, groups) for m in self.members]
        return self

    def fit_meta(self, P: np.ndarray, y: np.ndarray) -> StackingFusion:
        """Fit only the meta-learner, on member probabilities ``P`` (cases x members) computed
        out of fold by the caller (the trainer cross-fits its members itself)."""
        from sklearn.linear_model import LogisticRegression

        meta = LogisticRegression(C=self.meta_c, max_iter=5000, random_state=self.seed)
        meta.fit(self.meta_inputs(P), y)
        self.coef = meta.coef_.ravel().copy()
        self.intercept = float(meta.intercept_[0])
        return self

    def combine(self, P: np.ndarray) -> np.ndarray:
        """The fused probability from member probabilities ``P`` (cases x members)."""
        return expit(self.intercept + self.meta_inputs(P) @ self.coef)

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Meta-learner probability from the members' probabilities."""
        if self.coef.size == 0:
            raise InputError(f"fusion '{self.name}' is not fitted yet")
        check_named(X, feature_names)
        return self.combine(np.column_stack([m.predict_proba(X, feature_names) for m in self.members]))

    def meta_inputs(self, P: np.ndarray) -> np.ndarray:
        """What the meta-learner reads: the members' probabilities or their clipped log-odds."""
        return proba_to_logit(P) if self.inputs == "logit" else np.asarray(P, dtype=float)

    def to_spec(self) -> dict[str, Any]:
        """JSON-able meta-learner coefficients and member specs."""
        return {
            "kind": "StackingFusion",
            "name": self.name,
            "cv": self.cv,
            "seed": self.seed,
            "meta_c": self.meta_c,
            "inputs": self.inputs,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "members": [m.to_spec() for m in self.members],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> StackingFusion:
        """Rebuild from the spec and the fitted members.

        Raises:
            ConfigError: when the spec is not a stacking spec or members do not match.
        """
        if spec.get("kind") != "StackingFusion":
            raise ConfigError(f"not a stacking fusion spec (kind={spec.get('kind')!r})")
        _check_members(spec, members)
        st = cls(
            members,
            cv=int(spec["cv"]),
            seed=int(spec["seed"]),
            meta_c=float(spec["meta_c"]),
            name=spec["name"],
            # bundles written before the option existed stacked probabilities
            inputs=str(spec.get("inputs", "probability")),
        )
        st.coef = np.asarray(spec["coef"], dtype=float)
        st.intercept = float(spec["intercept"])
        return st


def _check_members(spec: Mapping[str, Any], members: Sequence[Signature]) -> None:
    want = [m["name"] for m in spec["members"]]
    got = [m.name for m in members]
    if want != got:
        raise ConfigError(f"fusion '{spec['name']}' expects members {want}, got {got}")
