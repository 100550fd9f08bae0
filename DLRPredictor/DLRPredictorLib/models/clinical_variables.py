"""Clinical variables: their declaration, the missing-value rule, validation and encoding.

- :class:`ClinicalVariable` declares one clinical input (numeric with unit and range, or
  categorical with its allowed values and an ordinal or one-hot encoding); the bundle manifest
  declares its clinical inputs with the same class (:meth:`ClinicalVariable.manifest_entry`).
- :func:`is_missing`: which raw values mean "not given" (one rule for every entry path).
- :func:`encode_clinical` validates rows of values and encodes them, raising
  :class:`ClinicalValueError` with a message naming the variable, the value and the case;
  :func:`clinical_feature_names` names the encoded columns.

Validating and encoding need numpy alone (a prediction does both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import ClinicalValueError, ConfigError

VARIABLE_TYPES = ("numeric", "categorical")
ENCODINGS = ("ordinal", "onehot")
_MANIFEST_KEYS = ("name", "type", "required", "unit", "minimum", "maximum", "allowed", "description")


def normalize_category(value: Any) -> str:
    """A categorical value as comparable text: stripped, lower-case, 4.0 -> "4"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, np.generic):
        return normalize_category(value.item())
    return str(value).strip().lower()


#: Text meaning "not given" in a clinical value, compared stripped and in lower case: an empty cell
#: and the usual not-available spellings of forms, spreadsheets and pandas ("nan", "None").
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "none", "not available", "unknown"})


def is_missing(value: Any) -> bool:
    """Whether a raw clinical value means "not given": the one rule of the package.

    Cohort CSV cells, Slicer fields and API values follow it alike: a missing value makes the
    prediction fall back to the image-only model, and the combined model's training skips the
    case. That is why no categorical variable may allow a level spelled like this (e.g. "unknown"):
    see :class:`ClinicalVariable`.

    Args:
        value: the raw value (text, a number or None).

    Returns:
        True for None, a NaN number, or text in :data:`MISSING_TEXT` (any case, blanks around
        ignored); False for any other value, which is then validated by the variable.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TEXT
    return isinstance(value, (float, np.floating)) and math.isnan(float(value))


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class ClinicalVariable:
    """One clinical input of a model, as training configs, pipeline.json and the manifest declare it.

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
        spelled_missing = [a for a in self.allowed if is_missing(a)]
        if spelled_missing:
            # such a level could never be entered: every entry path reads it as "not given"
            raise ConfigError(
                f"{where}: allowed value {spelled_missing[0]!r} means a missing value; "
                "name the level differently (e.g. 'absent' instead of 'none')"
            )
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
            value: the raw value (number or text); see :func:`is_missing` for what means "not given".
            where: context appended to messages, e.g. " (case bus_0001)".

        Raises:
            ClinicalValueError: missing, non-numeric, out-of-range or unknown category.
        """
        if is_missing(value):
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
            text = str(value).strip()
            raise ClinicalValueError(f"{self.display} '{text}' is not a number{where}{hint}") from None
        if not math.isfinite(v):
            raise ClinicalValueError(f"{self.display} '{str(value).strip()}' is not a finite number{where}")
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
