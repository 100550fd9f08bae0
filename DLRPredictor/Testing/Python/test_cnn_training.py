"""CNN training: configuration, inner split, learning, best-epoch keeping, exact resume, variants."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError, InputError
from DLRPredictorLib.training.cnn import CHECKPOINT_JSON, learning_rate, train_cnn
from DLRPredictorLib.training.cnn_config import CnnTrainConfig, TrainResult
from DLRPredictorLib.training.cnn_data import split_train_val
from sklearn.metrics import roc_auc_score

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blob_task(n: int, seed: int, variants: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: noise plus a bright square in the top half; class 0: noise only (z-scored)."""
    rng = np.random.default_rng(seed)
    shape = (n, variants, SIZE, SIZE) if variants else (n, SIZE, SIZE)
    x = rng.normal(size=shape).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.flatnonzero(y == 1):
        r, c = rng.integers(2, 10), rng.integers(2, 24)
        x[i, ..., r : r + 6, c : c + 6] += 3.0
    # per-crop z-score, as crop_from_arrays delivers them
    mean = x.mean(axis=(-2, -1), keepdims=True)
    return ((x - mean) / x.std(axis=(-2, -1), keepdims=True)).astype(np.float32), y


def _tiny(**overrides: object) -> CnnTrainConfig:
    values = {
        "input_size": SIZE,
        "epochs": 3,
        "batch_size": 8,
        "lr": 1e-3,
        "warmup_epochs": 0,
        "patience": 10,
        "seed": 3,
        # one thread: on a shared CPU, OpenMP threads spin-waiting for each other cost far more
        "num_threads": 1,
    }
    values.update(overrides)
    return CnnTrainConfig(**values)


def _same_weights(a: TrainResult, b: TrainResult) -> bool:
    """Bit-identical weights. Only used between runs of train_cnn that the project makes
    reproducible: same crops, settings and seed, torch on ``num_threads`` (1 here) threads, resumed
    or not; their metrics (``_metrics``) are then equal to the last bit too."""
    import torch

    return a.state_dict.keys() == b.state_dict.keys() and all(
        torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict
    )


def _metrics(result: TrainResult) -> list[tuple[float, float, float]]:
    return [(h["train_loss"], h["val_loss"], h["val_auc"]) for h in result.history]


# --------------------------------------------------------------------------- configuration


def test_config_validation_names_the_bad_setting() -> None:
    with pytest.raises(ConfigError, match="vgg"):
        CnnTrainConfig(arch="vgg").validate()
    with pytest.raises(ConfigError, match="epochs"):
        CnnTrainConfig(epochs=0).validate()
    with pytest.raises(ConfigError, match="rrc_scale"):
        CnnTrainConfig(rrc_scale=(0.5, 1.5)).validate()
    with pytest.raises(ConfigError, match="schedule"):
        CnnTrainConfig(schedule="linear").validate()
    with pytest.raises(ConfigError, match="vertical_flip"):
        CnnTrainConfig.from_dict({"vertical_flip": True})


def test_config_round_trips_through_a_dict() -> None:
    cfg = CnnTrainConfig(arch="resnet34", rrc_scale=(0.6, 0.9), seed=11)
    again = CnnTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_learning_rate_warmup_and_cosine_endpoints() -> None:
    cfg = CnnTrainConfig(lr=1e-3, epochs=11, warmup_epochs=1, min_lr_fraction=0.01)
    assert learning_rate(cfg, 0) == pytest.approx(5e-4)
    assert learning_rate(cfg, 1) == pytest.approx(1e-3)
    assert learning_rate(cfg, 10) == pytest.approx(1e-5)
    lrs = [learning_rate(cfg, e) for e in range(1, 11)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    step = CnnTrainConfig(lr=1.0, schedule="step", step_size=2, step_gamma=0.5, warmup_epochs=0)
    # Exact: lr 1.0 times powers of gamma 0.5 are powers of two.
    assert [learning_rate(step, e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_one_cycle_matches_torch_one_cycle_lr() -> None:
    import torch

    cfg = CnnTrainConfig(lr=2e-3, epochs=3, schedule="onecycle")
    steps_per_epoch = 500
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, cycle_momentum=False
    )
    ours, theirs = [], []
    for epoch in range(cfg.epochs):
        for step in range(steps_per_epoch):
            ours.append(learning_rate(cfg, epoch, step / steps_per_epoch))
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            ref.step()
    # torch counts the rise in whole steps (peak at step round(0.3 * total) - 1) and we in the
    # position within the run (a pure function, for exact resumption): one step apart at most,
    # which at 1500 steps is under 0.5 % of the peak rate.
    assert np.allclose(ours, theirs, rtol=0, atol=cfg.lr * 0.005)
    assert max(ours) == pytest.approx(cfg.lr, rel=0.02) and ours[0] == pytest.approx(cfg.lr / 25)


def test_one_cycle_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    x, y = _blob_task(32, seed=3)
    cfg = _tiny(epochs=3, schedule="onecycle")
    uninterrupted = train_cnn(x, y, cfg)
    with pytest.raises(_Killed):
        train_cnn(x, y, cfg, checkpoint_dir=tmp_path, progress=kill_after_second_epoch)
    resumed = train_cnn(x, y, cfg, checkpoint_dir=tmp_path)
    # Same code path, same thread count, the rate a pure function of the step: bit-identical.
    assert _same_weights(uninterrupted, resumed)


# --------------------------------------------------------------------------- split


def test_group_split_keeps_patients_together_and_both_classes() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 2)  # two views per patient
    labels = np.repeat(rng.integers(0, 2, 30), 2)
    labels[:4] = [0, 0, 1, 1]
    train, val = split_train_val(labels, groups, val_fraction=0.2, seed=1)
    assert set(groups[train]).isdisjoint(groups[val])
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(60))
    assert set(labels[val]) == {0, 1} and set(labels[train]) == {0, 1}
    assert 6 <= val.size <= 18


def test_split_without_groups_is_stratified() -> None:
    labels = np.array([0] * 70 + [1] * 30)
    train, val = split_train_val(labels, None, val_fraction=0.2, seed=0)
    assert val.size == 20 and labels[val].sum() == 6
    assert np.intersect1d(train, val).size == 0


def test_split_rejects_a_class_with_a_single_case() -> None:
    with pytest.raises(InputError, match="2 cases of each class"):
        split_train_val(np.array([0] * 10 + [1]), None, 0.2, 0)


def test_bad_training_inputs_raise_input_error() -> None:
    x, y = _blob_task(12, 0)
    with pytest.raises(InputError, match=r"Labels must be 0 \(negative\) or 1 \(positive\)"):
        train_cnn(x, y * 2, _tiny())
    bad = x.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        train_cnn(bad, y, _tiny())
    with pytest.raises(InputError, match="shape"):
        train_cnn(x, y[:-1], _tiny())


# --------------------------------------------------------------------------- learning


def test_learns_a_separable_task_and_keeps_the_best_epoch() -> None:
    x, y = _blob_task(72, seed=0)
    result = train_cnn(x, y, _tiny(epochs=4), groups=np.arange(72) // 2)
    assert len(result.history) == 4
    assert result.best_score > 0.9  # validation AUC
    aucs = [h["val_auc"] for h in result.history]
    assert result.best_score == max(aucs)  # the best score is one of the history's numbers: exact
    assert result.history[result.best_epoch]["val_auc"] == result.best_score
    # the returned weights are those of the best epoch: they reproduce its validation AUC
    model = result.model()
    val_prob = model.probabilities(x[result.val_indices])
    assert roc_auc_score(y[result.val_indices], val_prob) == pytest.approx(result.best_score, abs=1e-9)
    # and they generalise to fresh cases
    xt, yt = _blob_task(40, seed=99)
    assert roc_auc_score(yt, model.probabilities(xt)) > 0.85


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    x, y = _blob_task(24, seed=1)
    a = train_cnn(x, y, _tiny(epochs=1))
    b = train_cnn(x, y, _tiny(epochs=1))
    c = train_cnn(x, y, _tiny(epochs=1, seed=4))
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


class _Killed(Exception):
    pass


def kill_after_second_epoch(fraction: float, message: str) -> None:
    """A progress callback that stops a 3-epoch run after its second epoch's checkpoint."""
    if fraction >= 2 / 3 - 1e-9:
        raise _Killed(message)


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    x, y = _blob_task(32, seed=2)
    cfg = _tiny(epochs=3)
    uninterrupted = train_cnn(x, y, cfg)

    with pytest.raises(_Killed):
        train_cnn(x, y, cfg, checkpoint_dir=tmp_path, progress=kill_after_second_epoch)
    record = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    assert record["epoch"] == 1 and record["next_epoch"] == 2 and not record["finished"]
    assert len(list(tmp_path.glob("checkpoint_epoch*.safetensors"))) == 1
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pt"))

    lines: list[str] = []
    resumed = train_cnn(x, y, cfg, checkpoint_dir=tmp_path, log=lines.append)
    assert resumed.resumed_from_epoch == 2
    assert any("resuming" in line for line in lines)
    assert _same_weights(uninterrupted, resumed)
    # Exact: the resumed run restores every state and repeats the same seeded, single-threaded computation.
    assert _metrics(uninterrupted) == _metrics(resumed)
    assert resumed.best_epoch == uninterrupted.best_epoch

    # a finished run in the folder is returned without training again
    again = train_cnn(x, y, cfg, checkpoint_dir=tmp_path)
    assert again.resumed_from_epoch == 3
    assert _same_weights(uninterrupted, again)


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    x, y = _blob_task(16, seed=3)
    train_cnn(x, y, _tiny(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="other settings or other crops"):
        train_cnn(x, y, _tiny(epochs=1, lr=5e-4), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="other settings or other crops"):
        train_cnn(x[::-1].copy(), y[::-1].copy(), _tiny(epochs=1), checkpoint_dir=tmp_path)


def test_variants_are_sampled_for_training_and_variant_0_validates() -> None:
    base, y = _blob_task(24, seed=4)
    cfg = _tiny(epochs=2)
    plain = train_cnn(base, y, cfg)
    same = np.stack([base, base], axis=1)
    assert _same_weights(plain, train_cnn(same, y, cfg))

    _, val = split_train_val(y, None, cfg.val_fraction, cfg.seed)
    noisy_val = same.copy()
    noisy_val[val, 1] = np.random.default_rng(0).normal(size=noisy_val[val, 1].shape)
    # validation cases are never trained on and validate on variant 0 only
    with_noisy_val = train_cnn(noisy_val, y, cfg)
    assert _same_weights(plain, with_noisy_val)
    # Exact: validation cases never reach the optimiser, and the same seeded computation gives
    # the same digits.
    assert _metrics(plain) == _metrics(with_noisy_val)

    train = np.setdiff1d(np.arange(24), val)
    noisy_train = same.copy()
    noisy_train[train, 1] = np.random.default_rng(1).normal(size=noisy_train[train, 1].shape)
    assert not _same_weights(plain, train_cnn(noisy_train, y, cfg))  # variant 1 is used


def test_balanced_sampler_and_loss_monitor_run() -> None:
    x, y = _blob_task(24, seed=5)
    result = train_cnn(x, y, _tiny(epochs=2, balance="sampler", monitor="loss", val_fraction=0.25))
    losses = [h["val_loss"] for h in result.history]
    assert result.best_score == pytest.approx(-min(losses))
    assert result.val_indices.size == 6


def test_no_validation_keeps_the_last_epoch() -> None:
    x, y = _blob_task(16, seed=6)
    result = train_cnn(x, y, _tiny(epochs=2, val_fraction=0.0))
    assert result.val_indices.size == 0 and result.best_epoch == 1
    assert np.isnan(result.best_score)


def test_training_starts_from_given_initial_weights() -> None:
    from safetensors.numpy import load
    from safetensors.torch import save

    crops, labels = _blob_task(24, seed=5)
    donor = train_cnn(crops, labels, _tiny(epochs=1, seed=99))
    init = load(save({k: v.contiguous() for k, v in donor.state_dict.items()}))  # as read from a file
    # A vanishing learning rate leaves the convolution weights where they started.
    from_init = train_cnn(crops, labels, _tiny(epochs=1, lr=1e-12, seed=1), init_state=init)
    scratch = train_cnn(crops, labels, _tiny(epochs=1, lr=1e-12, seed=1))
    conv = "conv1.weight"
    assert np.allclose(from_init.state_dict[conv].numpy(), init[conv], atol=1e-9)
    assert not np.allclose(scratch.state_dict[conv].numpy(), init[conv], atol=1e-3)


# --------------------------------------------------------------------------- weight averaging


def test_weight_average_is_validated_and_kept_without_changing_the_optimisation() -> None:
    with pytest.raises(ConfigError, match="ema_decay"):
        CnnTrainConfig(ema_decay=1.0).validate()
    x, y = _blob_task(48, seed=8)
    groups = np.arange(48) // 2
    # two epochs: the average differs from the raw weights from the first epoch on
    plain = train_cnn(x, y, _tiny(epochs=2), groups=groups)
    averaged = train_cnn(x, y, _tiny(epochs=2, ema_decay=0.8), groups=groups)
    # Exact: the average only watches: the optimiser sees the same batches and losses (the same seeded,
    # single-threaded computation, so the same digits).
    assert [h["train_loss"] for h in plain.history] == [h["train_loss"] for h in averaged.history]
    # Validation and the kept weights are the average's, not the raw weights' (exact inequality:
    # any difference at all shows it).
    assert [h["val_loss"] for h in plain.history] != [h["val_loss"] for h in averaged.history]
    assert not _same_weights(plain, averaged)
    model = averaged.model()
    val_prob = model.probabilities(x[averaged.val_indices])
    auc = roc_auc_score(y[averaged.val_indices], val_prob)
    assert auc == pytest.approx(averaged.best_score, abs=1e-9)


def test_weight_average_resumes_exactly(tmp_path: Path) -> None:
    x, y = _blob_task(32, seed=9)
    cfg = _tiny(epochs=3, ema_decay=0.9)
    uninterrupted = train_cnn(x, y, cfg)

    with pytest.raises(_Killed):
        train_cnn(x, y, cfg, checkpoint_dir=tmp_path, progress=kill_after_second_epoch)
    resumed = train_cnn(x, y, cfg, checkpoint_dir=tmp_path)
    assert resumed.resumed_from_epoch == 2
    assert _same_weights(uninterrupted, resumed)
    # Exact: the resumed run restores every state and repeats the same seeded, single-threaded computation.
    assert _metrics(uninterrupted) == _metrics(resumed)
