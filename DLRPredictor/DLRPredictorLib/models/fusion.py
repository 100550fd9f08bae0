"""Fusion of signatures: out-of-fold probabilities, ensemble (decision-level) and stacking.

- :func:`out_of_fold_proba`: probabilities of each case from a model not trained on its patient.
- :class:`MemberFusion`: what both late fusions share (out-of-fold member probabilities, refit,
  spec round-trip); subclasses learn and apply the combiner.
- :class:`EnsembleFusion`: accuracy-weighted softmax average of the members' probabilities.
- :class:`StackingFusion`: logistic meta-learner on the members' out-of-fold probabilities or
  log-odds (``STACKING_INPUTS``).

Applying a fitted fusion needs numpy alone; sklearn and pandas are imported to fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.labels import TRAINING_NEEDS_BOTH, validate_labels
from ..base.numeric import expit, softmax
from .classifiers import ProbabilityModel, as_frame, check_named, proba_to_logit
from .selection import stratified_folds
from .signatures import Signature


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


_Fusion = TypeVar("_Fusion", bound="MemberFusion")


class MemberFusion:
    """What the late fusions share: member signatures scored out of fold, a combiner learnt on
    those scores, then the members refitted on all cases.

    Subclasses name their spec (``KIND``) and themselves in messages (``ARTICLE``,
    ``DESCRIPTION``), learn the combiner in ``fit_meta``, apply it in ``combine`` and say in
    ``is_fitted`` whether it has been learnt.
    """

    KIND = ""
    ARTICLE = "a"
    DESCRIPTION = ""

    def __init__(self, members: Sequence[Signature], *, cv: int, seed: int, name: str) -> None:
        """Args:
        members: unfitted signatures (their settings are used).
        cv: folds of the out-of-fold member probabilities.
        seed: fold seed.
        name: display name.

        Raises:
            ConfigError: no members.
        """
        if not members:
            raise ConfigError(f"{self.DESCRIPTION} needs at least one member signature")
        self.members = list(members)
        self.cv = cv
        self.seed = seed
        self.name = name
        self.oof: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        """Whether the combiner has been learnt."""
        raise NotImplementedError

    def fit_meta(self: _Fusion, P: np.ndarray, y: np.ndarray) -> _Fusion:
        """Learn the combiner from member probabilities ``P`` (cases x members) computed out of
        fold (by :meth:`fit`, or by the trainer, which cross-fits its members itself)."""
        raise NotImplementedError

    def combine(self, P: np.ndarray) -> np.ndarray:
        """The fused probability from member probabilities ``P`` (cases x members)."""
        raise NotImplementedError

    def fit(
        self: _Fusion,
        X: Any,
        y: Any,
        groups: Sequence[Any] | np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> _Fusion:
        """Combiner on the members' out-of-fold probabilities, then refit every member on all cases."""
        frame = as_frame(X, feature_names).reset_index(drop=True)
        yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
        self.oof = np.column_stack(
            [
                out_of_fold_proba(m.clone, frame, yb, groups, cv=self.cv, seed=self.seed).proba
                for m in self.members
            ]
        )
        self.fit_meta(self.oof, yb)
        self.members = [m.clone().fit(frame, yb, groups) for m in self.members]
        return self

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """The combined probability from the members' positive-class probabilities."""
        if not self.is_fitted:
            raise InputError(f"fusion '{self.name}' is not fitted yet")
        check_named(X, feature_names)
        return self.combine(np.column_stack([m.predict_proba(X, feature_names) for m in self.members]))

    def _spec(self, **fields: Any) -> dict[str, Any]:
        # Key order is the bundle's pipeline.json order: kind, name, the subclass's fields, members.
        return {
            "kind": self.KIND,
            "name": self.name,
            **fields,
            "members": [m.to_spec() for m in self.members],
        }

    @classmethod
    def _check_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> None:
        if spec.get("kind") != cls.KIND:
            raise ConfigError(f"not {cls.ARTICLE} {cls.DESCRIPTION} spec (kind={spec.get('kind')!r})")
        want = [m["name"] for m in spec["members"]]
        got = [m.name for m in members]
        if want != got:
            raise ConfigError(f"fusion '{spec['name']}' expects members {want}, got {got}")


class EnsembleFusion(MemberFusion):
    """Decision-level fusion: accuracy-weighted softmax average of member probabilities.

    weights = softmax(accuracy_i / temperature), accuracy_i of member i at a 0.5 threshold on its
    out-of-fold probabilities over the training cases; members are then refitted on all of them.
    """

    KIND = "EnsembleFusion"
    ARTICLE = "an"
    DESCRIPTION = "ensemble fusion"

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
        super().__init__(members, cv=cv, seed=seed, name=name)
        if temperature <= 0:
            raise ConfigError("ensemble temperature must be positive")
        self.temperature = float(temperature)
        self.accuracies = np.zeros(0)
        self.weights = np.zeros(0)

    @property
    def is_fitted(self) -> bool:
        """Whether the member weights have been learnt."""
        return self.weights.size != 0

    def fit_meta(self, P: np.ndarray, y: np.ndarray) -> EnsembleFusion:
        """Out-of-fold accuracies ``P`` (cases x members) -> member weights."""
        self.accuracies = ((P >= 0.5).astype(int) == y[:, None]).mean(axis=0)
        self.weights = softmax(self.accuracies / self.temperature)
        return self

    def combine(self, P: np.ndarray) -> np.ndarray:
        """Weighted average of member probabilities ``P`` (cases x members)."""
        return P @ self.weights

    def to_spec(self) -> dict[str, Any]:
        """JSON-able weights and member specs (members' estimators stay in ``members[i].estimator``)."""
        return self._spec(
            temperature=self.temperature,
            cv=self.cv,
            seed=self.seed,
            accuracies=self.accuracies.tolist(),
            weights=self.weights.tolist(),
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> EnsembleFusion:
        """Rebuild from the spec and the fitted members (rebuilt with ``Signature.from_spec``).

        Raises:
            ConfigError: when the spec is not an ensemble spec or members do not match.
        """
        cls._check_spec(spec, members)
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


class StackingFusion(MemberFusion):
    """Stacking: a logistic-regression meta-learner on the members' out-of-fold scores.

    The meta-learner reads the members' probabilities or their log-odds (``inputs``). On log-odds
    it is a weighted sum of the members' logits, the scale on which logistic members are linear;
    on probabilities a confident member (p near 0 or 1) counts no more than a hesitant one.
    """

    KIND = "StackingFusion"
    DESCRIPTION = "stacking fusion"

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
        super().__init__(members, cv=cv, seed=seed, name=name)
        if inputs not in STACKING_INPUTS:
            raise ConfigError(f"stacking inputs must be one of {STACKING_INPUTS}, got {inputs!r}")
        self.inputs = inputs
        self.meta_c = float(meta_c)
        self.coef = np.zeros(0)
        self.intercept = 0.0

    @property
    def is_fitted(self) -> bool:
        """Whether the meta-learner has been learnt."""
        return self.coef.size != 0

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

    def meta_inputs(self, P: np.ndarray) -> np.ndarray:
        """What the meta-learner reads: the members' probabilities or their clipped log-odds."""
        return proba_to_logit(P) if self.inputs == "logit" else np.asarray(P, dtype=float)

    def to_spec(self) -> dict[str, Any]:
        """JSON-able meta-learner coefficients and member specs."""
        return self._spec(
            cv=self.cv,
            seed=self.seed,
            meta_c=self.meta_c,
            inputs=self.inputs,
            coef=self.coef.tolist(),
            intercept=self.intercept,
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> StackingFusion:
        """Rebuild from the spec and the fitted members.

        Raises:
            ConfigError: when the spec is not a stacking spec or members do not match.
        """
        cls._check_spec(spec, members)
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
