"""The combined model: logistic regression of the DLR score (as logit) plus clinical predictors.

:class:`CombinedModel` is unpenalised, with exact per-term contributions (the nomogram draws
them); it is stored as plain coefficients. Applying a fitted model needs numpy alone; pandas,
statsmodels and sklearn are imported to fit it and to build its table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.labels import TRAINING_NEEDS_BOTH, validate_labels
from ..base.numeric import expit
from .classifiers import proba_to_logit
from .clinical_logistic import TABLE_COLUMNS, design_matrix, fit_logit, table_rows

if TYPE_CHECKING:
    import pandas as pd


class CombinedModel:
    """Logistic regression of the DLR score (as logit) plus clinical predictors, unpenalised.

    Fit it on out-of-fold DLR scores of the training cases: in-sample scores of a flexible
    signature are over-confident and would give the score too much weight (or separate the
    classes). With ``score_name=None`` it is a clinical-only model.

    Attributes (after fit): intercept, coef_score, coefs (per clinical name), names,
    fit_method ("statsmodels", or "sklearn_large_c" when the unpenalised fit separated), table.
    """

    def __init__(self, score_name: str | None = "DLR score", score_scale: str = "probability") -> None:
        """Args:
        score_name: display name of the score term; None for no score term.
        score_scale: "probability" (converted to logit) or "logit".
        """
        if score_scale not in ("probability", "logit"):
            raise ConfigError("score_scale must be 'probability' or 'logit'")
        self.score_name = score_name
        self.score_scale = score_scale
        self.names: list[str] = []
        self.intercept = 0.0
        self.coef_score = 0.0
        self.coefs = np.zeros(0)
        self.fit_method = ""
        self._table: pd.DataFrame | None = None
        self._table_records: list[dict[str, Any]] | None = None  # a loaded spec's table, not yet a frame

    @property
    def table(self) -> pd.DataFrame | None:
        """Odds-ratio table of the statsmodels fit (None after the large-C fallback).

        A model read from a bundle builds it on first use: predicting never needs it (nor pandas).
        """
        if self._table is None and self._table_records is not None:
            import pandas as pd

            self._table = pd.DataFrame(self._table_records, columns=TABLE_COLUMNS)
        return self._table

    @table.setter
    def table(self, value: pd.DataFrame | None) -> None:
        self._table, self._table_records = value, None

    def _score_term(self, score: Any, n: int) -> np.ndarray:
        if self.score_name is None:
            return np.zeros((n, 0))
        s = np.asarray(score, dtype=float).reshape(-1)
        if len(s) != n:
            raise InputError(f"{len(s)} scores for {n} cases")
        if not np.isfinite(s).all():
            raise InputError(f"{self.score_name} has missing or infinite values")
        return (proba_to_logit(s) if self.score_scale == "probability" else s)[:, None]

    def fit(self, score: Any, X: Any, y: Any, names: Sequence[str]) -> CombinedModel:
        """Fit the combined model.

        Args:
            score: DLR score per case (probability or logit, see ``score_scale``); ignored when
                ``score_name`` is None.
            X: (n, k) encoded clinical predictors.
            y: 0/1 labels.
            names: the k clinical predictor names.

        Returns:
            self.
        """
        yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
        n = len(yb)
        M = design_matrix(X, names, n) if len(names) else np.zeros((n, 0))
        S = self._score_term(score, n)
        design = np.column_stack([S, M])
        if design.shape[1] == 0:
            raise InputError("the combined model needs the score or at least one clinical predictor")
        all_names = ([self.score_name] if self.score_name is not None else []) + list(names)
        params: np.ndarray
        try:
            fit = fit_logit(np.column_stack([np.ones(n), design]), yb)
            ok = not fit.note
        except InputError:
            ok = False
        if ok:
            import pandas as pd

            params = fit.params
            self.fit_method = "statsmodels"
            self.table = pd.DataFrame(table_rows(fit, all_names, n), columns=TABLE_COLUMNS)
        else:
            # Separation: the MLE does not exist; a nearly unpenalised fit gives finite coefficients.
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e4, max_iter=10000).fit(design, yb)
            params = np.r_[lr.intercept_, lr.coef_.ravel()]
            self.fit_method = "sklearn_large_c"
            self.table = None
        self.names = list(names)
        self.intercept = float(params[0])
        k = S.shape[1]
        self.coef_score = float(params[1]) if k else 0.0
        self.coefs = np.asarray(params[1 + k :], dtype=float)
        return self

    def contributions(self, score: Any, X: Any) -> pd.DataFrame:
        """Per-case terms on the logit scale: intercept, score, each clinical predictor, and logit.

        ``logit`` is the row sum of the other columns, and :meth:`predict_proba` is its expit.
        """
        import pandas as pd

        terms = self.contribution_terms(score, X)
        frame = pd.DataFrame(terms)
        frame["logit"] = _row_sum(terms)
        return frame

    def contribution_terms(self, score: Any, X: Any) -> dict[str, np.ndarray]:
        """:meth:`contributions` without the logit column, as arrays by name (no pandas)."""
        if not self.fit_method:
            raise InputError("the combined model is not fitted yet")
        n = len(np.asarray(X)) if X is not None else len(np.asarray(score).reshape(-1))
        M = design_matrix(X, self.names, n) if self.names else np.zeros((n, 0))
        terms = {"intercept": np.full(n, self.intercept)}
        if self.score_name is not None:
            terms[self.score_name] = self.coef_score * self._score_term(score, n)[:, 0]
        for j, name in enumerate(self.names):
            terms[name] = self.coefs[j] * M[:, j]
        return terms

    def linear_predictor(self, score: Any, X: Any) -> np.ndarray:
        """The logit of the combined probability."""
        return _row_sum(self.contribution_terms(score, X))

    def predict_proba(self, score: Any, X: Any) -> np.ndarray:
        """Positive-class probability (1-D)."""
        return expit(self.linear_predictor(score, X))

    def to_spec(self) -> dict[str, Any]:
        """JSON-able plain coefficients (the model is fully described by them)."""
        if not self.fit_method:
            raise InputError("the combined model is not fitted yet")
        table = None
        if self.table is not None:
            table = [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in self.table.to_dict(orient="records")
            ]
        return {
            "kind": "CombinedModel",
            "score_name": self.score_name,
            "score_scale": self.score_scale,
            "intercept": self.intercept,
            "coef_score": self.coef_score,
            "names": list(self.names),
            "coefs": [float(c) for c in self.coefs],
            "fit_method": self.fit_method,
            "table": table,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> CombinedModel:
        """Rebuild from :meth:`to_spec` output.

        Raises:
            ConfigError: not a combined model spec, or names and coefficients differ in length.
        """
        if spec.get("kind") != "CombinedModel":
            raise ConfigError(f"not a combined model spec (kind={spec.get('kind')!r})")
        model = cls(spec["score_name"], spec["score_scale"])
        model.names = [str(n) for n in spec["names"]]
        model.coefs = np.asarray(spec["coefs"], dtype=float).reshape(-1)
        if len(model.coefs) != len(model.names):
            raise ConfigError("combined model spec has different numbers of names and coefficients")
        model.intercept = float(spec["intercept"])
        model.coef_score = float(spec["coef_score"])
        model.fit_method = str(spec["fit_method"])
        table = spec.get("table")
        model._table_records = None if table is None else [dict(r) for r in table]
        return model


def _row_sum(terms: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sum of the terms case by case, added left to right in column order."""
    columns = list(terms.values())
    total = np.array(columns[0], dtype=float)
    for column in columns[1:]:
        total = total + column
    return total
