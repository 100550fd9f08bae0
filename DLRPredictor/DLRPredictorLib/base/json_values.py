"""Plain JSON values (dict, list, str, int, float, bool, None) from numpy, pandas and Python objects.

One converter for everything the package writes as JSON: reports, bundle manifests, training
metrics, estimator hyper-parameters. Callers differ only in what a non-finite float becomes and in
which types they accept, so those are the options. numpy is the only import: pandas objects are
recognised only when pandas is already loaded (``sys.modules``), because the predict path must
never import pandas, and an object of a module that is not loaded cannot be there anyway.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

NON_FINITE = ("null", "string", "error", "keep")


def to_json_value(obj: Any, *, non_finite: str = "null", basic_types_only: bool = False) -> Any:
    """``obj`` as plain JSON values, recursively; a new object (``obj`` is not changed).

    Converted: numpy scalars to Python numbers and bools; mappings to dicts with ``str`` keys;
    lists and tuples to lists. Unless ``basic_types_only``: numpy arrays to (nested) lists, sets to
    lists (sorted when their items allow it, so that the output does not depend on hashing),
    paths to POSIX strings, dataclass instances to dicts of their fields, pandas DataFrames to a
    list of row dicts, Series to lists, and ``pd.NA`` to None.

    Args:
        obj: the value to convert.
        non_finite: what NaN and +-infinity become: ``"null"`` (None, for strict JSON),
            ``"string"`` (``"nan"``, ``"inf"``, ``"-inf"``), ``"error"`` (ValueError) or ``"keep"``
            (the float itself, for writers that accept NaN).
        basic_types_only: accept only JSON's own types, numpy scalars, tuples and mappings (what
            an estimator's hyper-parameters may hold); anything else is unknown.

    Returns:
        The JSON value.

    Raises:
        TypeError: an object with no JSON form (the message names its type).
        ValueError: a non-finite float when ``non_finite="error"``; an unknown ``non_finite``.
    """
    if non_finite not in NON_FINITE:
        raise ValueError(f"non_finite must be one of {NON_FINITE}; got {non_finite!r}")
    return _convert(obj, non_finite, basic_types_only)


def _convert(obj: Any, non_finite: str, basic: bool) -> Any:
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _float(float(obj), non_finite)
    if isinstance(obj, Mapping):
        return {str(k): _convert(v, non_finite, basic) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_convert(v, non_finite, basic) for v in obj]
    if not basic:
        if isinstance(obj, np.ndarray):
            return _convert(obj.tolist(), non_finite, basic)
        if isinstance(obj, (set, frozenset)):
            items = [_convert(v, non_finite, basic) for v in obj]
            try:
                return sorted(items)
            except TypeError:  # items of different types: their (hash) order
                return items
        if isinstance(obj, PurePath):
            return obj.as_posix()
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return _convert(dataclasses.asdict(obj), non_finite, basic)
        pd = sys.modules.get("pandas")
        if pd is not None:
            if isinstance(obj, pd.DataFrame):
                return _convert(obj.to_dict(orient="records"), non_finite, basic)
            if isinstance(obj, pd.Series):
                return _convert(obj.tolist(), non_finite, basic)
            if obj is pd.NA:
                return None
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _float(value: float, non_finite: str) -> Any:
    if math.isfinite(value) or non_finite == "keep":
        return value
    if non_finite == "null":
        return None
    if non_finite == "string":
        return str(value)
    raise ValueError(f"{value} is not a finite number, which JSON cannot hold")
