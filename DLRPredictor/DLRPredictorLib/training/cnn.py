"""Training the ResNet on lesion crops: augmentation, class balance, early stopping, resume.

torch is imported lazily inside functions. Every random draw of an epoch comes from generators
seeded by (seed, epoch), and the learning rate is a pure function of the epoch, so a run killed
after any epoch resumes from its checkpoint and ends with exactly the weights of an
uninterrupted run (on the same machine and thread count). Checkpoints hold tensors in
safetensors and the rest in JSON; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..deep.deep_model import (
    MIN_CROP_SIZE,
    DeepModel,
    _check_arch,
    build_resnet,
    load_weights,
    save_safetensors,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

ProgressCallback = Callable[[float, str], None]
LogCallback = Callable[[str], None]

CHECKPOINT_FORMAT = "dlrpredictor-cnn-checkpoint-v1"
CHECKPOINT_JSON = "checkpoint.json"
_SCHEDULES = ("cosine", "step", "constant")
_MONITORS = ("auc", "loss")
_BALANCES = ("loss", "sampler", "none")
# Keys that may change between a killed run and its resumption without changing the result.
_RESUME_FREE_KEYS = ("num_threads",)


def _is_int(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and int(value) == value and value >= minimum


def _is_range(pair: Any) -> bool:
    values = tuple(float(v) for v in pair)
    return len(values) == 2 and all(math.isfinite(v) for v in values) and 0 < values[0] <= values[1]


@dataclass
class CnnTrainConfig:
    """Settings of one CNN training run (grayscale, 1 input channel, 2 classes).

    Attributes:
        arch: ResNet architecture (see ``deep_features.ARCHITECTURES``).
        input_size: side of the network input; crops of another size are resampled.
        epochs: maximum number of epochs.
        batch_size: crops per optimiser step.
        lr: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        schedule: "cosine" (to ``lr * min_lr_fraction``), "step" or "constant".
        warmup_epochs: epochs of linear warm-up before the schedule.
        step_size: epochs between decays for the "step" schedule.
        step_gamma: decay factor for the "step" schedule.
        min_lr_fraction: final learning rate of the cosine schedule, as a fraction of ``lr``.
        patience: epochs without validation improvement before stopping.
        monitor: "auc" (validation AUC, higher is better) or "loss" (validation loss).
        val_fraction: share of cases (of groups when groups are given) held out for validation;
            0 trains on everything for all epochs and keeps the last weights.
        balance: "loss" (class-weighted cross-entropy), "sampler" (balanced sampling) or "none".
        label_smoothing: cross-entropy label smoothing.
        seed: seeds initialisation, split, shuffling and augmentation.
        augment: master switch of the training augmentation.
        rrc_scale: area range of the random resized crop ((1, 1) disables it).
        rrc_ratio: aspect-ratio range of the random resized crop.
        hflip: random left-right flip. There is never a vertical flip: up is the skin.
        gamma_range: random gamma on the [0, 1]-rescaled crop ((1, 1) disables it).
        contrast_range: random contrast factor around the mean ((1, 1) disables it).
        noise_std: Gaussian noise on the [0, 1]-rescaled crop (0 disables it).
        num_threads: torch CPU threads during training (None leaves the caller's setting).
        ema_decay: 0 disables; otherwise validation, early stopping and the kept weights use an
            exponential moving average of the weights (BatchNorm statistics included), updated
            after every optimiser step with this decay. On small cohorts the validation AUC of
            the raw weights swings from epoch to epoch; the average is steadier.
    """

    arch: str = "resnet18"
    input_size: int = 128
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: int = 1
    step_size: int = 10
    step_gamma: float = 0.1
    min_lr_fraction: float = 0.01
    patience: int = 8
    monitor: str = "auc"
    val_fraction: float = 0.2
    balance: str = "loss"
    label_smoothing: float = 0.0
    seed: int = 0
    augment: bool = True
    rrc_scale: tuple[float, float] = (0.75, 1.0)
    rrc_ratio: tuple[float, float] = (0.85, 1.18)
    hflip: bool = True
    gamma_range: tuple[float, float] = (0.7, 1.4)
    contrast_range: tuple[float, float] = (0.8, 1.25)
    noise_std: float = 0.03
    num_threads: int | None = None
    ema_decay: float = 0.0

    def validate(self) -> None:
        """Check every value.

        Raises:
            ConfigError: naming the first invalid setting and its allowed values.
        """
        _check_arch(self.arch)
        try:
            checks = [
                ("input_size", _is_int(self.input_size, MIN_CROP_SIZE), f"an integer >= {MIN_CROP_SIZE}"),
                ("epochs", _is_int(self.epochs, 1), "an integer >= 1"),
                ("batch_size", _is_int(self.batch_size, 2), "an integer >= 2"),
                ("lr", math.isfinite(self.lr) and self.lr > 0, "a number > 0"),
                ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
                ("schedule", self.schedule in _SCHEDULES, f"one of {_SCHEDULES}"),
                ("warmup_epochs", _is_int(self.warmup_epochs, 0), "an integer >= 0"),
                ("step_size", _is_int(self.step_size, 1), "an integer >= 1"),
                ("step_gamma", 0 < self.step_gamma <= 1, "in (0, 1]"),
                ("min_lr_fraction", 0 <= self.min_lr_fraction <= 1, "in [0, 1]"),
                ("patience", _is_int(self.patience, 1), "an integer >= 1"),
                ("monitor", self.monitor in _MONITORS, f"one of {_MONITORS}"),
                ("val_fraction", 0 <= self.val_fraction < 0.9, "in [0, 0.9)"),
                ("balance", self.balance in _BALANCES, f"one of {_BALANCES}"),
                ("label_smoothing", 0 <= self.label_smoothing < 0.5, "in [0, 0.5)"),
                ("seed", _is_int(self.seed, 0) and self.seed < 2**32, "an integer in [0, 2**32)"),
                (
                    "rrc_scale",
                    _is_range(self.rrc_scale) and self.rrc_scale[1] <= 1,
                    "(low, high), 0 < low <= high <= 1",
                ),
                ("rrc_ratio", _is_range(self.rrc_ratio), "(low, high) with 0 < low <= high"),
                ("gamma_range", _is_range(self.gamma_range), "(low, high) with 0 < low <= high"),
                ("contrast_range", _is_range(self.contrast_range), "(low, high) with 0 < low <= high"),
                ("noise_std", math.isfinite(self.noise_std) and self.noise_std >= 0, ">= 0"),
                ("num_threads", self.num_threads is None or _is_int(self.num_threads, 1), "None or >= 1"),
                ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
            ]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid CNN training setting: a value has the wrong type ({exc})") from exc
        for name, ok, requirement in checks:
            if not ok:
                raise ConfigError(
                    f"invalid CNN training setting: {name} must be {requirement}, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CnnTrainConfig:
        """Config from a dict (e.g. YAML/JSON), validated.

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown CNN training settings {unknown}; known: {sorted(known)}")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        cfg.validate()
        return cfg


@dataclass
class TrainResult:
    """Outcome of :func:`train_cnn`.

    Attributes:
        state_dict: CPU tensors of the best epoch's weights.
        best_epoch: 0-based epoch whose weights were kept.
        best_score: validation AUC (or minus the validation loss) of that epoch; NaN without
            validation. Epochs with equal AUC are ranked by validation loss.
        history: one dict per epoch: epoch, lr, train_loss, val_loss, val_auc, seconds.
        config: the configuration used.
        train_indices: cases trained on.
        val_indices: cases of the inner validation split.
        stopped_early: whether early stopping ended the run.
        resumed_from_epoch: epochs already done in the checkpoint this call resumed from (the
            first epoch run is this + 1; equal to ``epochs`` when it was finished), or None.
    """

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]]
    config: CnnTrainConfig
    train_indices: np.ndarray
    val_indices: np.ndarray
    stopped_early: bool = False
    resumed_from_epoch: int | None = None

    def model(self) -> DeepModel:
        """The best weights as an eval-mode :class:`DeepModel`."""
        return DeepModel.from_state_dict(self.state_dict, self.config.arch)


@dataclass
class _RunState:
    next_epoch: int = 0
    best_epoch: int = -1
    best_score: float | None = None
    since_best: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    ema_state: dict[str, Any] | None = None  # the moving average (cfg.ema_decay > 0)


# --------------------------------------------------------------------------- data checks and split


def _as_variants(crops: np.ndarray) -> np.ndarray:
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


def _as_labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise InputError(f"labels must have shape ({n},) like the crops, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be 0/1 (1 = positive class), got values {sorted(set(y.tolist()))[:5]}")
    return y.astype(np.int64)


def split_train_val(
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Inner validation split, stratified by label and, with groups, by patient.

    Args:
        labels: (N,) 0/1 labels.
        groups: (N,) patient ids; no group ends up on both sides.
        val_fraction: share held out (0 gives an empty validation set).
        seed: random seed.

    Returns:
        (train_indices, val_indices), sorted.

    Raises:
        InputError: too few cases or groups of a class to hold some out.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

    y = np.asarray(labels).astype(np.int64)
    idx = np.arange(y.size)
    if val_fraction <= 0:
        return idx, idx[:0]
    counts = np.bincount(y, minlength=2)
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
    return np.sort(train), np.sort(val)


def _fingerprint(data: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> str:
    h = hashlib.sha256()
    h.update(repr(data.shape).encode())
    h.update(memoryview(data).cast("B"))
    h.update(y.tobytes())
    if groups is not None:
        h.update("\x1f".join(map(str, np.asarray(groups).tolist())).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- schedule and randomness


def learning_rate(config: CnnTrainConfig, epoch: int) -> float:
    """Learning rate of a 0-based epoch (a pure function, which makes resuming exact)."""
    if epoch < config.warmup_epochs:
        return config.lr * (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * config.step_gamma ** ((epoch - config.warmup_epochs) // config.step_size)
    span = max(1, config.epochs - config.warmup_epochs - 1)
    t = min(1.0, (epoch - config.warmup_epochs) / span)
    floor = config.lr * config.min_lr_fraction
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    import torch

    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _zscore_batch(x: torch.Tensor) -> torch.Tensor:
    import torch

    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1, unbiased=False).view(-1, 1, 1, 1)
    # Same rule as deep_features.zscore: a constant crop becomes zeros, never NaN.
    ok = std > 1e-6
    return torch.where(ok, (x - mean) / torch.where(ok, std, torch.ones_like(std)), torch.zeros_like(x))


def _resample(x: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def _augment(x: torch.Tensor, cfg: CnnTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop + left-right flip (one affine resampling) and intensity jitter."""
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


# --------------------------------------------------------------------------- checkpoints


def _config_key(cfg: CnnTrainConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE_KEYS}


def optimizer_state(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """An optimiser's state split for a checkpoint without pickle.

    Returns:
        Tensors named ``optim.<param id>.<name>`` (for safetensors), the non-tensor per-parameter
        values named ``<param id>.<name>`` and the parameter groups (both for JSON).
    """
    import torch

    opt_sd = opt.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in opt_sd["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().clone().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, scalars, opt_sd["param_groups"]


def restore_optimizer(
    opt: torch.optim.Optimizer,
    tensors: Mapping[str, Any],
    scalars: Mapping[str, Any],
    param_groups: list[dict[str, Any]],
) -> None:
    """Load what :func:`optimizer_state` returned (other tensors in ``tensors`` are ignored)."""
    per_param: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            per_param.setdefault(int(pid), {})[name] = v
    for k, v in scalars.items():
        pid, name = k.split(".", 1)
        per_param.setdefault(int(pid), {})[name] = v
    groups = [dict(g) for g in param_groups]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])  # JSON made the tuple a list
    opt.load_state_dict({"state": per_param, "param_groups": groups})


def commit_checkpoint(
    folder: Path,
    tensors: Mapping[str, Any],
    record: dict[str, Any],
    *,
    fmt: str,
    stem: str,
    epoch: int,
    json_name: str = CHECKPOINT_JSON,
) -> None:
    """Tensors to a new ``<stem><epoch>.safetensors``, then the JSON record that commits it.

    Both are written to temporary names and renamed, so a run killed at any moment leaves the
    previous checkpoint or the new one, never a mix; older tensor files are removed afterwards.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights_name = f"{stem}{epoch:04d}.safetensors"
    tmp = folder / (weights_name + ".tmp")
    save_file(dict(tensors), str(tmp), metadata={"format": fmt, "epoch": str(epoch)})
    os.replace(tmp, folder / weights_name)
    record = {"format": fmt, **record, "weights_file": weights_name}
    tmp_json = folder / (json_name + ".tmp")
    tmp_json.write_text(json.dumps(record, indent=1))
    os.replace(tmp_json, folder / json_name)
    for old in folder.glob(f"{stem}*.safetensors*"):
        if old.name != weights_name:
            old.unlink(missing_ok=True)


def _save_checkpoint(
    folder: Path,
    *,
    epoch: int,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    state: _RunState,
    cfg: CnnTrainConfig,
    fingerprint: str,
) -> None:
    """Model, best / averaged weights and optimiser state, committed by :func:`commit_checkpoint`."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in net.state_dict().items():
        tensors[f"model.{k}"] = v.detach().clone().contiguous()
    for k, v in (state.best_state or {}).items():
        tensors[f"best.{k}"] = v.clone().contiguous()
    for k, v in (state.ema_state or {}).items():
        tensors[f"ema.{k}"] = v.clone().contiguous()
    optim_tensors, scalars, param_groups = optimizer_state(opt)
    tensors.update(optim_tensors)
    record = {
        "epoch": epoch,
        "next_epoch": state.next_epoch,
        "finished": state.finished,
        "stopped_early": state.stopped_early,
        "best_epoch": state.best_epoch,
        "best_score": state.best_score,
        "epochs_since_best": state.since_best,
        "history": state.history,
        "rng": {
            "seed": cfg.seed,
            "rule": "torch.Generator seeded by numpy SeedSequence([seed, epoch, stream]); "
            "stream 0 = order and augmentation, 1 = variant choice; init by torch.manual_seed(seed)",
        },
        "config": _config_key(cfg),
        "data_sha256": fingerprint,
        "optimizer_param_groups": param_groups,
        "optimizer_scalars": scalars,
    }
    commit_checkpoint(folder, tensors, record, fmt=CHECKPOINT_FORMAT, stem="checkpoint_epoch", epoch=epoch)


def _load_checkpoint(
    folder: Path,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: CnnTrainConfig,
    fingerprint: str,
) -> _RunState | None:
    """Restore model, optimiser and run state; None when the folder holds no checkpoint."""
    from safetensors.torch import load_file

    path = folder / CHECKPOINT_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        tensors = load_file(str(folder / record["weights_file"]))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"the training checkpoint in {folder} is unreadable ({exc}); delete that folder to restart"
        ) from exc
    if record.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a DLRPredictor CNN checkpoint; use an empty checkpoint folder")
    if record.get("config") != _config_key(cfg) or record.get("data_sha256") != fingerprint:
        raise ConfigError(
            f"the checkpoint in {folder} belongs to a run with other settings or other crops; "
            "use an empty checkpoint folder or delete it to restart"
        )
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    restore_optimizer(opt, tensors, record.get("optimizer_scalars", {}), record["optimizer_param_groups"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    return _RunState(
        next_epoch=int(record["next_epoch"]),
        best_epoch=int(record["best_epoch"]),
        best_score=record["best_score"],
        since_best=int(record["epochs_since_best"]),
        finished=bool(record["finished"]),
        stopped_early=bool(record["stopped_early"]),
        history=list(record["history"]),
        best_state=best or None,
        ema_state=ema or None,
    )


# --------------------------------------------------------------------------- epochs


def _train_epoch(
    net: torch.nn.Module,
    *,
    opt: torch.optim.Optimizer,
    data: torch.Tensor,
    y: torch.Tensor,
    train_idx: torch.Tensor,
    class_weights: torch.Tensor | None,
    cfg: CnnTrainConfig,
    epoch: int,
    ema: dict[str, torch.Tensor] | None = None,
) -> float:
    import torch
    import torch.nn.functional as F

    gen = _generator(cfg.seed, epoch, 0)
    n_variants = data.shape[1]
    variant = (
        torch.randint(n_variants, (data.shape[0],), generator=_generator(cfg.seed, epoch, 1))
        if n_variants > 1
        else torch.zeros(data.shape[0], dtype=torch.long)
    )
    if cfg.balance == "sampler":
        counts = torch.bincount(y[train_idx], minlength=2).double()
        weights = (1.0 / counts)[y[train_idx]]
        order = train_idx[torch.multinomial(weights, train_idx.numel(), replacement=True, generator=gen)]
    else:
        order = train_idx[torch.randperm(train_idx.numel(), generator=gen)]
    net.train()
    total, seen = 0.0, 0
    for start in range(0, order.numel(), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        if idx.numel() < 2:  # batch norm cannot train on a single sample
            continue
        x = data[idx, variant[idx]].unsqueeze(1)
        x = _augment(x, cfg, gen) if cfg.augment else _resample(x, cfg.input_size)
        x = _zscore_batch(x)
        loss = F.cross_entropy(net(x), y[idx], weight=class_weights, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            _update_ema(ema, net, cfg.ema_decay)
        total += float(loss.detach()) * idx.numel()
        seen += idx.numel()
    return total / max(seen, 1)


def _update_ema(ema: dict[str, torch.Tensor], net: torch.nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * weights; integer buffers (batch counts) are copied."""
    import torch

    with torch.no_grad():
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                ema[name].mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                ema[name].copy_(value)


def _evaluate(
    net: torch.nn.Module, data: torch.Tensor, y: torch.Tensor, val_idx: torch.Tensor, cfg: CnnTrainConfig
) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    net.eval()
    logits = []
    with torch.no_grad():
        for start in range(0, val_idx.numel(), cfg.batch_size):
            idx = val_idx[start : start + cfg.batch_size]
            x = _zscore_batch(_resample(data[idx, 0].unsqueeze(1), cfg.input_size))
            logits.append(net(x).double())
    out = torch.cat(logits)
    target = y[val_idx]
    loss = float(F.cross_entropy(out, target))
    prob = torch.softmax(out, dim=1)[:, 1].numpy()
    return loss, float(roc_auc_score(target.numpy(), prob))


def weights_digest(state: Mapping[str, Any]) -> str:
    """sha256 over a state dict's names and bytes (tensors or arrays), in name order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        digest.update(key.encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None: unchanged), restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- entry point


def train_cnn(
    crops: np.ndarray,
    labels: np.ndarray,
    config: CnnTrainConfig | None = None,
    *,
    checkpoint_dir: Path | None = None,
    groups: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
    init_state: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train a grayscale ResNet on lesion crops, with early stopping and exact resume.

    Args:
        crops: (N, H, W) z-scored crops, or (N, V, H, W) with V variants per case (e.g.
            contour-perturbed crops); one variant is drawn per case and epoch, validation
            uses variant 0.
        labels: (N,) 0/1 labels (1 = positive class).
        config: training settings (defaults to ``CnnTrainConfig()``).
        checkpoint_dir: folder for per-epoch checkpoints; an existing checkpoint there is
            resumed (it must come from the same settings and crops).
        groups: (N,) patient ids; the inner validation split never splits a patient.
        progress: called as ``progress(fraction, message)`` after every epoch; an exception
            raised there stops training after the epoch's checkpoint was written.
        log: called with one line per epoch.
        init_state: initial weights (tensors or numpy arrays by state-dict name, e.g. from a
            safetensors file) instead of a random initialisation; checked name by name.

    Returns:
        The best epoch's weights, history and split.

    Raises:
        ConfigError: invalid settings, or a checkpoint from another run.
        InputError: crops/labels of the wrong shape, non-finite values or too few cases.
    """
    import torch

    cfg = config or CnnTrainConfig()
    cfg.validate()
    data_np = _as_variants(crops)
    y_np = _as_labels(labels, data_np.shape[0])
    groups_np = None if groups is None else np.asarray(groups)
    train_np, val_np = split_train_val(y_np, groups_np, cfg.val_fraction, cfg.seed)
    fingerprint = _fingerprint(data_np, y_np, groups_np) if checkpoint_dir is not None else ""
    if init_state is not None and fingerprint:
        # A checkpoint of a run from other initial weights must not be resumed.
        fingerprint = f"{fingerprint}+init:{weights_digest(init_state)}"

    with torch_threads(cfg.num_threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = build_resnet(cfg.arch, num_classes=2, in_channels=1)
        if init_state is not None:
            load_weights(net, init_state, cfg.arch, 1, 2, source="the initial CNN weights")
        # foreach: the multi-tensor update is about twice as fast on the CPU, same result
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
        state = _load_checkpoint(folder, net, opt, cfg, fingerprint) if folder is not None else None
        resumed_from = state.next_epoch if state is not None else None
        state = state or _RunState()
        if resumed_from is not None and log:
            log(f"resuming CNN training at epoch {resumed_from + 1} from {folder}")
        _run_epochs(
            net,
            opt=opt,
            data_np=data_np,
            y_np=y_np,
            train_np=train_np,
            val_np=val_np,
            cfg=cfg,
            state=state,
            folder=folder,
            fingerprint=fingerprint,
            progress=progress,
            log=log,
        )
    return TrainResult(
        state_dict=state.best_state or {k: v.detach().clone() for k, v in net.state_dict().items()},
        best_epoch=state.best_epoch,
        best_score=float("nan") if state.best_score is None or val_np.size == 0 else float(state.best_score),
        history=state.history,
        config=cfg,
        train_indices=train_np,
        val_indices=val_np,
        stopped_early=state.stopped_early,
        resumed_from_epoch=resumed_from,
    )


def _better(state: _RunState, score: float, val_loss: float) -> bool:
    """A higher score wins; an equal score (AUC ties are common) wins with a lower loss."""
    if not math.isfinite(score):
        return False
    best = float(state.best_score) if state.best_score is not None else -math.inf
    if score != best:
        return score > best
    return val_loss < float(state.history[state.best_epoch]["val_loss"])


def _run_epochs(
    net: torch.nn.Module,
    *,
    opt: torch.optim.Optimizer,
    data_np: np.ndarray,
    y_np: np.ndarray,
    train_np: np.ndarray,
    val_np: np.ndarray,
    cfg: CnnTrainConfig,
    state: _RunState,
    folder: Path | None,
    fingerprint: str,
    progress: ProgressCallback | None,
    log: LogCallback | None,
) -> None:
    import torch

    data = torch.from_numpy(data_np)
    y = torch.from_numpy(y_np)
    train_idx = torch.from_numpy(train_np.astype(np.int64))
    val_idx = torch.from_numpy(val_np.astype(np.int64))
    class_weights = None
    if cfg.balance == "loss":
        counts = np.bincount(y_np[train_np], minlength=2).astype(np.float64)
        class_weights = torch.tensor(counts.sum() / (2.0 * counts), dtype=torch.float32)

    eval_net = net
    if cfg.ema_decay > 0:
        if state.ema_state is None:
            state.ema_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        # A twin network evaluates the average (loaded before every use: no initialisation).
        eval_net = build_resnet(cfg.arch, num_classes=2, in_channels=1, initialise=False)

    for epoch in range(state.next_epoch, cfg.epochs):
        if state.finished:
            break
        started = time.perf_counter()
        lr = learning_rate(cfg, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        train_loss = _train_epoch(
            net,
            opt=opt,
            data=data,
            y=y,
            train_idx=train_idx,
            class_weights=class_weights,
            cfg=cfg,
            epoch=epoch,
            ema=state.ema_state,
        )
        if state.ema_state is not None:
            eval_net.load_state_dict(state.ema_state)
        if val_idx.numel():
            val_loss, val_auc = _evaluate(eval_net, data, y, val_idx, cfg)
            score = val_auc if cfg.monitor == "auc" else -val_loss
        else:
            val_loss = val_auc = score = float("nan")
        improved = state.best_state is None or val_idx.numel() == 0 or _better(state, score, val_loss)
        if improved:
            state.best_state = {k: v.detach().clone() for k, v in eval_net.state_dict().items()}
            state.best_epoch, state.best_score, state.since_best = epoch, score, 0
        else:
            state.since_best += 1
        state.history.append(
            {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_auc": val_auc,
                "seconds": time.perf_counter() - started,
            }
        )
        state.stopped_early = bool(val_idx.numel()) and state.since_best >= cfg.patience
        state.finished = state.stopped_early or epoch + 1 >= cfg.epochs
        state.next_epoch = epoch + 1
        if folder is not None:
            _save_checkpoint(
                folder, epoch=epoch, net=net, opt=opt, state=state, cfg=cfg, fingerprint=fingerprint
            )
        message = (
            f"CNN epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, "
            f"val loss {val_loss:.4f}, val AUC {val_auc:.3f}"
        )
        if log:
            log(message + (" (early stop)" if state.stopped_early else ""))
        if progress:
            progress(state.next_epoch / cfg.epochs, message)


def save_result_weights(result: TrainResult, path: Path) -> Path:
    """Write the best weights of a training run as a bundle-ready safetensors file.

    Args:
        result: output of :func:`train_cnn`.
        path: destination file.

    Returns:
        The path written.
    """
    model = result.model()
    return save_safetensors(model, path, metadata={"best_epoch": str(result.best_epoch)})
