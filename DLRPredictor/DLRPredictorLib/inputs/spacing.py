"""The pixel-size rule: one check for every way a spacing is given (cohort CSV cell, API argument)."""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import InputError


def parse_spacing_mm(raw: object, where: str, error: type[InputError] = InputError) -> float:
    """A pixel size in millimetres: a finite positive number, or text of one.

    Args:
        raw: the value as given: a number, or text with a dot as decimal separator (a CSV cell).
        where: what gave it, starting the message (e.g. "manifest 'c.csv' row 3").
        error: the InputError subclass to raise (a cohort CSV raises ManifestError).

    Returns:
        The size in mm.

    Raises:
        InputError: (of class ``error``) anything else: zero, negative, NaN, infinite, a
            yes/no value, text that is no number (e.g. a decimal comma), None, a list.
    """
    value = math.nan
    if not isinstance(raw, (bool, np.bool_)):  # float(True) would be a 1 mm pixel
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    if not (math.isfinite(value) and value > 0):
        raise error(
            f"{where}: spacing_mm '{raw}' is not a positive number of millimetres "
            f"(use a dot as decimal separator, e.g. 0.08)"
        )
    return value
