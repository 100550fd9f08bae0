"""Self-supervised (SimCLR) pretraining of the embedded ResNet on unlabelled lesion crops.

No pretrained ImageNet weights can be obtained offline, and a ResNet trained from scratch on a
few thousand crops starts from nothing. SimCLR (Chen et al., ICML 2020) first teaches the
network what stays the same across two augmented views of one crop: a 2-layer projection head
on the average-pooled features and the NT-Xent loss, each view having to pick its partner among
the 2N - 1 other views of the batch. Labels are never read, so pretraining on every training
crop leaks no label into the cross-fitted networks; held-out crops must not be passed in.

Views are the CNN trainer's own augmentation (``cnn_data.augment``) with a wider crop
scale. With several contour variants per case (e.g. exact outline and moment-matched ellipse),
each view draws its own variant, so a rough crop and the exact crop of one lesion are positives:
the network learns features that do not hinge on the precise outline.

As in ``cnn``, every random draw of an epoch comes from a generator seeded by (seed,
epoch) and the learning rate is a pure function of the epoch: a run killed after any epoch
resumes from its checkpoint (safetensors + JSON, nothing pickled) to exactly the same weights
(same machine and thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import InputError
from ..deep.deep_model import build_resnet, check_arch, feature_dim
from .checkpoints import (
    CheckpointFiles,
    load_training_checkpoint,
    save_training_checkpoint,
    torch_threads,
    weights_digest,
)
from .cnn_config import CnnTrainConfig, SettingCheck, check_settings, optimiser_checks, rrc_scale_check
from .cnn_data import as_variants, augment, zscore_batch

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

CHECKPOINT_FORMAT = "dlrpredictor-ssl-checkpoint-v1"
CHECKPOINT_JSON = "ssl_checkpoint.json"
_FILES = CheckpointFiles(
    fmt=CHECKPOINT_FORMAT, stem="ssl_epoch", json_name=CHECKPOINT_JSON, what="pretraining"
)
PROJECTION_DIM = 128


@dataclass
class SslConfig:
    """Settings of one SimCLR pretraining run.

    Attributes:
        arch: ResNet architecture (as the CNN it initialises).
        input_size: side of the crops and of the network input.
        epochs: pretraining epochs (cosine learning-rate schedule over them).
        batch_size: cases per step; each gives two views, so the loss sees 2 x batch_size views.
        lr: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        temperature: NT-Xent temperature.
        rrc_scale: area range of the views' random resized crop (wider than the classifier's).
        seed: seeds initialisation, batch order, variant choice and augmentation.
        num_threads: torch CPU threads (None leaves the caller's setting).
    """

    arch: str = "resnet18"
    input_size: int = 96
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    rrc_scale: tuple[float, float] = (0.35, 1.0)
    seed: int = 42
    num_threads: int | None = None

    def validate(self) -> None:
        """Raises ConfigError naming the first invalid setting."""
        check_arch(self.arch)
        check_settings(self, "self-supervised pretraining", _ssl_checks)

    def key(self) -> dict[str, Any]:
        """The settings that decide the result (a checkpoint resumes only under the same key)."""
        values = asdict(self)
        values.pop("num_threads")  # the thread count does not change the result
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _ssl_checks(cfg: SslConfig) -> list[SettingCheck]:
    temperature = ("temperature", math.isfinite(cfg.temperature) and cfg.temperature > 0, "> 0")
    return [*optimiser_checks(cfg), temperature, rrc_scale_check(cfg)]


@dataclass
class SslResult:
    """Outcome of :func:`pretrain_simclr`.

    Attributes:
        state_dict: the ResNet's weights by state-dict name (numpy arrays), ready for
            ``train_cnn(init_state=...)``. The classification layer keeps its random
            initialisation: pretraining never touches it.
        history: one dict per epoch: epoch (1-based), lr, loss, seconds.
        resumed_from_epoch: epochs already done in the checkpoint this call resumed from (the
            first epoch run is this + 1; equal to ``epochs`` when it was finished), or None.
    """

    state_dict: dict[str, np.ndarray]
    history: list[dict[str, float]]
    resumed_from_epoch: int | None = None

    def digest(self) -> str:
        """sha256 over the weights (names and bytes), to compare two runs.

        The same digest keys the CNN checkpoints that start from these weights.
        """
        return weights_digest(self.state_dict)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each of the 2N views must pick its partner among the 2N - 1 others."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def learning_rate(cfg: SslConfig, epoch: int) -> float:
    """Cosine schedule of a 0-based epoch, from ``lr`` towards 0 (a pure function: exact resume)."""
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))


def _as_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """The CNN trainer's crop checks (``cnn_data.as_variants``), and the network's input size."""
    arr = as_variants(crops)
    if arr.shape[2:] != (size, size):
        raise InputError(
            f"self-supervised pretraining needs crops shaped (cases, variants, {size}, {size}) "
            f"or (cases, {size}, {size}); got {np.shape(crops)}"
        )
    return arr


def _fingerprint(data: np.ndarray, cfg: SslConfig) -> str:
    h = hashlib.sha256(json.dumps(cfg.key(), sort_keys=True).encode())
    h.update(repr(data.shape).encode())
    h.update(data.data.cast("B"))  # the bytes in place (the crops are C-contiguous)
    return h.hexdigest()


def pretrain_simclr(
    crops: np.ndarray,
    config: SslConfig | None = None,
    *,
    checkpoint_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> SslResult:
    """Pretrain a grayscale ResNet with SimCLR on unlabelled lesion crops.

    Args:
        crops: (N, V, size, size) z-scored crops with V contour variants per case (each view
            draws one), or (N, size, size).
        config: settings (defaults to ``SslConfig()``).
        checkpoint_dir: folder for the per-epoch checkpoint; one there from the same settings and
            crops is resumed, one from other settings or crops is refused.
        log: called with one line per epoch.

    Returns:
        The backbone weights and the loss history.

    Raises:
        ConfigError: invalid settings, or a checkpoint from another run.
        InputError: crops of the wrong shape, non-finite values, or fewer cases than a batch.
    """
    import torch

    cfg = config or SslConfig()
    cfg.validate()
    data_np = _as_crops(crops, cfg.input_size)
    if data_np.shape[0] < cfg.batch_size:
        raise InputError(
            f"self-supervised pretraining needs at least batch_size={cfg.batch_size} cases; "
            f"got {data_np.shape[0]}"
        )
    fingerprint = _fingerprint(data_np, cfg)
    # The views: the classifier's augmentation with the wider crop scale
    low, high = cfg.rrc_scale
    view_cfg = replace(CnnTrainConfig(arch=cfg.arch, input_size=cfg.input_size), rrc_scale=(low, high))
    with torch_threads(cfg.num_threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = build_resnet(cfg.arch, num_classes=2, in_channels=1)
            width = feature_dim(cfg.arch)  # the fc layer's input: the average-pooled features
            nn = torch.nn
            head = nn.Sequential(
                nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, PROJECTION_DIM)
            )
        params = list(net.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
        history: list[dict[str, float]] = []
        start = 0
        if folder is not None:
            loaded = _load_checkpoint(folder, net, head, opt, fingerprint)
            if loaded is not None:
                start, history = loaded
                if log and start < cfg.epochs:
                    log(f"resuming self-supervised pretraining at epoch {start + 1} from {folder}")
        data = torch.from_numpy(data_np)
        for epoch in range(start, cfg.epochs):
            t0 = time.time()
            lr = learning_rate(cfg, epoch)
            loss = _epoch(net, head, opt, data, cfg=cfg, view_cfg=view_cfg, epoch=epoch, lr=lr)
            seconds = round(time.time() - t0, 1)
            history.append({"epoch": epoch + 1, "lr": lr, "loss": loss, "seconds": seconds})
            if folder is not None:
                _save_checkpoint(
                    folder, (net, head, opt), epoch=epoch, history=history, fingerprint=fingerprint
                )
            if log:
                log(f"SimCLR epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, lr {lr:.2e}, {seconds:.0f} s")
    state = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    return SslResult(state, history, resumed_from_epoch=start or None)


def _epoch(
    net: Any,  # a deep.resnet ResNet (its class is built lazily, with torch): net.pooled
    head: torch.nn.Module,
    opt: torch.optim.Optimizer,
    data: torch.Tensor,
    *,
    cfg: SslConfig,
    view_cfg: CnnTrainConfig,
    epoch: int,
    lr: float,
) -> float:
    """One pass over the crops in batches of ``batch_size`` (the last partial batch is dropped)."""
    import torch

    for group in opt.param_groups:
        group["lr"] = lr
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    n = data.shape[0]
    order = torch.randperm(n, generator=gen)
    steps = n // cfg.batch_size
    net.train()
    head.train()
    total = 0.0
    for s in range(steps):
        idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
        views = []
        for _ in range(2):
            variant = torch.randint(data.shape[1], (idx.numel(),), generator=gen)
            views.append(zscore_batch(augment(data[idx, variant].unsqueeze(1), view_cfg, gen)))
        loss = nt_xent(head(net.pooled(views[0])), head(net.pooled(views[1])), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
    return total / steps


def _save_checkpoint(
    folder: Path,
    modules: tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer],
    *,
    epoch: int,
    history: list[dict[str, float]],
    fingerprint: str,
) -> None:
    """Network, head and optimiser state, committed by ``checkpoints.save_training_checkpoint``."""
    net, head, opt = modules
    record = {"next_epoch": epoch + 1, "history": history, "data_sha256": fingerprint}
    states = {"net": net.state_dict(), "head": head.state_dict()}
    save_training_checkpoint(folder, _FILES, epoch=epoch, states=states, opt=opt, record=record)


def _load_checkpoint(
    folder: Path,
    net: torch.nn.Module,
    head: torch.nn.Module,
    opt: torch.optim.Optimizer,
    fingerprint: str,
) -> tuple[int, list[dict[str, float]]] | None:
    """Restore network, head and optimiser; (next epoch, history), or None without a checkpoint."""
    key = {"data_sha256": fingerprint}
    found = load_training_checkpoint(folder, _FILES, key=key, modules={"net": net, "head": head}, opt=opt)
    if found is None:
        return None
    record, _ = found
    return int(record["next_epoch"]), list(record["history"])
