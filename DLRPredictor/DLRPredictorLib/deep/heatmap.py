"""Grad-CAM heatmaps: from the network's last stage to the crop, the slice and the volume.

Two maps explain two scores (:data:`HEATMAP_KINDS`): ``dl-signature`` (the default) weighs
layer4's channels with the gradient of the DL signature's logit, the score the user sees
(``models.signature_linear``); ``cnn-head`` with the gradient of the network's own fc head, which
no reported score uses. :func:`weighted_cam` makes either map from layer4's activations; the
functions below place it on the crop (aligned with the network's receptive fields), back into
the slice the crop was cut from, and into a volume for display. Geometry uses (row, column)
indexing; no array is ever flipped or transposed on the way in or out.
"""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import InputError
from ..inputs.crops import CropBox
from ..inputs.resample import resize_bilinear

RESNET_STRIDE = 32  # input pixels per layer4 cell
#: Which score a heatmap explains: the DL signature (default) or the CNN's classification head.
HEATMAP_KINDS = ("dl-signature", "cnn-head")
DEFAULT_HEATMAP = HEATMAP_KINDS[0]


def check_heatmap_kind(kind: object) -> str:
    """``kind`` when it is one of :data:`HEATMAP_KINDS`.

    Raises:
        InputError: any other value.
    """
    if not isinstance(kind, str) or kind not in HEATMAP_KINDS:
        raise InputError(f"heatmap must be one of {', '.join(HEATMAP_KINDS)}, got {kind!r}")
    return kind


def weighted_cam(activations: np.ndarray, channel_weights: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Grad-CAM from layer4 activations and channel weights, on the input grid, in [0, 1].

    Args:
        activations: (h, w, D) layer4 activations of one crop (channels last).
        channel_weights: (D,) the spatial mean of d score / d activation per channel.
        rows, cols: the crop's size.

    Returns:
        float64 (rows, cols): ReLU(sum_c weight_c * A_c), upsampled as the network is aligned
        (:func:`upsample_to_input`) and min-max scaled; a flat map is all zeros.

    Raises:
        InputError: the weights do not match the channels.
    """
    act = np.asarray(activations, dtype=np.float64)
    weights = np.asarray(channel_weights, dtype=np.float64)
    if act.ndim != 3 or weights.shape != (act.shape[2],):
        raise InputError(f"channel weights {weights.shape} do not fit layer4 activations {act.shape}")
    cam = np.maximum(act @ weights, 0.0)
    return minmax(upsample_to_input(cam, int(rows), int(cols)))


def _interp_matrix(n_out: int, n_cells: int) -> np.ndarray:
    """(n_out, n_cells) linear interpolation weights with cell j centred on pixel 32 * j."""
    pos = np.clip(np.arange(n_out, dtype=np.float64) / RESNET_STRIDE, 0.0, n_cells - 1.0)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, n_cells - 1)
    frac = pos - low
    weights = np.zeros((n_out, n_cells), dtype=np.float64)
    np.add.at(weights, (np.arange(n_out), low), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return weights


def upsample_to_input(cam: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear upsampling of a layer4 map to the input grid, aligned with the network.

    In a torchvision ResNet every stride-2 stage keeps output j centred on input 2j, so layer4
    cell j is centred on input pixel 32j. A plain resize would centre it on 32j + 15.5 and shift
    the heatmap by half a cell towards the bottom right; this places each cell where its
    receptive field is centred and holds the edge values beyond the outermost centres.
    """
    wr = _interp_matrix(rows, cam.shape[0])
    wc = _interp_matrix(cols, cam.shape[1])
    return wr @ np.asarray(cam, dtype=np.float64) @ wc.T


def minmax(cam: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] as in the reference Grad-CAM code; a flat map becomes zeros."""
    low, high = float(cam.min()), float(cam.max())
    span = high - low
    if not (math.isfinite(span) and span > 1e-12 * max(1.0, abs(high))):
        return np.zeros_like(cam)
    return np.clip((cam - low) / span, 0.0, 1.0)


def heatmap_to_slice(cam: np.ndarray, crop_box: CropBox, slice_shape: tuple[int, int]) -> np.ndarray:
    """Place a crop-sized CAM back into the slice grid.

    Args:
        cam: (h, w) map over the crop.
        crop_box: (row0, row1, col0, col1) the crop was cut from, possibly beyond the image.
        slice_shape: (rows, cols) of the slice.

    Returns:
        float32 (rows, cols): the CAM resized to the box, zeros outside it; parts of the box
        outside the image are dropped.

    Raises:
        InputError: CAM not 2D/finite, empty box or bad slice shape.
    """
    cam_arr = np.asarray(cam, dtype=np.float32)
    if cam_arr.ndim != 2 or not np.all(np.isfinite(cam_arr)):
        raise InputError(f"a heatmap must be a finite 2D array, got shape {cam_arr.shape}")
    if len(slice_shape) != 2 or min(int(s) for s in slice_shape) <= 0:
        raise InputError(f"slice shape must be (rows, cols) > 0, got {tuple(slice_shape)}")
    r0, r1, c0, c1 = (int(v) for v in crop_box)
    if r1 <= r0 or c1 <= c0:
        raise InputError(f"heatmap crop box {tuple(crop_box)} is empty")
    rows, cols = (int(s) for s in slice_shape)
    out = np.zeros((rows, cols), dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 >= sr1 or sc0 >= sc1:
        return out  # the box lies entirely outside the image
    resized = resize_bilinear(cam_arr, (r1 - r0, c1 - c0))
    out[sr0:sr1, sc0:sc1] = resized[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
    return out


def heatmap_volume(cam_slice: np.ndarray, volume_shape: tuple[int, int, int], slice_index: int) -> np.ndarray:
    """A (k, j, i) volume that is zero except for the heatmap at ``slice_index``.

    Args:
        cam_slice: (rows, cols) heatmap in the slice grid.
        volume_shape: (slices, rows, cols) of the image volume.
        slice_index: k of the representative slice.

    Returns:
        float32 volume of ``volume_shape``.

    Raises:
        InputError: shapes disagree or the index is out of range.
    """
    k, j, i = (int(s) for s in volume_shape)
    cam_arr = np.asarray(cam_slice, dtype=np.float32)
    if cam_arr.shape != (j, i):
        raise InputError(f"heatmap shape {cam_arr.shape} differs from the image slice shape {(j, i)}")
    if not 0 <= int(slice_index) < k:
        raise InputError(f"slice index {slice_index} is outside the volume's {k} slices")
    vol = np.zeros((k, j, i), dtype=np.float32)
    vol[int(slice_index)] = cam_arr
    return vol
