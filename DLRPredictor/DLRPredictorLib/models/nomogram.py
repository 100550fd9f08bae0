"""The classic nomogram of a logistic model: points per predictor, total points, probability.

Construction (as R rms::nomogram): each predictor's contribution to the linear predictor (LP) is
shifted so that its smallest value over the predictor's range is 0; the predictor with the
largest effect range (max - min contribution) spans 0..``points_max`` points, and every other
predictor uses the same points-per-LP-unit scale. Total points T map back to
LP = intercept + sum(min contributions) + T / scale, and probability = expit(LP). Values outside
an axis range are extrapolated linearly, so the nomogram always equals the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import ClinicalValueError, ConfigError
from ..base.numeric import expit, logit
from .clinical_variables import ClinicalVariable, normalize_category
from .combined import CombinedModel

if TYPE_CHECKING:
    import pandas as pd

PROBABILITY_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class NomogramAxis:
    """One predictor axis.

    Attributes:
        name: key of the predictor in ``Nomogram.points`` values.
        label: display text.
        kind: "numeric" or "categorical".
        coef: LP per unit (numeric).
        low, high: numeric range drawn on the axis.
        levels: categorical levels, in display order.
        level_lp: LP contribution of each level.
    """

    name: str
    label: str
    kind: str
    coef: float = 0.0
    low: float = 0.0
    high: float = 0.0
    levels: tuple[str, ...] = ()
    level_lp: tuple[float, ...] = ()

    def lp(self, value: Any) -> float:
        """Contribution of a value to the linear predictor.

        Raises:
            ClinicalValueError: a non-numeric value on a numeric axis or an unknown level.
        """
        if self.kind == "numeric":
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ClinicalValueError(f"{self.label} '{value}' is not a number") from None
            if not math.isfinite(v):
                raise ClinicalValueError(f"{self.label} '{value}' is not a finite number")
            return self.coef * v
        keys = [normalize_category(lv) for lv in self.levels]
        key = normalize_category(value)
        if key not in keys:
            raise ClinicalValueError(f"{self.label} '{value}' is not one of {', '.join(self.levels)}")
        return self.level_lp[keys.index(key)]

    @property
    def lp_min(self) -> float:
        """Smallest contribution over the axis range."""
        if self.kind == "numeric":
            return min(self.coef * self.low, self.coef * self.high)
        return min(self.level_lp)

    @property
    def effect_range(self) -> float:
        """Largest minus smallest contribution over the axis range."""
        if self.kind == "numeric":
            return abs(self.coef) * (self.high - self.low)
        return max(self.level_lp) - min(self.level_lp)

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "coef": self.coef,
            "low": self.low,
            "high": self.high,
            "levels": list(self.levels),
            "level_lp": list(self.level_lp),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> NomogramAxis:
        """Axis from :meth:`to_spec` output."""
        return cls(
            name=str(spec["name"]),
            label=str(spec["label"]),
            kind=str(spec["kind"]),
            coef=float(spec["coef"]),
            low=float(spec["low"]),
            high=float(spec["high"]),
            levels=tuple(str(v) for v in spec["levels"]),
            level_lp=tuple(float(v) for v in spec["level_lp"]),
        )


class Nomogram:
    """Points-based rendering of a logistic model."""

    def __init__(self, axes: Sequence[NomogramAxis], intercept: float, points_max: float = 100.0) -> None:
        """Args:
        axes: predictor axes, in display order.
        intercept: model intercept (LP scale).
        points_max: points of the predictor with the largest effect range.

        Raises:
            ConfigError: no axes, an invalid axis, or all predictors without effect.
        """
        if not axes:
            raise ConfigError("a nomogram needs at least one predictor")
        for ax in axes:
            if ax.kind not in ("numeric", "categorical"):
                raise ConfigError(f"nomogram axis '{ax.name}' has unknown kind {ax.kind!r}")
            if ax.kind == "numeric" and not ax.high > ax.low:
                raise ConfigError(f"nomogram axis '{ax.name}' needs a range with high > low")
            if ax.kind == "categorical" and (not ax.levels or len(ax.levels) != len(ax.level_lp)):
                raise ConfigError(f"nomogram axis '{ax.name}' needs one LP value per level")
        self.axes = list(axes)
        self.intercept = float(intercept)
        self.points_max = float(points_max)
        largest = max(ax.effect_range for ax in self.axes)
        if not largest > 0:
            raise ConfigError("every predictor of the nomogram has zero effect; nothing to draw")
        self.scale = self.points_max / largest  # points per LP unit
        self.lp_offset = self.intercept + sum(ax.lp_min for ax in self.axes)

    @classmethod
    def from_logistic(
        cls,
        coefs: Sequence[float],
        intercept: float,
        ranges: Mapping[str, Any],
        names: Sequence[str],
        *,
        points_max: float = 100.0,
        labels: Mapping[str, str] | None = None,
        onehot: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> Nomogram:
        """The standard nomogram of a fitted logistic regression.

        Args:
            coefs: one coefficient per name.
            intercept: model intercept.
            ranges: per predictor name, ``(low, high)`` for a numeric predictor, or
                ``{level: encoded value}`` for an ordinally encoded categorical one.
            names: predictor (design column) names.
            points_max: points of the largest-effect predictor.
            labels: display text per axis name.
            onehot: one-hot groups: axis name -> {level: design column name, or None for the
                reference level}; those columns need no entry in ``ranges``.

        Returns:
            The nomogram.

        Raises:
            ConfigError: a predictor without range, or lengths that differ.
        """
        if len(coefs) != len(names):
            raise ConfigError(f"{len(coefs)} coefficients for {len(names)} predictor names")
        coef = {str(n): float(c) for n, c in zip_strict(names, coefs)}
        labels = dict(labels or {})
        onehot = {k: dict(v) for k, v in (onehot or {}).items()}
        group_of = {col: g for g, lv in onehot.items() for col in lv.values() if col is not None}
        axes: list[NomogramAxis] = []
        done: set[str] = set()
        for name in map(str, names):
            if name in group_of:
                group = group_of[name]
                if group in done:
                    continue
                levels = tuple(onehot[group])
                lps = tuple(0.0 if col is None else coef[col] for col in onehot[group].values())
                axes.append(
                    NomogramAxis(group, labels.get(group, group), "categorical", levels=levels, level_lp=lps)
                )
                done.add(group)
                continue
            if name not in ranges:
                raise ConfigError(f"nomogram predictor '{name}' has no range or levels; give them in ranges")
            rng = ranges[name]
            label = labels.get(name, name)
            if isinstance(rng, Mapping):
                levels = tuple(str(k) for k in rng)
                lps = tuple(coef[name] * float(v) for v in rng.values())
                axes.append(NomogramAxis(name, label, "categorical", levels=levels, level_lp=lps))
            else:
                low, high = (float(v) for v in rng)
                axes.append(NomogramAxis(name, label, "numeric", coef=coef[name], low=low, high=high))
        return cls(axes, intercept, points_max)

    @classmethod
    def from_combined(
        cls,
        model: CombinedModel,
        variables: Sequence[ClinicalVariable],
        score_range: tuple[float, float] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        points_max: float = 100.0,
    ) -> Nomogram:
        """The nomogram of a :class:`CombinedModel` over its clinical variables.

        The score axis is on the logit scale (the model's score term), keyed ``model.score_name``.

        Args:
            model: fitted combined model.
            variables: the clinical variables the model's columns were encoded from.
            score_range: (low, high) of the score logit, e.g. its training range.
            ranges: numeric ranges per variable name, overriding the variables' min/max.
            points_max: points of the largest-effect predictor.

        Raises:
            ConfigError: a model column not produced by the variables, or a missing range.
        """
        names: list[str] = []
        coefs: list[float] = []
        rng: dict[str, Any] = {}
        labels: dict[str, str] = {}
        onehot: dict[str, dict[str, str | None]] = {}
        model_coef = dict(zip_strict(model.names, model.coefs.tolist()))
        if model.score_name is not None:
            if score_range is None:
                raise ConfigError("the nomogram of a model with a score needs score_range (logit scale)")
            names.append(model.score_name)
            coefs.append(model.coef_score)
            rng[model.score_name] = score_range
        covered: set[str] = set()
        for var in variables:
            cols = [c for c in var.encoded_names() if c in model_coef]
            if not cols:
                continue
            covered.update(cols)
            labels[var.name] = var.display
            if var.type == "numeric":
                span = (ranges or {}).get(var.name, (var.minimum, var.maximum))
                if span[0] is None or span[1] is None:
                    raise ConfigError(f"give a range for '{var.name}' (it has no minimum/maximum)")
                rng[var.name] = span
            elif var.encoding == "ordinal":
                rng[var.name] = {lv: var.level_value(lv) for lv in var.allowed}
            else:
                ref = normalize_category(var.reference_level)
                onehot[var.name] = {
                    lv: (None if normalize_category(lv) == ref or f"{var.name}={lv}" not in model_coef
                         else f"{var.name}={lv}")
                    for lv in var.allowed
                }  # fmt: skip
            names.extend(cols)
            coefs.extend(model_coef[c] for c in cols)
        missing = [n for n in model.names if n not in covered]
        if missing:
            raise ConfigError(f"combined model column(s) {missing} are not encodings of the given variables")
        return cls.from_logistic(
            coefs, model.intercept, rng, names, points_max=points_max, labels=labels, onehot=onehot
        )

    def points(self, values: Mapping[str, Any]) -> dict[str, float]:
        """Points of each predictor for one case.

        Args:
            values: axis name -> value (number, or level for categorical axes).

        Raises:
            ClinicalValueError: a missing predictor or an invalid value.
        """
        missing = [ax.name for ax in self.axes if ax.name not in values]
        if missing:
            raise ClinicalValueError(f"nomogram needs a value for {', '.join(missing)}")
        return {ax.name: (ax.lp(values[ax.name]) - ax.lp_min) * self.scale for ax in self.axes}

    def total_points(self, values: Mapping[str, Any]) -> float:
        """Sum of the predictors' points for one case."""
        return float(sum(self.points(values).values()))

    def linear_predictor_from_total(self, total: float) -> float:
        """LP (logit) corresponding to total points."""
        return self.lp_offset + float(total) / self.scale

    def probability_from_total(self, total: float) -> float:
        """Probability corresponding to total points."""
        return float(expit(self.linear_predictor_from_total(total)))

    def total_from_probability(self, probability: float) -> float:
        """Total points corresponding to a probability in (0, 1)."""
        return (float(logit(probability)) - self.lp_offset) * self.scale

    def probability(self, values: Mapping[str, Any]) -> float:
        """Probability of one case through the points (equals the model's probability)."""
        return self.probability_from_total(self.total_points(values))

    @property
    def max_total(self) -> float:
        """Largest reachable total points over the axis ranges."""
        return float(sum(ax.effect_range for ax in self.axes) * self.scale)

    def _ticks(self, ax: NomogramAxis) -> list[Any]:
        if ax.kind == "categorical":
            return list(ax.levels)
        from matplotlib.ticker import MaxNLocator

        ticks = [t for t in MaxNLocator(nbins=6).tick_values(ax.low, ax.high) if ax.low <= t <= ax.high]
        return [float(t) for t in ticks] or [ax.low, ax.high]

    def _probability_ticks(self) -> list[float]:
        return [p for p in PROBABILITY_TICKS if 0.0 <= self.total_from_probability(p) <= self.max_total]

    def table(self) -> pd.DataFrame:
        """Value -> points for every axis, then total points -> probability.

        Returns:
            Long DataFrame with columns axis, value, points; rows of axis "Probability" give the
            probability as value and the total points reaching it as points.
        """
        import pandas as pd  # only tables and figures need pandas; scoring a case does not

        rows: list[dict[str, Any]] = []
        for ax in self.axes:
            for t in self._ticks(ax):
                rows.append({"axis": ax.label, "value": t, "points": (ax.lp(t) - ax.lp_min) * self.scale})
        for p in self._probability_ticks():
            rows.append({"axis": "Probability", "value": p, "points": self.total_from_probability(p)})
        return pd.DataFrame(rows, columns=["axis", "value", "points"])

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Draw the classic nomogram figure (PNG, matplotlib Agg) and save it.

        Rows: Points (0..points_max), one per predictor, Total points, Probability.

        Returns:
            The written path.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        rows = len(self.axes) + 3
        fig = Figure(figsize=(9, 0.75 * rows + 0.8))
        FigureCanvasAgg(fig)
        axp = fig.add_axes((0.22, 0.04, 0.74, 0.88 if title else 0.92))
        axp.set_xlim(-0.03, 1.03)
        axp.set_ylim(-0.7, rows - 0.3)
        axp.axis("off")

        def draw(
            y: float, label: str, xs: Sequence[float], texts: Sequence[str], span: Sequence[float] = ()
        ) -> None:
            axp.text(-0.05, y, label, ha="right", va="center", fontsize=9, fontweight="bold")
            ends = [*xs, *span]
            if ends:
                axp.plot([min(ends), max(ends)], [y, y], color="black", lw=1)
            last_x, last_below = -1.0, True
            for x, t in sorted(zip_strict(xs, texts)):
                axp.plot([x, x], [y, y + 0.12], color="black", lw=1)
                # Labels closer than ~4% of the width alternate below the line so they stay legible.
                below = x - last_x < 0.04 and not last_below
                axp.text(x, y - 0.1 if below else y + 0.17, t, ha="center",
                         va="top" if below else "bottom", fontsize=7)  # fmt: skip
                last_x, last_below = x, below

        y = rows - 1
        pts = np.linspace(0, self.points_max, 11)
        draw(y, "Points", list(pts / self.points_max), [f"{p:g}" for p in pts])
        for ax in self.axes:
            y -= 1
            ticks = self._ticks(ax)
            xs = [(ax.lp(t) - ax.lp_min) * self.scale / self.points_max for t in ticks]
            span = [] if ax.kind == "categorical" else [0.0, ax.effect_range * self.scale / self.points_max]
            draw(y, ax.label, xs, [t if isinstance(t, str) else f"{t:g}" for t in ticks], span)
        y -= 1
        total_ticks = [
            t for t in MaxNLocator(nbins=8).tick_values(0, self.max_total) if 0 <= t <= self.max_total
        ]
        draw(y, "Total points", [t / self.max_total for t in total_ticks], [f"{t:g}" for t in total_ticks])
        y -= 1
        probs = self._probability_ticks()
        draw(y, "Probability", [self.total_from_probability(p) / self.max_total for p in probs],
             [f"{p:g}" for p in probs])  # fmt: skip
        if title:
            fig.suptitle(title, fontsize=11)
        out = Path(path)
        fig.savefig(out, dpi=150)
        return out

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict (axes, intercept, points_max)."""
        return {
            "kind": "Nomogram",
            "intercept": self.intercept,
            "points_max": self.points_max,
            "axes": [ax.to_spec() for ax in self.axes],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Nomogram:
        """Rebuild from :meth:`to_spec` output.

        Raises:
            ConfigError: not a nomogram spec.
        """
        if spec.get("kind") != "Nomogram":
            raise ConfigError(f"not a nomogram spec (kind={spec.get('kind')!r})")
        axes = [NomogramAxis.from_spec(a) for a in spec["axes"]]
        return cls(axes, float(spec["intercept"]), float(spec["points_max"]))
