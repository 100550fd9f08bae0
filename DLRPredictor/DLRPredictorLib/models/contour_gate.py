"""A fusion that knows the outline it is given: the contour-regime gate of the DLR score.

A Rad signature fitted on expert outlines reads shape and margin: an irregular, spiculated or
lobulated margin is malignant evidence. A smooth, ellipse-like outline (a quick sketch, an
ellipse tool, a moment-matched ellipse) is convex and regular whatever the lesion, so the same
features read it as benign evidence they do not hold, while the deep signature, which reads the
image content of the crop, keeps most of its accuracy. The gate therefore measures how much
detail the outline carries beyond its moment-matched ellipse and hands the DLR score from the
fusion to the deep signature alone as that detail vanishes.

- ``outline_detail``: perimeter over the perimeter (Ramanujan) of the ellipse with the lesion's
  second-moment axes, minus 1, from PyRadiomics' shape2D columns (unit-free; pixel and mm
  extractions agree). A rasterised ellipse gives about 0.05 (its staircase), an expert outline of
  BUS-BRA a median 0.10.
- weight ``w = clip((detail - low) / (high - low), 0, 1)``; ``low`` and ``high`` come from the
  training rows: the 99th percentile over the moment-matched ellipses and the 5th percentile over
  the exact outlines (:func:`gate_thresholds`).
- ``logit p = w * logit p_fusion + (1 - w) * logit p_fallback`` (the fallback is the DL member).

Applying it needs numpy alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base.errors import ConfigError
from ..base.numeric import expit
from .classifiers import check_named, proba_to_logit
from .selection import as_matrix

SHAPE_PREFIX = "original_shape2D_"
GATE_FEATURES = ("Perimeter", "MajorAxisLength", "MinorAxisLength")
GATE_COLUMNS = tuple(SHAPE_PREFIX + f for f in GATE_FEATURES)
LOW_PERCENTILE = 99.0  # of the ellipse rows' detail: above it, an outline is not an ellipse
HIGH_PERCENTILE = 5.0  # of the exact rows' detail: from it on, the fusion answers alone


def ellipse_perimeter(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Ramanujan's perimeter of ellipses with these full axis lengths (relative error below 1e-4
    down to an axis ratio of 0.3, 1e-3 at 0.1; the same formula scores the training outlines, so
    its bias moves the gate's thresholds with it)."""
    a, b = np.asarray(major, dtype=float) / 2.0, np.asarray(minor, dtype=float) / 2.0
    return np.pi * (3.0 * (a + b) - np.sqrt((3.0 * a + b) * (a + 3.0 * b)))


def outline_detail(perimeter: np.ndarray, major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """How much longer the outline is than its moment-matched ellipse's (0 for a smooth ellipse)."""
    return np.asarray(perimeter, dtype=float) / ellipse_perimeter(major, minor) - 1.0


def gate_thresholds(detail_ellipse: np.ndarray, detail_exact: np.ndarray) -> tuple[float, float]:
    """``(low, high)`` of the gate from the training rows' outline detail.

    Raises:
        ConfigError: no rows of one kind, or exact outlines no more detailed than the ellipses
            (the two regimes cannot be told apart: the gate would be arbitrary).
    """
    ell = np.asarray(detail_ellipse, dtype=float)
    ex = np.asarray(detail_exact, dtype=float)
    if ell.size == 0 or ex.size == 0:
        raise ConfigError("the contour gate needs training rows with both the exact and the ellipse outline")
    low = float(np.percentile(ell, LOW_PERCENTILE))
    high = float(np.percentile(ex, HIGH_PERCENTILE))
    if not high > low:
        raise ConfigError(
            f"the contour gate cannot tell the outlines apart: the 5th percentile of the exact outlines' "
            f"detail ({high:.3f}) is not above the 99th percentile of the ellipses' ({low:.3f}); "
            "set model.contour_gate to false"
        )
    return low, high


class ContourGatedFusion:
    """A late fusion whose answer moves to one member (the fallback) on detail-less outlines.

    Args:
        fusion: the fitted StackingFusion or EnsembleFusion.
        fallback: index of the member that answers alone on an ellipse-like outline (DL).
        low: outline detail at and below which the fallback answers alone.
        high: outline detail at and above which the fusion answers alone.

    Raises:
        ConfigError: ``fallback`` is not a member index, or ``high <= low``.
    """

    KIND = "ContourGate"

    def __init__(self, fusion: Any, *, fallback: int, low: float, high: float) -> None:
        if not 0 <= fallback < len(fusion.members):
            raise ConfigError(f"contour gate fallback {fallback} is not a member of '{fusion.name}'")
        if not float(high) > float(low):
            raise ConfigError(f"contour gate needs high > low, got low={low}, high={high}")
        self.fusion = fusion
        self.fallback = int(fallback)
        self.low = float(low)
        self.high = float(high)

    @property
    def members(self) -> list[Any]:
        """The fusion's member signatures."""
        return list(self.fusion.members)

    @property
    def name(self) -> str:
        """The fusion's display name."""
        return str(self.fusion.name)

    @property
    def fallback_name(self) -> str:
        """Display name of the member that answers on detail-less outlines."""
        return str(self.fusion.members[self.fallback].name)

    def detail(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Outline detail of each row, from its shape2D columns."""
        M = as_matrix(X, feature_names, list(GATE_COLUMNS))
        return outline_detail(M[:, 0], M[:, 1], M[:, 2])

    def weight(self, detail: np.ndarray) -> np.ndarray:
        """Weight of the fusion (against the fallback member) at these outline details."""
        return np.clip((np.asarray(detail, dtype=float) - self.low) / (self.high - self.low), 0.0, 1.0)

    def combine(self, P: np.ndarray, detail: np.ndarray) -> np.ndarray:
        """Gated probability from member probabilities ``P`` (cases x members) and outline detail."""
        P = np.asarray(P, dtype=float)
        w = self.weight(detail)
        fused = proba_to_logit(self.fusion.combine(P))
        alone = proba_to_logit(P[:, self.fallback])
        return expit(w * fused + (1.0 - w) * alone)

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """The gated DLR probability of each row (members and shape2D columns read from ``X``)."""
        check_named(X, feature_names)
        P = np.column_stack([m.predict_proba(X, feature_names) for m in self.fusion.members])
        return self.combine(P, self.detail(X, feature_names))

    def gate_spec(self) -> dict[str, Any]:
        """The gate's settings (the fusion's spec is stored beside it)."""
        return {
            "kind": self.KIND,
            "columns": list(GATE_COLUMNS),
            "fallback": self.fallback,
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], fusion: Any) -> ContourGatedFusion:
        """Rebuild around the fitted ``fusion``.

        Raises:
            ConfigError: not a gate spec, or one on other columns than this version computes.
        """
        if spec.get("kind") != cls.KIND:
            raise ConfigError(f"not a contour gate spec (kind={spec.get('kind')!r})")
        if list(spec.get("columns", [])) != list(GATE_COLUMNS):
            raise ConfigError(
                f"contour gate on columns {spec.get('columns')}; this version reads {list(GATE_COLUMNS)}"
            )
        return cls(fusion, fallback=int(spec["fallback"]), low=float(spec["low"]), high=float(spec["high"]))
