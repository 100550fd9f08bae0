"""2D bilinear resizing in plain numpy, matching ``torch.nn.functional.interpolate`` on the CPU.

Lesion crops and Grad-CAM heatmaps are resized on the prediction path, which must not need torch:
importing it costs about 2 s of cold start. :func:`resize_bilinear` reproduces

    F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=shrink)

with ``shrink`` true when either dimension gets smaller. Antialiasing then applies to both
dimensions (torch's PIL-style triangle filter whose support widens with the shrink factor);
otherwise it is plain bilinear interpolation with half-pixel centres.

Each dimension is a sparse (out, in) weight matrix, stored as its band: ``idx[i, k]`` and
``w[i, k]``, the input index and weight of tap ``k`` of output ``i``. The weights are computed in
float32 in torch's exact operation order (so they equal torch's bit for bit on AVX2 / AVX-512
CPUs): computed in float64 they would differ by up to ~2e-5 at indices in the hundreds, and the
output by up to ~1e-4. They are then applied in float64, which leaves only torch's own float32
accumulation error (below 1e-6 on z-scored images). torch's plain bilinear source index is one
fused multiply-add on those CPUs; its generic kernels (no FMA) round it differently, by up to
~1e-4 in the output, and are not reproduced.
"""

from __future__ import annotations

import operator
from functools import lru_cache

import numpy as np

from ..base.errors import InputError

_F32 = np.float32
# (idx, weights): int64 input indices and weights (float32 values held as float64), (n_out, taps).
_Taps = tuple[np.ndarray, np.ndarray]
# One band tap costs about as much as this many input elements of a dense (out, in) BLAS multiply
# (measured single-threaded): ~40 while the output fits in cache, ~100 once the band's
# gather-multiply-add passes become memory-bound (outputs beyond about 1 MB of float64).
_DENSE_TAP_RATIO_CACHED = 40
_DENSE_TAP_RATIO_STREAMED = 100
_CACHED_ELEMENTS = 1 << 17


def resize_bilinear(array2d: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres, antialiased when either dimension shrinks.

    Same result as torch's ``F.interpolate(..., mode="bilinear", align_corners=False,
    antialias=shrink)`` on the input cast to float32, up to float32 rounding, with one exception:
    for an (n, 1) output whose row count changes (antialiased), torch 2.14's CPU kernel repeats
    the first output row n times; this returns each row's own value (as torch does for the
    transposed (1, n) call).

    Args:
        array2d: Real-valued 2D array (rows, columns), finite, non-empty.
        shape: Target (rows, columns), positive integers.

    Returns:
        A new C-contiguous float32 array of ``shape`` (a copy when the shape is unchanged).

    Raises:
        InputError: Not 2D, empty, non-numeric or non-finite input, or a bad target shape.
    """
    out_shape = _check_shape(shape)
    try:
        arr = np.asarray(array2d, dtype=_F32)  # torch sees the float32 values, so round first
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot resize a non-numeric array: {exc}") from exc
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"can only resize a non-empty 2D array, got shape {arr.shape}")
    # NaN or inf would spread through zero-weight taps in a different pattern than in torch.
    if not np.all(np.isfinite(arr)):
        raise InputError("cannot resize an array with NaN or infinite values")
    if arr.shape == out_shape:
        return np.array(arr, dtype=_F32, order="C", copy=True)

    (n_rows, n_cols), (o_rows, o_cols) = arr.shape, out_shape
    antialias = o_rows < n_rows or o_cols < n_cols
    row_taps = _taps(n_rows, o_rows, antialias)
    col_taps = _taps(n_cols, o_cols, antialias)
    # Both orders give the same float64 result (torch resizes columns first and rounds to float32
    # in between, hence differences below 1e-6); do the cheaper one first.
    rows_first = _cost(row_taps, n_rows, n_cols, 0) + _cost(col_taps, n_cols, o_rows, 1) <= _cost(
        col_taps, n_cols, n_rows, 1
    ) + _cost(row_taps, n_rows, o_cols, 0)
    if rows_first:
        out = _along(_along(arr, row_taps, 0), col_taps, 1)
    else:
        out = _along(_along(arr, col_taps, 1), row_taps, 0)
    return np.ascontiguousarray(out, dtype=_F32)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """``shape`` as two positive ints; InputError otherwise."""
    try:
        values = tuple(shape)
    except TypeError:
        raise InputError(f"target shape must be (rows, columns), got {shape!r}") from None
    if len(values) != 2:
        raise InputError(f"target shape must be (rows, columns), got {shape!r}")
    sizes = []
    for value in values:
        try:
            # operator.index takes ints and numpy integers but refuses 96.0 and "96".
            size = operator.index(value)
        except TypeError:
            raise InputError(f"target shape must hold integers, got {shape!r}") from None
        if isinstance(value, (bool, np.bool_)) or size <= 0:
            raise InputError(f"target shape must hold positive integers, got {shape!r}")
        sizes.append(size)
    return sizes[0], sizes[1]


def _taps(n_in: int, n_out: int, antialias: bool) -> _Taps | None:
    """Band of the (n_out, n_in) weight matrix of one dimension; None for an unchanged size."""
    if n_in == n_out:
        # torch skips an unchanged dimension (antialias) or gives it weights (1, 0) (bilinear).
        return None
    return _antialias_taps(n_in, n_out) if antialias else _bilinear_taps(n_in, n_out)


@lru_cache(maxsize=64)
def _bilinear_taps(n_in: int, n_out: int) -> _Taps:
    """Two taps per output: torch's upsample_bilinear2d with align_corners=False, in float32."""
    scale = _F32(n_in) / _F32(n_out)
    dst = np.arange(n_out, dtype=_F32) + _F32(0.5)
    # torch evaluates scale * (dst + 0.5) - 0.5 as one fused multiply-add on AVX2 / AVX-512 CPUs;
    # the float32 product is exact in float64, so rounding once to float32 gives the same value.
    src = (np.float64(scale) * dst.astype(np.float64) - 0.5).astype(_F32)
    src = np.maximum(src, _F32(0.0))
    i0 = src.astype(np.int64)  # floor, src >= 0
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = np.clip(src - i0.astype(_F32), _F32(0.0), _F32(1.0))
    idx = np.stack([i0, i1], axis=1)
    weights = np.stack([_F32(1.0) - lam, lam], axis=1)
    return _frozen(idx, weights)


@lru_cache(maxsize=64)
def _antialias_taps(n_in: int, n_out: int) -> _Taps:
    """Triangle-filter taps of torch's _upsample_bilinear2d_aa, in float32 as torch computes them."""
    scale = _F32(n_in) / _F32(n_out)
    support = scale if scale >= 1.0 else _F32(1.0)
    invscale = _F32(1.0) / scale if scale >= 1.0 else _F32(1.0)
    center = scale * (np.arange(n_out, dtype=_F32) + _F32(0.5))
    # In torch's C++ the "+ 0.5" literal is a double, so these sums are formed in float64.
    xmin = np.maximum(((center - support).astype(np.float64) + 0.5).astype(np.int64), 0)
    xmax = np.minimum(((center + support).astype(np.float64) + 0.5).astype(np.int64), n_in)
    width = max(1, int(np.max(xmax - xmin)))  # widest window; narrower ones get zero weights
    idx = xmin[:, None] + np.arange(width)[None, :]
    offset = ((idx.astype(_F32) - center[:, None]).astype(np.float64) + 0.5) * np.float64(invscale)
    weights = np.maximum(_F32(1.0) - np.abs(offset.astype(_F32)), _F32(0.0))
    weights[idx >= xmax[:, None]] = 0.0
    # torch sums the weights tap by tap in float32; np.sum would pair them differently.
    total = np.zeros(n_out, dtype=_F32)
    for k in range(width):
        total += weights[:, k]
    # An all-zero window stays zero in torch (no normalisation), hence the guard.
    weights = weights / np.where(total == 0.0, _F32(1.0), total)[:, None]
    return _frozen(np.minimum(idx, n_in - 1), weights)


def _frozen(idx: np.ndarray, weights: np.ndarray) -> _Taps:
    """Read-only arrays, because the lru_cache hands the same ones to every caller.

    The float32 weights are widened to float64 (exactly) once here rather than in every pass.
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    idx.setflags(write=False)
    weights.setflags(write=False)
    return idx, weights


def _dense(n_in: int, width: int, n_out: int, length: int) -> bool:
    """Whether a pass is cheaper as one dense BLAS multiply than as a gather loop over the band."""
    streamed = n_out * length > _CACHED_ELEMENTS
    return n_in < width * (_DENSE_TAP_RATIO_STREAMED if streamed else _DENSE_TAP_RATIO_CACHED)


def _cost(taps: _Taps | None, n_in: int, length: int, axis: int) -> float:
    """Rough cost of one pass along ``axis`` of an array whose other axis is ``length`` long."""
    if taps is None:
        return 0.0
    n_out, width = taps[0].shape
    if _dense(n_in, width, n_out, length):
        return n_out * length * n_in / _DENSE_TAP_RATIO_CACHED
    # Gathering columns (axis 1) runs about 1.5 times slower than gathering whole rows.
    return n_out * length * width * (1.5 if axis else 1.0)


def _along(data: np.ndarray, taps: _Taps | None, axis: int) -> np.ndarray:
    """``data`` resized along ``axis`` (0: rows, 1: columns) by the band ``taps``, as float64.

    Works on the C-ordered input in place of transposed copies, and allocates only arrays of the
    output's size: fresh multi-megabyte temporaries cost more in page faults than the arithmetic.
    """
    if taps is None:
        return data
    idx, weights = taps
    n_out, width = idx.shape
    n_in, length = data.shape[axis], data.shape[1 - axis]
    if _dense(n_in, width, n_out, length):
        matrix = np.zeros((n_out, n_in))
        # add.at, not assignment: clipped edge taps repeat an index (with zero or split weight).
        np.add.at(matrix, (np.repeat(np.arange(n_out), width), idx.ravel()), weights.ravel())
        return matrix @ data if axis == 0 else data @ matrix.T
    # Per-tap weights broadcast down the columns (axis 0) or along the rows (axis 1).
    tap_weights = weights.T[:, :, None] if axis == 0 else weights.T[:, None, :]
    shape = (n_out, length) if axis == 0 else (length, n_out)
    out = np.empty(shape)
    gathered = np.empty(shape, dtype=data.dtype)
    product = gathered if data.dtype == np.float64 else np.empty(shape)
    for k in range(width):
        np.take(data, idx[:, k], axis=axis, out=gathered)
        if k == 0:
            np.multiply(gathered, tap_weights[0], out=out)
        else:
            np.multiply(gathered, tap_weights[k], out=product)
            out += product
    return out
