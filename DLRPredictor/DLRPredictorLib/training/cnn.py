"""Training the CNN on lesion crops: the epochs, class balance, EMA, staged fine-tuning, early stopping,
resume, seed ensembles.

torch is imported lazily inside functions. Every random draw of an epoch comes from generators
seeded by (seed, epoch), and the learning rate is a pure function of the epoch, so a run killed
after any epoch resumes from its checkpoint and ends with exactly the weights of an
uninterrupted run (on the same machine and thread count). Checkpoints hold tensors in
safetensors and the rest in JSON (:mod:`checkpoints`); nothing is pickled. The settings and
result are in :mod:`cnn_config`, the data checks, split and augmentation in :mod:`cnn_data`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError
from ..deep.deep_model import build_resnet
from ..deep.weights import load_weights
from .checkpoints import (
    CheckpointFiles,
    load_training_checkpoint,
    save_training_checkpoint,
    torch_threads,
    weights_digest,
)
from .cnn_config import CnnTrainConfig, TrainResult
from .cnn_data import (
    as_labels,
    as_variants,
    augment,
    crops_fingerprint,
    resample_batch,
    split_train_val,
    zscore_batch,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

ProgressCallback = Callable[[float, str], None]
LogCallback = Callable[[str], None]

CHECKPOINT_FORMAT = "dlrpredictor-cnn-checkpoint-v1"
CHECKPOINT_JSON = "checkpoint.json"
_FILES = CheckpointFiles(
    fmt=CHECKPOINT_FORMAT, stem="checkpoint_epoch", json_name=CHECKPOINT_JSON, what="CNN training"
)


@dataclass
class _RunState:
    """Where a run stands after an epoch: what its checkpoint holds besides model and optimiser."""

    next_epoch: int = 0
    best_epoch: int = -1
    best_score: float | None = None
    since_best: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    ema_state: dict[str, Any] | None = None  # the moving average (cfg.ema_decay > 0)


# --------------------------------------------------------------------------- schedule and randomness


def learning_rate(config: CnnTrainConfig, epoch: int, fraction: float = 0.0) -> float:
    """Learning rate of a 0-based epoch, ``fraction`` of the way through it.

    A pure function of the position, which makes resuming exact. Only "onecycle" changes the
    rate within an epoch (every optimiser step): a short fine-tuning run of a few epochs would
    otherwise spend a whole epoch warming up and another at the cosine floor.
    """
    if config.schedule == "onecycle":
        return _one_cycle(config, (epoch + fraction) / config.epochs)
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


def _one_cycle(config: CnnTrainConfig, t: float) -> float:
    """torch's OneCycleLR rule (cosine both ways) at progress ``t`` in [0, 1] of the whole run.

    From ``lr / 25`` up to ``lr`` over the first ``ONE_CYCLE_RISE`` of the run, then down to
    ``lr / 25 / 1e4``; ``warmup_epochs`` and ``min_lr_fraction`` do not apply.
    """
    start, end = config.lr / 25.0, config.lr / 25.0 / 1e4
    t = min(max(t, 0.0), 1.0)
    if t < ONE_CYCLE_RISE:
        u = t / ONE_CYCLE_RISE
        return config.lr + (start - config.lr) * 0.5 * (1.0 + math.cos(math.pi * u))
    u = (t - ONE_CYCLE_RISE) / (1.0 - ONE_CYCLE_RISE)
    return end + (config.lr - end) * 0.5 * (1.0 + math.cos(math.pi * u))


#: Share of a "onecycle" run spent raising the learning rate (torch's ``pct_start`` default).
ONE_CYCLE_RISE = 0.3


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    import torch

    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


# --------------------------------------------------------------------------- checkpoint of a run


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
    """Model, best / averaged weights and optimiser state, committed by ``save_training_checkpoint``."""
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
        "config": cfg.resume_key(),
        "data_sha256": fingerprint,
    }
    states = {"model": net.state_dict(), "best": state.best_state or {}, "ema": state.ema_state or {}}
    save_training_checkpoint(folder, _FILES, epoch=epoch, states=states, opt=opt, record=record)


def _load_checkpoint(
    folder: Path,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: CnnTrainConfig,
    fingerprint: str,
) -> _RunState | None:
    """Restore model, optimiser and run state; None when the folder holds no checkpoint."""
    key = {"config": cfg.resume_key(), "data_sha256": fingerprint}
    found = load_training_checkpoint(folder, _FILES, key=key, modules={"model": net}, opt=opt)
    if found is None:
        return None
    record, states = found
    return _RunState(
        next_epoch=int(record["next_epoch"]),
        best_epoch=int(record["best_epoch"]),
        best_score=record["best_score"],
        since_best=int(record["epochs_since_best"]),
        finished=bool(record["finished"]),
        stopped_early=bool(record["stopped_early"]),
        history=list(record["history"]),
        best_state=states.get("best"),
        ema_state=states.get("ema"),
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
        counts = torch.bincount(y[train_idx], minlength=cfg.num_classes).double()
        weights = (1.0 / counts)[y[train_idx]]
        order = train_idx[torch.multinomial(weights, train_idx.numel(), replacement=True, generator=gen)]
    else:
        order = train_idx[torch.randperm(train_idx.numel(), generator=gen)]
    _stage(net, frozen=epoch < cfg.freeze_epochs)
    total, seen = 0.0, 0
    for start in range(0, order.numel(), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        if idx.numel() < 2:  # batch norm cannot train on a single sample
            continue
        if cfg.schedule == "onecycle":
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, epoch, start / order.numel())
        x = data[idx, variant[idx]].unsqueeze(1)
        x = augment(x, cfg, gen) if cfg.augment else resample_batch(x, cfg.input_size)
        x = zscore_batch(x).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(net(x), y[idx], weight=class_weights, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            _update_ema(ema, net, cfg.ema_decay)
        total += float(loss.detach()) * idx.numel()
        seen += idx.numel()
    return total / max(seen, 1)


def _stage(net: torch.nn.Module, *, frozen: bool) -> None:
    """Training mode for the epoch; with ``frozen``, only the classification layer learns.

    Frozen, every backbone module stays in eval mode (its BatchNorm statistics are not updated)
    and its parameters get no gradient, so AdamW leaves them (and their weight decay) alone; the
    next unfrozen epoch trains everything. Which epochs are frozen is a function of the epoch
    alone, so a resumed run freezes exactly the epochs an uninterrupted one would.
    """
    net.train()
    for name, child in net.named_children():
        if frozen and name not in {"fc", "dropout"}:
            child.eval()
    for name, param in net.named_parameters():
        param.requires_grad_(not frozen or name.startswith("fc."))


def _plain(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights in the standard (contiguous) memory layout."""
    return {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}


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
            x = zscore_batch(resample_batch(data[idx, 0].unsqueeze(1), cfg.input_size))
            logits.append(net(x.contiguous(memory_format=torch.channels_last)).double())
    out = torch.cat(logits)
    target = y[val_idx]
    loss = float(F.cross_entropy(out, target))
    if cfg.num_classes > 2:
        return loss, macro_ovr_auc(target.numpy(), torch.softmax(out, dim=1).numpy())
    prob = torch.softmax(out, dim=1)[:, 1].numpy()
    return loss, float(roc_auc_score(target.numpy(), prob))


def macro_ovr_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean over classes of the one-vs-rest AUC of ``prob[:, k]`` (a K-class network's monitor).

    Classes absent from (or alone in) the validation cases are left out of the mean (a small
    patient-level split can miss a rare class); NaN when no class has both sides.
    """
    from sklearn.metrics import roc_auc_score

    aucs = [
        float(roc_auc_score((y == k).astype(int), prob[:, k]))
        for k in range(prob.shape[1])
        if 0 < int((y == k).sum()) < y.size
    ]
    return float(np.mean(aucs)) if aucs else float("nan")


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
        labels: (N,) 0/1 labels (1 = positive class), or class indices 0..K-1 when
            ``config.num_classes`` is K > 2.
        config: training settings (defaults to ``CnnTrainConfig()``).
        checkpoint_dir: folder for per-epoch checkpoints; an existing checkpoint there is
            resumed (it must come from the same settings and crops).
        groups: (N,) patient ids; the inner validation split never splits a patient.
        progress: called as ``progress(fraction, message)`` after every epoch; an exception
            raised there stops training after the epoch's checkpoint was written.
        log: called with one line per epoch.
        init_state: initial weights (tensors or numpy arrays by state-dict name, e.g. from a
            safetensors file) instead of a random initialisation; checked name by name. With
            ``config.init`` "imagenet" it must be None: the backbone's ImageNet weights are read
            (``deep.pretrained``) and the classification layer is the seeded random one.

    Returns:
        The best epoch's weights, history and split.

    Raises:
        ConfigError: invalid settings, or a checkpoint from another run.
        InputError: crops/labels of the wrong shape, non-finite values or too few cases.
    """
    import torch

    cfg = config or CnnTrainConfig()
    cfg.validate()
    if cfg.init == "imagenet" and init_state is not None:
        raise ConfigError(
            "CNN training: init 'imagenet' and given initial weights both set the start; choose one"
        )
    data_np = as_variants(crops)
    y_np = as_labels(labels, data_np.shape[0], cfg.num_classes)
    groups_np = None if groups is None else np.asarray(groups)
    train_np, val_np = split_train_val(y_np, groups_np, cfg.val_fraction, cfg.seed, cfg.num_classes)
    fingerprint = crops_fingerprint(data_np, y_np, groups_np) if checkpoint_dir is not None else ""
    if init_state is not None and fingerprint:
        # A checkpoint of a run from other initial weights must not be resumed.
        fingerprint = f"{fingerprint}+init:{weights_digest(init_state)}"

    with torch_threads(cfg.num_threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = build_resnet(cfg.arch, num_classes=cfg.num_classes, in_channels=1)
        if cfg.init == "imagenet":
            from ..deep.pretrained import initial_state

            init_state = initial_state(cfg.arch, net)
        if init_state is not None:
            if cfg.num_classes > 2:
                init_state = _own_head(init_state, net)
            load_weights(net, init_state, cfg.arch, 1, cfg.num_classes, source="the initial CNN weights")
        # NHWC convolutions: about 1.8x faster per step on the CPU for the depthwise networks,
        # 1.15x for ResNet-18 (measured at 128 px, batch 32, 2 threads). Weights handed out are
        # made contiguous again (_plain).
        net = net.to(memory_format=torch.channels_last)
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
        state_dict=state.best_state or _plain(net),
        best_epoch=state.best_epoch,
        best_score=float("nan") if state.best_score is None or val_np.size == 0 else float(state.best_score),
        history=state.history,
        config=cfg,
        train_indices=train_np,
        val_indices=val_np,
        stopped_early=state.stopped_early,
        resumed_from_epoch=resumed_from,
    )


def _own_head(init_state: Mapping[str, Any], net: torch.nn.Module) -> dict[str, Any]:
    """A K-class network's start: the given backbone weights with its own seeded classification
    layer where the given one has another number of outputs (SimCLR's and two-class weights)."""
    own = net.state_dict()
    state = dict(init_state)
    for name in ("fc.weight", "fc.bias"):
        if name in state and tuple(np.shape(state[name])) != tuple(own[name].shape):
            state[name] = own[name].detach().clone()
    return state


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
        # n / (K n_k): each class weighs as much in the loss as a balanced cohort's would
        counts = np.bincount(y_np[train_np], minlength=cfg.num_classes).astype(np.float64)
        class_weights = torch.tensor(counts.sum() / (float(cfg.num_classes) * counts), dtype=torch.float32)

    eval_net = net
    if cfg.ema_decay > 0:
        if state.ema_state is None:
            state.ema_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        # A twin network evaluates the average (loaded before every use: no initialisation).
        eval_net = build_resnet(cfg.arch, num_classes=cfg.num_classes, in_channels=1, initialise=False)

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
            state.best_state = _plain(eval_net)
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


def train_cnn_ensemble(
    crops: np.ndarray,
    labels: np.ndarray,
    config: CnnTrainConfig,
    seeds: int,
    *,
    checkpoint_dir: Path | None = None,
    groups: np.ndarray | None = None,
    log: LogCallback | None = None,
    init_state: Mapping[str, Any] | None = None,
) -> TrainResult:
    """A seed ensemble: ``seeds`` networks from the same starting weights, seeds ``seed + m``.

    Each member differs in its classification layer's initialisation, its inner validation
    split, the order of the cases and the augmentation (all seeded); it is checkpointed in
    ``checkpoint_dir/member<m>`` and resumes like :func:`train_cnn`. One seed is exactly
    :func:`train_cnn` (same checkpoint folder).

    Returns:
        Member 0's result with the others in :attr:`TrainResult.members`; ``model()`` gives the
        ensemble (``deep.engines.EnsembleInference``).

    Raises:
        ConfigError: invalid settings, or several seeds from a random start (their channels
            would not correspond, so their features could not be averaged).
        InputError: as :func:`train_cnn`.
    """
    from dataclasses import replace

    if int(seeds) < 1:
        raise ConfigError(f"CNN seed ensemble: seeds must be at least 1, got {seeds}")
    if seeds > 1 and config.init == "scratch" and init_state is None:
        raise ConfigError(
            "CNN seed ensemble: several seeds need one shared starting point (init 'imagenet', "
            "SimCLR pretraining or a weights file); from random starts their features do not correspond"
        )
    results = []
    for m in range(int(seeds)):
        folder = checkpoint_dir
        if seeds > 1 and checkpoint_dir is not None:
            folder = Path(checkpoint_dir) / f"member{m}"
        member_log = log if seeds == 1 or log is None else (lambda line, m=m: log(f"member {m}: {line}"))
        results.append(
            train_cnn(
                crops,
                labels,
                replace(config, seed=config.seed + m),
                checkpoint_dir=folder,
                groups=groups,
                log=member_log,
                init_state=init_state,
            )
        )
    first = results[0]
    first.members = results[1:]
    return first
