"""resample.resize_bilinear against real torch F.interpolate (the code it replaces), and its errors.

The reference is the torch resize that deep_features used before: bilinear, half-pixel centres,
antialiased in both dimensions as soon as either one shrinks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_python_probe
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.inputs.resample import resize_bilinear

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# torch computes the bilinear source index with a fused multiply-add in its AVX2 / AVX-512
# kernels, which resample reproduces; a CPU without them (capability DEFAULT) rounds the index
# differently, by up to ~1e-4 on these images.
ATOL = 1e-5 if torch.backends.cpu.get_cpu_capability() != "DEFAULT" else 5e-4


def _torch_resize(array2d: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The torch code that resize_bilinear replaces, verbatim."""
    if tuple(array2d.shape) == tuple(shape):
        return np.asarray(array2d, dtype=np.float32).copy()
    t = torch.from_numpy(np.ascontiguousarray(array2d, dtype=np.float32))[None, None]
    shrink = shape[0] < array2d.shape[0] or shape[1] < array2d.shape[1]
    with torch.no_grad():
        out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].numpy().astype(np.float32, copy=False)


def _reference(array2d: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """torch's result, taken on the transpose for a one-column output whose row count changes.

    torch 2.14's CPU antialias kernel copies the first output row into every row of an (n, 1)
    output (it resizes columns first, then mishandles the one-column rows pass); the transposed
    call goes through the healthy code path and gives the true values.
    """
    if shape[1] == 1 and shape[0] != array2d.shape[0]:
        return _torch_resize(np.ascontiguousarray(array2d.T), (shape[1], shape[0])).T
    return _torch_resize(array2d, shape)


def _image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A z-scored-like float32 image (values mostly within +-5)."""
    return (np.random.default_rng(seed).standard_normal(shape) * 1.5 + 0.5).astype(np.float32)


CASES = {
    "shrink-both": ((480, 560), (96, 96)),
    "shrink-both-odd": ((97, 131), (32, 45)),
    "shrink-large": ((700, 650), (32, 40)),
    "enlarge-both": ((96, 96), (300, 250)),
    "enlarge-tiny": ((7, 9), (100, 64)),
    "shrink-rows-enlarge-cols": ((200, 50), (64, 120)),
    "enlarge-rows-shrink-cols": ((40, 300), (123, 77)),
    "rows-equal-cols-shrink": ((64, 80), (64, 40)),
    "rows-equal-cols-enlarge": ((64, 80), (64, 200)),
    "rows-enlarge-cols-equal": ((50, 33), (201, 33)),
    "non-integer-ratios": ((113, 127), (96, 96)),
    "barely-smaller": ((254, 300), (253, 299)),
    "barely-larger": ((142, 57), (159, 257)),
    "factor-2-shrink": ((64, 64), (32, 32)),
    "factor-2-enlarge": ((32, 32), (64, 64)),
    "1x1-to-nxm": ((1, 1), (5, 7)),
    "1-row-to-n-rows": ((1, 10), (4, 10)),
    "1-col-to-n-cols": ((10, 1), (10, 6)),
    "n-to-1x1": ((10, 7), (1, 1)),
    "n-to-1-row": ((33, 20), (1, 20)),
    "n-to-1-col": ((20, 33), (20, 1)),
    "row-vector-shrink": ((1, 19), (1, 3)),
    "column-vector-shrink": ((19, 1), (3, 1)),
    "to-one-column-rows-enlarge": ((6, 40), (30, 1)),
}


@pytest.mark.parametrize(("in_shape", "out_shape"), list(CASES.values()), ids=list(CASES))
def test_matches_torch(in_shape, out_shape):
    image = _image(in_shape)
    out = resize_bilinear(image, out_shape)
    assert out.shape == out_shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(image, out_shape), rtol=0, atol=ATOL)


def test_matches_torch_on_random_shapes():
    rng = np.random.default_rng(20240611)
    worst = 0.0
    for trial in range(120):
        in_shape = tuple(int(v) for v in rng.integers(1, 160, size=2))
        out_shape = tuple(int(v) for v in rng.integers(1, 160, size=2))
        image = _image(in_shape, seed=trial)
        diff = np.abs(resize_bilinear(image, out_shape) - _reference(image, out_shape))
        worst = max(worst, float(diff.max()))
        assert worst <= ATOL, f"{in_shape} -> {out_shape}: max difference {worst:.3g}"


def test_one_column_output_keeps_each_row():
    # torch's own (n, 1) result would repeat the first row. Rows 0, 3, ..., 33 shrink 2-fold:
    # taps (1, 3, 3, 1) / 8 inside, cut to (3, 3, 1) / 7 and (1, 3, 3) / 7 at the two edges.
    image = np.repeat(np.arange(12, dtype=np.float32)[:, None] * 3.0, 5, axis=1)
    out = resize_bilinear(image, (6, 1))
    expected = [15 / 7, 7.5, 13.5, 19.5, 25.5, 216 / 7]
    np.testing.assert_allclose(out[:, 0], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out, _reference(image, (6, 1)), rtol=0, atol=ATOL)


def test_factor_2_shrink_uses_the_4_tap_triangle():
    # scale 2: support 2, taps at distances 1.5, 0.5, 0.5, 1.5 -> (1, 3, 3, 1) / 8, cut at the edges.
    row = np.array([[0, 8, 16, 0, 40, 8, 0, 24]], dtype=np.float32)
    out = resize_bilinear(row, (1, 4))
    expected = [
        (3 * 0 + 3 * 8 + 1 * 16) / 7,
        (1 * 8 + 3 * 16 + 3 * 0 + 1 * 40) / 8,
        (1 * 0 + 3 * 40 + 3 * 8 + 1 * 0) / 8,
        (1 * 8 + 3 * 0 + 3 * 24) / 7,
    ]
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_factor_2_enlarge_is_plain_bilinear():
    # Half-pixel centres: outputs sit at +-0.25 around each input pixel, clamped at the borders.
    col = np.array([[0.0], [4.0], [12.0]], dtype=np.float32)
    out = resize_bilinear(col, (6, 1))
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 3.0, 6.0, 10.0, 12.0], rtol=1e-6)


@pytest.mark.parametrize("out_shape", [(32, 32), (300, 250), (20, 400), (1, 1), (64, 1)])
def test_constant_image_stays_constant(out_shape):
    image = np.full((90, 120), 3.7, dtype=np.float32)
    out = resize_bilinear(image, out_shape)
    np.testing.assert_allclose(out, 3.7, rtol=1e-6)


def test_equal_shape_returns_a_float32_copy():
    image = _image((40, 50))
    out = resize_bilinear(image, (40, 50))
    assert out is not image
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(out, image)  # an unchanged shape is a plain copy: exact
    out[0, 0] += 1.0
    assert out[0, 0] != image[0, 0]

    wide = image.astype(np.float64) + 1e-9  # rounded to float32 like the torch path
    same = resize_bilinear(wide, (40, 50))
    assert same.dtype == np.float32
    np.testing.assert_array_equal(same, wide.astype(np.float32))  # one IEEE cast, no arithmetic: exact


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64, bool])
def test_any_real_dtype_gives_float32(dtype):
    image = (np.random.default_rng(3).integers(0, 200, size=(30, 40))).astype(dtype)
    out = resize_bilinear(image, (12, 50))
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, _reference(image.astype(np.float32), (12, 50)), rtol=1e-6, atol=1e-4)


def test_non_contiguous_input_gives_the_same_result():
    base = _image((120, 90))
    view = base[::2, ::-1].T  # (45, 60), neither C- nor F-contiguous
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    # Same values, other memory layout: the float64 band products may take another BLAS path (and
    # summation order), so the float32 results may differ by one final rounding: 1 float32 ulp
    # (rtol 2**-23), plus atol 1e-12 for an output that cancels to about zero.
    np.testing.assert_allclose(
        resize_bilinear(view, (20, 70)), resize_bilinear(view.copy(), (20, 70)), rtol=2**-23, atol=1e-12
    )


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(10, dtype=np.float32), "2D"),
        (np.zeros((4, 5, 3), dtype=np.float32), "2D"),
        (np.float32(1.0), "2D"),
        (np.zeros((0, 5), dtype=np.float32), "non-empty"),
        (np.zeros((5, 0), dtype=np.float32), "non-empty"),
        (np.array([[1.0, np.nan], [0.0, 2.0]]), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 2.0]]), "NaN or infinite"),
        (np.array([["a", "b"], ["c", "d"]]), "non-numeric"),
    ],
    ids=["1d", "3d", "0d", "no-rows", "no-columns", "nan", "inf", "strings"],
)
def test_rejects_bad_arrays(array, message):
    with pytest.raises(InputError, match=message):
        resize_bilinear(array, (8, 8))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((0, 5), "positive"),
        ((5, 0), "positive"),
        ((-3, 5), "positive"),
        ((True, 5), "positive"),
        ((9.5, 4), "integers"),
        ((9.0, 4), "integers"),
        (("9", 4), "integers"),
        ((5,), r"\(rows, columns\)"),
        ((2, 3, 4), r"\(rows, columns\)"),
        (5, r"\(rows, columns\)"),
        (None, r"\(rows, columns\)"),
    ],
)
def test_rejects_bad_target_shapes(shape, message):
    with pytest.raises(InputError, match=message):
        resize_bilinear(np.ones((6, 6), dtype=np.float32), shape)


def test_numpy_integer_target_sizes_are_accepted():
    out = resize_bilinear(_image((10, 10)), (np.int64(4), np.int32(7)))
    assert out.shape == (4, 7)


def test_import_and_use_need_neither_torch_nor_scipy():
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from DLRPredictorLib.inputs.resample import resize_bilinear\n"
        "resize_bilinear(np.ones((50, 60)), (20, 90))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy'))))\n"
    )
    loaded = run_python_probe(code, timeout=60)
    assert loaded == [], json.dumps(loaded)
