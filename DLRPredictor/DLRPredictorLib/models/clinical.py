"""Clinical variables, their validation and encoding, clinical logistic models and the combined model.

- :class:`ClinicalVariable` declares one clinical input (numeric with unit and range, or
  categorical with its allowed values and an ordinal or one-hot encoding);
  :func:`encode_clinical` validates rows of values and encodes them, raising
  :class:`ClinicalValueError` with a message naming the variable, the value and the case.
- :func:`univariable_logistic` / :func:`multivariable_logistic`: statsmodels Logit odds ratios with
  95% CIs and p values; :func:`select_predictors` picks predictors for the multivariable model.
- :class:`CombinedModel`: unpenalised logistic regression of the DLR score (as logit) plus the
  retained clinical predictors, with exact per-term contributions; plain coefficients only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import ClinicalValueError, ConfigError, InputError
from ..base.numeric import expit
from .selection import check_binary_labels

if TYPE_CHECKING:
    import pandas as pd

# pandas, statsmodels and sklearn are imported inside the fitting functions: validating, encoding
# and applying a fitted CombinedModel (what a prediction does) needs numpy alone.

VARIABLE_TYPES = ("numeric", "categorical")
ENCODINGS = ("ordinal", "onehot")
_MANIFEST_KEYS = ("name", "type", "required", "unit", "minimum", "maximum", "allowed", "description")
_TABLE_COLUMNS = ["predictor", "coef", "se", "odds_ratio", "ci_lower", "ci_upper", "p_value", "n", "note"]


def normalize_category(value: Any) -> str:
    """A categorical value as comparable text: stripped, lower-case, 4.0 -> "4"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, np.generic):
        return normalize_category(value.item())
    return str(value).strip().lower()


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() in ("na", "n/a", "not available", "nan")
    return isinstance(value, (float, np.floating)) and math.isnan(float(value))


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class ClinicalVariable:
    """One clinical input of a model.

    Attributes:
        name: field / manifest column name, e.g. ``age``.
        type: "numeric" or "categorical".
        unit: unit of a numeric value, e.g. "years".
        minimum, maximum: accepted numeric range (inclusive), None for open.
        allowed: accepted categorical values, in their natural order.
        encoding: "ordinal" (one column, ``ordinal_values``) or "onehot" (one 0/1 column per
            level except ``reference``).
        ordinal_values: number of each allowed value for ordinal encoding (default 0, 1, 2, ...).
        reference: the one-hot reference level (default the first allowed value).
        description: text for the user.
        label: display name in messages and plots (default ``name``), e.g. "BI-RADS".
        required: whether the full model needs it (the bundle's manifest flag).
    """

    name: str
    type: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] = ()
    encoding: str = "ordinal"
    ordinal_values: tuple[float, ...] = ()
    reference: str | None = None
    description: str = ""
    label: str | None = None
    required: bool = True
    _lookup: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"clinical variable '{self.name}'"
        if self.type not in VARIABLE_TYPES:
            raise ConfigError(f"{where}: type must be one of {VARIABLE_TYPES}, got {self.type!r}")
        if self.type == "numeric":
            if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
                raise ConfigError(f"{where}: minimum {self.minimum} is above maximum {self.maximum}")
            return
        object.__setattr__(self, "allowed", tuple(str(a) for a in self.allowed))
        object.__setattr__(self, "ordinal_values", tuple(float(v) for v in self.ordinal_values))
        keys = [normalize_category(a) for a in self.allowed]
        if not keys or len(set(keys)) != len(keys):
            raise ConfigError(f"{where}: categorical variables need distinct allowed values")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"{where}: encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.ordinal_values and len(self.ordinal_values) != len(self.allowed):
            raise ConfigError(f"{where}: ordinal_values must give one number per allowed value")
        if self.reference is not None and normalize_category(self.reference) not in keys:
            raise ConfigError(f"{where}: reference {self.reference!r} is not an allowed value")
        self._lookup.update({k: i for i, k in enumerate(keys)})

    @property
    def display(self) -> str:
        """Name used in messages and plots."""
        return self.label or self.name

    @property
    def reference_level(self) -> str:
        """The one-hot reference level (dropped column)."""
        if self.reference is None:
            return self.allowed[0]
        return self.allowed[self._lookup[normalize_category(self.reference)]]

    def level_value(self, level: str) -> float:
        """Ordinal number of an allowed value."""
        i = self._lookup[normalize_category(level)]
        return self.ordinal_values[i] if self.ordinal_values else float(i)

    def encoded_names(self) -> list[str]:
        """Column names after encoding ("age"; "birads"; or "birads=4a", ... for one-hot)."""
        if self.type == "numeric" or self.encoding == "ordinal":
            return [self.name]
        ref = normalize_category(self.reference_level)
        return [f"{self.name}={a}" for a in self.allowed if normalize_category(a) != ref]

    def check(self, value: Any, where: str = "") -> float | str:
        """Validate one value: a float for numeric variables, the canonical level otherwise.

        Args:
            value: the raw value (number or text).
            where: context appended to messages, e.g. " (case bus_0001)".

        Raises:
            ClinicalValueError: missing, non-numeric, out-of-range or unknown category.
        """
        if _is_missing(value):
            unit = f" ({self.unit})" if self.unit else ""
            raise ClinicalValueError(
                f"{self.display} is missing{where}; enter a value{unit} or leave all clinical "
                "values out to use the image-only model"
            )
        if self.type == "numeric":
            return self._check_numeric(value, where)
        key = normalize_category(value)
        if key not in self._lookup:
            raise ClinicalValueError(
                f"{self.display} '{str(value).strip()}' is not one of {', '.join(self.allowed)}{where}; "
                "enter one of these values"
            )
        return self.allowed[self._lookup[key]]

    def _check_numeric(self, value: Any, where: str) -> float:
        unit = f" {self.unit}" if self.unit else ""
        hint = f"; enter a number in {self.unit}" if self.unit else "; enter a number"
        if isinstance(value, (bool, np.bool_)):
            raise ClinicalValueError(f"{self.display} {value!r} is not a number{where}{hint}")
        try:
            v = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ClinicalValueError(f"{self.display} '{value}' is not a number{where}{hint}") from None
        if not math.isfinite(v):
            raise ClinicalValueError(f"{self.display} '{value}' is not a finite number{where}")
        lo, hi = self.minimum, self.maximum
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if lo is not None and hi is not None:
                span = f"outside {_fmt(lo)}-{_fmt(hi)}{unit}"
            elif lo is not None:
                span = f"below the minimum {_fmt(lo)}{unit}"
            else:
                span = f"above the maximum {_fmt(hi)}{unit}"  # type: ignore[arg-type]
            raise ClinicalValueError(
                f"{self.display} {_fmt(v)} is {span}{where}; check the value and its unit"
            )
        return v

    def encode(self, value: Any, where: str = "") -> list[float]:
        """Validated and encoded value (one number per ``encoded_names()`` column)."""
        checked = self.check(value, where)
        if self.type == "numeric":
            return [float(checked)]
        if self.encoding == "ordinal":
            return [self.level_value(str(checked))]
        ref = normalize_category(self.reference_level)
        key = normalize_category(checked)
        return [float(normalize_category(a) == key) for a in self.allowed if normalize_category(a) != ref]

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict (all settings, including the encoding)."""
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "allowed": list(self.allowed),
            "encoding": self.encoding,
            "ordinal_values": list(self.ordinal_values),
            "reference": self.reference,
            "description": self.description,
            "label": self.label,
            "required": self.required,
        }

    def manifest_entry(self) -> dict[str, Any]:
        """The subset of :meth:`to_spec` that the bundle manifest schema declares."""
        spec = self.to_spec()
        return {k: spec[k] for k in _MANIFEST_KEYS}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ClinicalVariable:
        """A variable from :meth:`to_spec` output or a bundle manifest entry.

        Raises:
            ConfigError: unknown keys or invalid settings.
        """
        known = {
            "name", "type", "unit", "minimum", "maximum", "allowed", "encoding",
            "ordinal_values", "reference", "description", "label", "required",
        }  # fmt: skip
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(f"clinical variable '{spec.get('name')}': unknown key(s) {unknown}")
        data = dict(spec)
        data["allowed"] = tuple(data.get("allowed") or ())
        data["ordinal_values"] = tuple(data.get("ordinal_values") or ())
        for k in ("minimum", "maximum"):
            if data.get(k) is not None:
                data[k] = float(data[k])
        return cls(**data)


def clinical_feature_names(variables: Sequence[ClinicalVariable]) -> list[str]:
    """Encoded column names of the variables, in order."""
    return [n for v in variables for n in v.encoded_names()]


def encode_clinical(
    rows: Sequence[Mapping[str, Any]],
    variables: Sequence[ClinicalVariable],
    ignore: Sequence[str] = ("case_id",),
) -> np.ndarray:
    """Validate and encode clinical values.

    Args:
        rows: one mapping of variable name -> raw value per case (``case_id`` is used in messages).
        variables: the model's clinical variables.
        ignore: keys of a row that are not clinical values.

    Returns:
        float64 array (len(rows), len(clinical_feature_names(variables))).

    Raises:
        ClinicalValueError: unknown variable, missing, non-numeric, out-of-range or unknown
            category, naming the case.
    """
    by_name = {v.name: v for v in variables}
    accepted = ", ".join(by_name) or "none"
    out = np.zeros((len(rows), len(clinical_feature_names(variables))))
    for i, row in enumerate(rows):
        where = f" (case {row['case_id']})" if row.get("case_id") not in (None, "") else f" (row {i + 1})"
        unknown = [k for k in row if k not in by_name and k not in ignore]
        if unknown:
            raise ClinicalValueError(
                f"unknown clinical variable '{unknown[0]}'{where}; this model accepts: {accepted}"
            )
        values: list[float] = []
        for var in variables:
            values.extend(var.encode(row.get(var.name), where))
        out[i] = values
    return out


@dataclass
class _LogitFit:
    params: np.ndarray
    bse: np.ndarray
    ci: np.ndarray
    pvalues: np.ndarray
    note: str


def _fit_logit(design: np.ndarray, y: np.ndarray) -> _LogitFit:
    """statsmodels Logit with a note on separation / non-convergence (design includes the constant)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    note = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.Logit(y, design).fit(disp=0, maxiter=200)
        except PerfectSeparationError:
            raise InputError(
                "a clinical predictor separates the classes perfectly; its odds ratio is infinite"
            ) from None
        except np.linalg.LinAlgError:
            raise InputError(
                "clinical predictors are constant or collinear (singular design); remove redundant ones"
            ) from None
    kinds = {type(w.message) for w in caught}
    if PerfectSeparationWarning in kinds:
        note = "perfect separation: estimate unreliable"
    elif ConvergenceWarning in kinds or not res.mle_retvals.get("converged", True):
        note = "did not converge: estimate unreliable"
    return _LogitFit(
        params=np.asarray(res.params, dtype=float),
        bse=np.asarray(res.bse, dtype=float),
        ci=np.asarray(res.conf_int(alpha=0.05), dtype=float),
        pvalues=np.asarray(res.pvalues, dtype=float),
        note=note,
    )


def _design(X: Any, names: Sequence[str], n: int) -> np.ndarray:
    M = np.asarray(X, dtype=float)
    if M.ndim == 1:
        M = M[:, None]
    if M.shape != (n, len(names)):
        raise InputError(
            f"clinical matrix has shape {M.shape}; expected ({n}, {len(names)}) for {list(names)}"
        )
    if not np.isfinite(M).all():
        raise InputError("clinical matrix has missing or infinite values; encode values with encode_clinical")
    return M


def _safe_exp(x: float) -> float:
    """exp() that gives inf instead of raising for the huge CIs of (quasi-)separated fits."""
    return math.exp(x) if x < 700 else math.inf


def _rows(fit: _LogitFit, names: Sequence[str], n: int, skip_const: bool = True) -> list[dict[str, Any]]:
    start = 1 if skip_const else 0
    rows = []
    for j, name in enumerate(names, start=start):
        rows.append(
            {
                "predictor": name,
                "coef": fit.params[j],
                "se": fit.bse[j],
                "odds_ratio": _safe_exp(fit.params[j]),
                "ci_lower": _safe_exp(fit.ci[j, 0]),
                "ci_upper": _safe_exp(fit.ci[j, 1]),
                "p_value": fit.pvalues[j],
                "n": n,
                "note": fit.note,
            }
        )
    return rows


def univariable_logistic(X: Any, y: Any, names: Sequence[str]) -> pd.DataFrame:
    """One logistic regression per predictor (with intercept): odds ratio, 95% CI, Wald p.

    Args:
        X: (n, k) encoded clinical matrix.
        y: 0/1 labels.
        names: the k predictor names.

    Returns:
        DataFrame with columns predictor, coef, se, odds_ratio, ci_lower, ci_upper, p_value, n, note.
        A constant predictor gets NaN estimates and a note instead of failing.
    """
    import pandas as pd

    yb = check_binary_labels(y)
    M = _design(X, names, len(yb))
    rows = []
    for j, name in enumerate(names):
        x = M[:, j]
        if np.ptp(x) == 0:
            rows.append(
                {c: np.nan for c in _TABLE_COLUMNS} | {"predictor": name, "n": len(yb), "note": "constant"}
            )
            continue
        fit = _fit_logit(np.column_stack([np.ones(len(yb)), x]), yb)
        rows.extend(_rows(fit, [name], len(yb)))
    return pd.DataFrame(rows, columns=_TABLE_COLUMNS)


def multivariable_logistic(X: Any, y: Any, names: Sequence[str]) -> pd.DataFrame:
    """One joint logistic regression of all predictors: adjusted odds ratios, 95% CI, Wald p.

    Returns:
        DataFrame with the columns of :func:`univariable_logistic`, one row per predictor.

    Raises:
        InputError: constant or collinear predictors.
    """
    import pandas as pd

    yb = check_binary_labels(y)
    M = _design(X, names, len(yb))
    fit = _fit_logit(np.column_stack([np.ones(len(yb)), M]), yb)
    return pd.DataFrame(_rows(fit, names, len(yb)), columns=_TABLE_COLUMNS)


def select_predictors(table: pd.DataFrame, alpha: float = 0.05, min_keep: int = 1) -> list[str]:
    """Predictors with univariable p < alpha (table order); at least the ``min_keep`` smallest p.

    One-hot columns are treated as separate predictors: a level that is kept is compared with
    the reference merged with the levels that are not.
    """
    p = table["p_value"].astype(float).fillna(1.0).to_numpy()
    names = list(table["predictor"])
    keep = [n for n, pv in zip_strict(names, p) if pv < alpha]
    if len(keep) >= min_keep:
        return keep
    order = np.lexsort((np.arange(len(p)), p))[:min_keep]
    return [names[i] for i in sorted(order.tolist())]


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

            self._table = pd.DataFrame(self._table_records, columns=_TABLE_COLUMNS)
        return self._table

    @table.setter
    def table(self, value: pd.DataFrame | None) -> None:
        self._table, self._table_records = value, None

    def _score_term(self, score: Any, n: int) -> np.ndarray:
        if self.score_name is None:
            return np.zeros((n, 0))
        from .modeling import proba_to_logit

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
        yb = check_binary_labels(y)
        n = len(yb)
        M = _design(X, names, n) if len(names) else np.zeros((n, 0))
        S = self._score_term(score, n)
        design = np.column_stack([S, M])
        if design.shape[1] == 0:
            raise InputError("the combined model needs the score or at least one clinical predictor")
        all_names = ([self.score_name] if self.score_name is not None else []) + list(names)
        params: np.ndarray
        try:
            fit = _fit_logit(np.column_stack([np.ones(n), design]), yb)
            ok = not fit.note
        except InputError:
            ok = False
        if ok:
            import pandas as pd

            params = fit.params
            self.fit_method = "statsmodels"
            self.table = pd.DataFrame(_rows(fit, all_names, n), columns=_TABLE_COLUMNS)
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
        M = _design(X, self.names, n) if self.names else np.zeros((n, 0))
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
