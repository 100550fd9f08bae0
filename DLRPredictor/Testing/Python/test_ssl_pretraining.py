"""SimCLR pretraining: the loss, learning, untouched classifier layer, determinism, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError, InputError
from DLRPredictorLib.training.ssl import CHECKPOINT_JSON, SslConfig, nt_xent, pretrain_simclr

SIZE = 32

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crops(n: int = 24, seed: int = 0) -> np.ndarray:
    """(n, 2, SIZE, SIZE) z-scored crops: a bright blob per case, its second variant shifted."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, SIZE, SIZE)).astype(np.float32)
    for i in range(n):
        r, c = rng.integers(4, 20, size=2)
        x[i, 0, r : r + 8, c : c + 8] += 3.0
        x[i, 1, r + 1 : r + 9, c : c + 8] += 3.0
    mean = x.mean(axis=(-2, -1), keepdims=True)
    return ((x - mean) / x.std(axis=(-2, -1), keepdims=True)).astype(np.float32)


def _tiny(**overrides: object) -> SslConfig:
    values = {"input_size": SIZE, "epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 5, "num_threads": 1}
    values.update(overrides)
    return SslConfig(**values)


def test_settings_are_validated_by_name() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        _tiny(temperature=0).validate()
    with pytest.raises(ConfigError, match="rrc_scale"):
        _tiny(rrc_scale=(0.5, 1.2)).validate()
    with pytest.raises(ConfigError, match="vgg"):
        _tiny(arch="vgg").validate()


def test_nt_xent_matches_its_formula_and_rewards_matching_views() -> None:
    import torch

    rng = np.random.default_rng(1)
    z1 = rng.normal(size=(4, 6))
    z2 = z1 + 0.1 * rng.normal(size=(4, 6))
    loss = float(nt_xent(torch.tensor(z1), torch.tensor(z2), 0.5))
    # by hand: cosine similarities over the 8 views, each row's softmax at its partner
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / 0.5
    np.fill_diagonal(sim, -np.inf)
    partner = np.r_[np.arange(4, 8), np.arange(0, 4)]
    expected = np.mean([np.log(np.exp(sim[i]).sum()) - sim[i, partner[i]] for i in range(8)])
    assert loss == pytest.approx(expected, rel=1e-10)
    shuffled = float(nt_xent(torch.tensor(z1), torch.tensor(z2[[1, 2, 3, 0]]), 0.5))
    assert loss < shuffled


def test_pretraining_lowers_the_loss_and_leaves_the_classifier_layer_alone() -> None:
    import torch
    from DLRPredictorLib.deep.deep_model import build_resnet

    result = pretrain_simclr(_crops(32), _tiny(epochs=4))
    losses = [h["loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert losses[-1] < losses[0]
    # 2 x 8 views: chance level of the loss is log(15)
    assert losses[0] == pytest.approx(math.log(15), abs=0.6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        net = build_resnet("resnet18", num_classes=2, in_channels=1)
    init = {k: v.numpy() for k, v in net.state_dict().items()}
    assert result.state_dict.keys() == init.keys()
    # Bit-identical: the same seeded build draws the same initial weights, and fc is never updated.
    np.testing.assert_array_equal(result.state_dict["fc.weight"], init["fc.weight"])
    # Exact inequality: any change at all shows training moved the weights.
    assert not np.array_equal(result.state_dict["conv1.weight"], init["conv1.weight"])


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    crops = _crops()
    a = pretrain_simclr(crops, _tiny(epochs=1))
    b = pretrain_simclr(crops, _tiny(epochs=1))
    c = pretrain_simclr(crops, _tiny(epochs=1, seed=6))
    # Identical digests: the same seeded, single-threaded run twice (the project's reproducibility).
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    crops = _crops()
    whole = pretrain_simclr(crops, _tiny(epochs=3))

    def stop_after_epoch_2(line: str) -> None:
        if line.startswith("SimCLR epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_simclr(crops, _tiny(epochs=3), checkpoint_dir=tmp_path, log=stop_after_epoch_2)
    record = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    assert record["next_epoch"] == 2
    lines: list[str] = []
    resumed = pretrain_simclr(crops, _tiny(epochs=3), checkpoint_dir=tmp_path, log=lines.append)
    assert resumed.resumed_from_epoch == 2  # as train_cnn counts: epochs done before this call
    assert lines[0].startswith("resuming self-supervised pretraining at epoch 3")
    # Identical digests and losses: a resumed run reproduces the uninterrupted one (by design).
    assert resumed.digest() == whole.digest()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]

    # a finished checkpoint is returned as it is: no epoch runs, nothing is logged
    lines.clear()
    again = pretrain_simclr(crops, _tiny(epochs=3), checkpoint_dir=tmp_path, log=lines.append)
    assert again.resumed_from_epoch == 3 and not lines
    assert again.digest() == whole.digest()


def test_a_checkpoint_of_other_crops_or_settings_is_refused(tmp_path: Path) -> None:
    pretrain_simclr(_crops(), _tiny(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="other settings or other crops"):
        pretrain_simclr(_crops(seed=1), _tiny(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="other settings or other crops"):
        pretrain_simclr(_crops(), _tiny(epochs=1, temperature=0.5), checkpoint_dir=tmp_path)


def test_bad_crops_raise_input_errors() -> None:
    with pytest.raises(InputError, match="shaped"):
        pretrain_simclr(np.zeros((24, 2, SIZE, SIZE + 1), np.float32), _tiny())
    bad = _crops()
    bad[3, 1, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pretrain_simclr(bad, _tiny())
    with pytest.raises(InputError, match="at least batch_size=8"):
        pretrain_simclr(_crops(5), _tiny())
