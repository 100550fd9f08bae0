"""base.json_values.to_json_value: the one conversion to plain JSON values, with each caller's options."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.json_values import to_json_value


@dataclasses.dataclass
class Point:
    x: float
    tags: tuple[str, ...] = ()


def test_plain_values_are_returned_as_they_are() -> None:
    value = {"a": [1, 2.5, "x", None, True, False], "b": {"c": []}}
    # Exact: to_json_value changes types, not values (also below).
    assert to_json_value(value) == value
    assert to_json_value(value) is not value  # a new object: the input is never changed


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [
        (np.float64(0.25), 0.25, float),
        (np.float32(0.25), 0.25, float),
        (np.int64(12), 12, int),
        (np.uint8(7), 7, int),
        (np.bool_(True), True, bool),
        (np.str_("abc"), "abc", str),
    ],
)
def test_numpy_scalars_become_python(value: object, expected: object, kind: type) -> None:
    out = to_json_value(value)
    assert out == expected
    assert type(out) is kind


def test_bools_stay_bools_and_int_subclasses_become_int() -> None:
    assert to_json_value([True, np.bool_(False)]) == [True, False]
    assert all(type(v) is bool for v in to_json_value([True, np.bool_(False)]))

    class Count(int):
        pass

    assert type(to_json_value(Count(3))) is int


@pytest.mark.parametrize(
    ("non_finite", "expected"),
    [("null", [None, None, None, 1.0]), ("string", ["nan", "inf", "-inf", 1.0])],
)
def test_non_finite_floats(non_finite: str, expected: list) -> None:
    values = [float("nan"), np.inf, -np.float32("inf"), 1.0]
    assert to_json_value(values, non_finite=non_finite) == expected


def test_non_finite_keep_and_error() -> None:
    kept = to_json_value({"a": [np.nan, np.float64("inf")]}, non_finite="keep")
    assert math.isnan(kept["a"][0]) and kept["a"][1] == math.inf
    assert type(kept["a"][1]) is float
    with pytest.raises(ValueError, match="not a finite number"):
        to_json_value({"auc": {"ci": [0.5, float("nan")]}}, non_finite="error")
    with pytest.raises(ValueError, match="non_finite must be one of"):
        to_json_value(1.0, non_finite="zero")


def test_numpy_arrays_become_nested_lists() -> None:
    out = to_json_value({"m": np.array([[1, 2], [3, 4]], dtype=np.int32), "v": np.array([0.5, np.nan])})
    assert out == {"m": [[1, 2], [3, 4]], "v": [0.5, None]}
    assert type(out["m"][0][0]) is int


def test_tuples_sets_and_keys() -> None:
    assert to_json_value((1, (2, 3))) == [1, [2, 3]]
    assert to_json_value({"b", "a", "c"}) == ["a", "b", "c"]  # sorted: independent of hashing
    assert sorted(to_json_value(frozenset({1, "a"})), key=str) == [1, "a"]  # unsortable: kept
    assert to_json_value({1: "x", np.int64(2): "y"}) == {"1": "x", "2": "y"}


def test_paths_become_posix_strings() -> None:
    assert to_json_value(Path("models") / "cnn.safetensors") == "models/cnn.safetensors"
    assert to_json_value(PurePosixPath("/data/a.png")) == "/data/a.png"
    assert to_json_value(PureWindowsPath(r"C:\data\a.png")) == "C:/data/a.png"


def test_dataclasses_become_dicts() -> None:
    # Exact: 1.5 is exactly representable in float32.
    assert to_json_value(Point(np.float32(1.5), ("a", "b"))) == {"x": 1.5, "tags": ["a", "b"]}
    with pytest.raises(TypeError, match="type is not JSON-serialisable"):
        to_json_value(Point)  # the class itself is not data


def test_pandas_objects() -> None:
    df = pd.DataFrame({"threshold": [0.1, 0.2], "tp": np.array([3, 2], dtype=np.int64), "nb": [0.5, np.nan]})
    out = to_json_value({"dc": df, "col": df["tp"], "na": pd.NA})
    assert out == {
        "dc": [{"threshold": 0.1, "tp": 3, "nb": 0.5}, {"threshold": 0.2, "tp": 2, "nb": None}],
        "col": [3, 2],
        "na": None,
    }
    json.dumps(out, allow_nan=False)  # strict JSON


def test_nested_mixture_is_strict_json() -> None:
    value = {
        "scores": {"DLR": {"auc": np.float64(0.9), "ci": (np.float64(0.8), np.inf), "n": np.int64(40)}},
        "delong": [{"p": np.float32(0.01), "z": -np.inf}],
        "files": [Path("a.json")],
        "flags": np.array([True, False]),
    }
    out = to_json_value(value)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == {
        "scores": {"DLR": {"auc": 0.9, "ci": [0.8, None], "n": 40}},
        "delong": [{"p": float(np.float32(0.01)), "z": None}],
        "files": ["a.json"],
        "flags": [True, False],
    }


def test_unknown_objects_are_refused_with_their_type() -> None:
    with pytest.raises(TypeError, match="object is not JSON-serialisable"):
        to_json_value({"a": [1, object()]})
    with pytest.raises(TypeError, match="function is not JSON-serialisable"):
        to_json_value(lambda: 0)
    with pytest.raises(TypeError, match="complex is not JSON-serialisable"):
        to_json_value(1j)


def test_basic_types_only_refuses_richer_objects() -> None:
    # Estimator hyper-parameters: an array, set, path, dataclass or table has no JSON form there.
    assert to_json_value({"C": np.float64(1.0), "w": {"0": 1, "1": 2.5}}, basic_types_only=True) == {
        "C": 1.0,
        "w": {"0": 1, "1": 2.5},
    }
    assert to_json_value((1, [np.int8(2)]), basic_types_only=True) == [1, [2]]
    for value in (np.zeros(2), {1, 2}, Path("x"), Point(1.0), pd.DataFrame({"a": [1]}), pd.NA):
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            to_json_value([value], basic_types_only=True)


def test_pandas_is_not_imported() -> None:
    # The predict path must not load pandas: the conversion looks for it only in sys.modules.
    code = (
        "import sys, numpy as np\n"
        "from DLRPredictorLib.base.json_values import to_json_value\n"
        "assert to_json_value({'a': np.arange(3), 'b': (np.nan,)}) == {'a': [0, 1, 2], 'b': [None]}\n"
        "try:\n"
        "    to_json_value(object())\n"
        "except TypeError:\n"
        "    pass\n"
        "print('pandas' in sys.modules)\n"
    )
    lib = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=lib, timeout=120, check=True
    )
    assert run.stdout.strip() == "False"
