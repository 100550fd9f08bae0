"""Training options of the backbones: ImageNet starts, staged fine-tuning, seed ensembles, the config
keys, and a real EfficientNet-Lite0 bundle trained, verified and applied without torch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError
from DLRPredictorLib.deep import pretrained
from DLRPredictorLib.deep.backbones import backbone
from DLRPredictorLib.inputs.crops import CropSpec, crop_from_arrays
from DLRPredictorLib.training.cnn import train_cnn, train_cnn_ensemble
from DLRPredictorLib.training.cnn_config import CnnTrainConfig
from DLRPredictorLib.training.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _balanced(cases, n: int):
    benign = [c for c in cases if c.label == 0][: n // 2]
    malignant = [c for c in cases if c.label == 1][: n // 2]
    return benign + malignant


def _crops(cases, size: int = 64) -> np.ndarray:
    from PIL import Image

    out = []
    for case in cases:
        image = np.asarray(Image.open(case.image).convert("L"), dtype=np.float32)
        mask = np.asarray(Image.open(case.mask).convert("L")) > 0
        out.append(crop_from_arrays(image, mask, None, CropSpec(size=size))[0])
    return np.stack(out)


def _quick(**changes) -> CnnTrainConfig:
    base = dict(
        arch="efficientnet_lite0", init="imagenet", input_size=64, epochs=1, batch_size=8,
        val_fraction=0.0, warmup_epochs=0, num_threads=1,
    )  # fmt: skip
    base.update(changes)
    return CnnTrainConfig(**base)


def test_staged_fine_tuning_keeps_the_backbone_while_frozen(busbra_cases) -> None:
    import torch

    cases = _balanced(busbra_cases, 12)
    crops, labels = _crops(cases), np.array([c.label for c in cases])
    frozen = train_cnn(crops, labels, _quick(freeze_epochs=1)).state_dict
    torch.manual_seed(0)  # the seed train_cnn builds its network with: the same fresh fc layer
    start = pretrained.initial_state("efficientnet_lite0", _fresh())
    backbone_names = [k for k in start if not k.startswith("fc.")]
    # Frozen: no gradient and eval-mode BatchNorm, so the backbone is the ImageNet start exactly.
    assert all(torch.equal(frozen[k], start[k]) for k in backbone_names)
    assert not torch.equal(frozen["fc.weight"], start["fc.weight"])
    whole = train_cnn(crops, labels, _quick()).state_dict
    changed = [k for k in backbone_names if not torch.equal(whole[k], start[k])]
    assert "stem.conv.weight" in changed and "head.bn.running_mean" in changed


def _fresh():
    from DLRPredictorLib.deep.deep_model import build_resnet

    return build_resnet("efficientnet_lite0", 2, 1)


def test_seed_ensembles_need_a_shared_start() -> None:
    crops = np.random.default_rng(0).normal(size=(8, 64, 64)).astype(np.float32)
    labels = np.array([0, 1] * 4)
    with pytest.raises(ConfigError, match="shared starting point"):
        train_cnn_ensemble(crops, labels, _quick(init="scratch", arch="resnet18"), 2)
    with pytest.raises(ConfigError, match="choose one"):
        train_cnn(crops, labels, _quick(), init_state={"fc.bias": np.zeros(2, np.float32)})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cnn: {arch: resnet50, init: imagenet}\n", "no ImageNet weights are installed for resnet50"),
        ("cnn: {arch: efficientnet_lite0, seeds: 3}\n", "shared starting point"),
        ("cnn: {init: simclr}\n", "pretrain.epochs"),
        ("cnn: {init: imagenet, arch: mobilenet_v2, pretrain: {epochs: 2}}\n", "contradicts"),
        ("cnn: {arch: efficientnet_lite0, init: imagenet, freeze_epochs: -1}\n", "freeze_epochs"),
        ("cnn: {arch: efficientnet_b7}\n", "cnn.arch"),
        ("cnn: {schedule: linear}\n", "'cnn.schedule' is 'linear'; choose one of cosine, step, constant"),
    ],
)
def test_config_refuses_contradictory_starts(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_config_init_file_is_the_init_weights_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cnn: {arch: resnet34, init: start.safetensors, seeds: 2, freeze_epochs: 1}\n")
    cfg = load_config(path)
    assert cfg.cnn.init_weights == "start.safetensors" and cfg.cnn.seeds == 2


LITE_CONFIG = """
bundle_id: lite-test
title: EfficientNet-Lite0 test bundle (BUS-BRA)
seed: 0
split: {test_fraction: 0.25, folds: 2}
cnn: {arch: efficientnet_lite0, init: imagenet, seeds: 2, input_size: 64, epochs: 1, batch_size: 8,
      patience: 1, val_fraction: 0.0, num_threads: 2}
contours: {variants: [exact]}
selection: {max_features: 6}
model: {grid_search: false, pca_components: 4}
radiomics_parameters: original_only.yaml
"""


def test_efficientnet_lite_bundle_trains_verifies_and_predicts_without_torch(
    tmp_path: Path, busbra_cases
) -> None:
    """One epoch of a 2-seed EfficientNet-Lite0 ensemble on 24 real cases, exported, verified, applied."""
    from conftest import original_only_parameters
    from DLRPredictorLib.bundle.verify import load_bundle
    from DLRPredictorLib.inference.pipeline import FrozenPipeline
    from DLRPredictorLib.training import trainer

    cases = _balanced(busbra_cases, 24)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "image", "mask", "label"])
        for c in cases:
            w.writerow([c.case_id, c.image, c.mask, "malignant" if c.label else "benign"])
    (tmp_path / "lite.yaml").write_text(LITE_CONFIG)
    (tmp_path / "original_only.yaml").write_text(original_only_parameters())
    out = trainer.train_from_manifest(
        manifest, tmp_path / "bundle", tmp_path / "lite.yaml", work_dir=tmp_path / "work", log=lambda _l: None
    )
    bundle = load_bundle(out)  # every file's checksum checked against the manifest
    entry = bundle.manifest["backbone"]
    source = backbone("efficientnet_lite0").weights
    assert source is not None
    assert entry["arch"] == "efficientnet_lite0" and entry["init"] == "imagenet" and entry["members"] == 2
    assert entry["pretrained"]["sha256"] == source.sha256 and entry["pretrained"]["licence"] == "Apache-2.0"
    assert source.sha256 in bundle.read_text("model_card.md")

    model = FrozenPipeline.from_bundle(bundle).load_deep_model(bundle)
    assert model.members == 2 and model.arch == "efficientnet_lite0"
    crops = _crops(busbra_cases[30:32])  # cases the bundle never saw
    feats = model.features(crops)
    import torch

    with torch.no_grad():
        maps = [net.feature_map(torch.from_numpy(crops[:, None])) for net in model.member_networks()]
    reference = torch.stack(maps).mean(dim=0).mean(dim=(2, 3)).numpy()
    scale = float(np.abs(reference).max())
    assert scale > 0.1
    np.testing.assert_allclose(feats, reference, atol=1e-5 * scale)

    from DLRPredictorLib import api
    from PIL import Image

    case = busbra_cases[30]
    image = np.asarray(Image.open(case.image).convert("L"))
    mask = (np.asarray(Image.open(case.mask).convert("L")) > 0).astype(np.uint8)
    result = api.predict_arrays(image, mask, bundle_path=out)  # the whole prediction, heatmap included
    assert 0.0 <= result.probability <= 1.0 and np.isfinite(result.signature_scores["dl"])
    assert result.heatmap is not None and result.heatmap.shape == (1, *image.shape)
