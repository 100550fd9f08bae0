"""The CNN's training data: crop and label checks, the inner split, batch resampling, augmentation.

torch is imported inside the functions that take tensors; the checks and the split need numpy
(and scikit-learn for the split) only.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np

from ..base.errors import InputError
from ..base.labels import validate_labels
from ..inputs.crops import MIN_CROP_SIZE
from .cnn_config import CnnTrainConfig

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


def as_variants(crops: np.ndarray) -> np.ndarray:
    """Training crops as a C-contiguous float32 (N, V, H, W) array, checked.

    Args:
        crops: (N, H, W) crops, or (N, V, H, W) with V contour variants per case.

    Returns:
        The crops with a variant axis (V = 1 for (N, H, W) input).

    Raises:
        InputError: another shape, crops smaller than ``MIN_CROP_SIZE`` or non-finite values.
    """
    arr = np.asarray(crops)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] < 1:
        raise InputError(f"training crops must be (N, H, W) or (N, V, H, W), got shape {np.shape(crops)}")
    if min(arr.shape[2:]) < MIN_CROP_SIZE:
        raise InputError(f"training crops must be at least {MIN_CROP_SIZE} px, got {arr.shape[2:]}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise InputError("training crops contain NaN or infinite values")
    return arr


def as_labels(labels: np.ndarray, n: int, num_classes: int = 2) -> np.ndarray:
    """Class labels of ``n`` cases as int64: 0/1, or 0..num_classes-1 for a K-class network.

    Raises:
        InputError: another shape, or values outside the classes (``base.labels.validate_labels``
            for two classes).
    """
    y = np.asarray(labels)
    if y.shape != (n,):
        raise InputError(f"labels must have shape ({n},) like the crops, got {y.shape}")
    if y.size == 0:  # no cases: the split says what training needs (validate_labels would say "evaluate")
        return y.astype(np.int64)
    if num_classes > 2:
        codes = np.arange(num_classes)
        if not np.issubdtype(y.dtype, np.number) or not np.isin(y, codes).all():
            raise InputError(
                f"labels of a {num_classes}-class network must be class indices 0..{num_classes - 1}; "
                f"found {sorted({str(v) for v in y.tolist()} - {str(c) for c in codes})[:5]}"
            )
        return y.astype(np.int64)
    # A single class passes here: the inner split names the counts each class needs.
    return validate_labels(y, need_both=False).astype(np.int64)


def split_train_val(
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_classes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Inner validation split, stratified by label and, with groups, by patient.

    Args:
        labels: (N,) class labels (0/1, or 0..num_classes-1).
        groups: (N,) patient ids; no group ends up on both sides.
        val_fraction: share held out (0 gives an empty validation set).
        seed: random seed.
        num_classes: the classes every case of which training needs at least two of.

    Returns:
        (train_indices, val_indices), sorted.

    Raises:
        InputError: too few cases or groups of a class to hold some out.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

    y = np.asarray(labels).astype(np.int64)
    idx = np.arange(y.size)
    if num_classes > 2 and (np.bincount(y, minlength=num_classes) == 0).any():
        raise InputError(
            f"CNN training of {num_classes} classes got no case of some class "
            f"(counts {np.bincount(y, minlength=num_classes).tolist()})"
        )
    if val_fraction <= 0:
        return idx, idx[:0]
    counts = np.bincount(y, minlength=num_classes)
    if counts.min() < 2:
        raise InputError(f"CNN training needs at least 2 cases of each class, got counts {counts.tolist()}")
    try:
        if groups is None:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
            train, val = next(splitter.split(idx, y))
        else:
            g = np.asarray(groups)
            if g.shape != y.shape:
                raise InputError(f"groups must have shape {y.shape} like the labels, got {g.shape}")
            k = max(2, round(1.0 / val_fraction))
            if np.unique(g).size < k:
                raise InputError(
                    f"only {np.unique(g).size} patients (groups) for a {val_fraction:.0%} validation split; "
                    "add cases or lower val_fraction"
                )
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            train, val = next(splitter.split(idx, y, g))
    except ValueError as exc:
        raise InputError(f"cannot make a stratified validation split: {exc}") from exc
    for name, part in (("validation", val), ("training", train)):
        if np.unique(y[part]).size < 2:
            raise InputError(
                f"the inner {name} split has only one class; add cases of the rarer class "
                "or change val_fraction/seed"
            )
    if np.unique(y[train]).size < num_classes:  # a class without training case gets no weight
        counts = np.bincount(y[train], minlength=num_classes)
        raise InputError(
            f"the inner training split lacks a class (counts {counts.tolist()}); "
            "add cases of the rarest class or change val_fraction/seed"
        )
    return np.sort(train), np.sort(val)


def crops_fingerprint(data: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> str:
    """sha256 of crops, labels and groups: a checkpoint resumes only on the same data."""
    h = hashlib.sha256()
    h.update(repr(data.shape).encode())
    h.update(data.data.cast("B"))  # the bytes in place (the crops are C-contiguous)
    h.update(y.tobytes())
    if groups is not None:
        h.update("\x1f".join(map(str, np.asarray(groups).tolist())).encode())
    return h.hexdigest()


def zscore_batch(x: torch.Tensor) -> torch.Tensor:
    """Per-crop z-score of a (B, 1, H, W) batch."""
    import torch

    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1, unbiased=False).view(-1, 1, 1, 1)
    # Same rule as inputs.crops.zscore: a constant crop becomes zeros, never NaN.
    ok = std > 1e-6
    return torch.where(ok, (x - mean) / torch.where(ok, std, torch.ones_like(std)), torch.zeros_like(x))


def resample_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """A (B, 1, H, W) batch resized bilinearly to (size, size) (antialiased when shrinking)."""
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def augment(x: torch.Tensor, cfg: CnnTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop + left-right flip (one affine resampling) and intensity jitter.

    Args:
        x: (B, 1, H, W) crops.
        cfg: the ranges (``rrc_scale``, ``rrc_ratio``, ``hflip``, ``gamma_range``,
            ``contrast_range``, ``noise_std``) and the output side ``input_size``.
        gen: the generator of every random draw (seeded per epoch: exact resume).

    Returns:
        (B, 1, input_size, input_size) crops rescaled to [0, 1] and jittered (not z-scored).
    """
    import torch
    import torch.nn.functional as F

    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen, dtype=torch.float64)

    scale = uniform(*cfg.rrc_scale)
    ratio = torch.exp(uniform(math.log(cfg.rrc_ratio[0]), math.log(cfg.rrc_ratio[1])))
    wf = torch.sqrt(scale * ratio).clamp(max=1.0)
    hf = torch.sqrt(scale / ratio).clamp(max=1.0)
    tx = (1.0 - wf) * uniform(-1.0, 1.0)
    ty = (1.0 - hf) * uniform(-1.0, 1.0)
    flip = torch.rand(b, generator=gen, dtype=torch.float64) < 0.5
    if not cfg.hflip:
        flip = torch.zeros_like(flip)
    sign = torch.where(flip, -1.0, 1.0).to(torch.float64)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = wf * sign  # x (columns): a negative scale is a left-right flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = hf  # y (rows) is never negated: no vertical flip
    theta[:, 1, 2] = ty
    size = cfg.input_size
    grid = F.affine_grid(theta.float(), [b, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    flat = x.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    span = (flat.max(1).values.view(-1, 1, 1, 1) - lo).clamp_min(1e-6)
    x01 = ((x - lo) / span).clamp(0.0, 1.0)
    gamma = torch.exp(uniform(math.log(cfg.gamma_range[0]), math.log(cfg.gamma_range[1]))).float()
    x01 = x01 ** gamma.view(-1, 1, 1, 1)
    contrast = uniform(*cfg.contrast_range).float().view(-1, 1, 1, 1)
    mean = x01.mean(dim=(1, 2, 3), keepdim=True)
    x01 = (x01 - mean) * contrast + mean
    if cfg.noise_std > 0:
        x01 = x01 + cfg.noise_std * torch.randn(x01.shape, generator=gen)
    return x01
