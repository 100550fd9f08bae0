"""The numpy engine of MobileNetV2 / EfficientNet-Lite (mobile_numpy) and of seed ensembles against
the torch networks: last feature map, pooled vector, logits and Grad-CAM, on random and real crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import BundleError
from DLRPredictorLib.deep import engines, pretrained
from DLRPredictorLib.deep.deep_model import DeepModel, build_resnet
from DLRPredictorLib.deep.mobile_numpy import InvertedResidualInference, expected_shapes
from DLRPredictorLib.deep.weights import save_safetensors
from DLRPredictorLib.inputs.crops import CropSpec, crop_from_arrays
from test_resnet_numpy import _with_trained_batchnorm as _trained_like

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOBILE = ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _state(net) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def _torch_map(net, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net.feature_map(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)


def _assert_engine_matches(engine, net, x: np.ndarray) -> None:
    """Same tolerance as the ResNet engine (test_resnet_numpy): float32 rounding only."""
    import torch

    ref = _torch_map(net, x)
    act = engine.trunk(x)
    assert act.shape == ref.shape and act.dtype == np.float32
    scale = float(np.abs(ref).max())
    assert scale > 0.1
    assert float(np.abs(act - ref).max()) < 1e-5 * scale
    pooled, logits = engine.head(act)
    with torch.no_grad():
        logits_ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pooled, ref.mean(axis=(1, 2)), atol=1e-5 * scale)
    np.testing.assert_allclose(logits, logits_ref, atol=1e-4 * max(1.0, float(np.abs(logits_ref).max())))


@pytest.mark.parametrize("arch", MOBILE)
def test_expected_shapes_are_the_torch_state_dict_in_order(arch: str) -> None:
    net = build_resnet(arch, 3, 1, initialise=False)
    torch_shapes = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert list(expected_shapes(arch, 1, 3).items()) == torch_shapes


SHAPES = [(a, (2, 96, 96)) for a in MOBILE] + [("efficientnet_lite0", (1, 70, 97))]  # odd, non-square too


@pytest.mark.parametrize(("arch", "shape"), SHAPES)
def test_numpy_forward_matches_the_torch_network(arch: str, shape: tuple) -> None:
    import torch

    torch.manual_seed(0)
    net = _trained_like(build_resnet(arch, 2, 1))
    x = np.random.default_rng(4).normal(size=(shape[0], 1, *shape[1:])).astype(np.float32)
    _assert_engine_matches(InvertedResidualInference(_state(net), arch), net, x)


def _real_crop(case, size: int = 96) -> np.ndarray:
    from PIL import Image

    image = np.asarray(Image.open(case.image).convert("L"), dtype=np.float32)
    mask = np.asarray(Image.open(case.mask).convert("L")) > 0
    crop, _ = crop_from_arrays(image, mask, None, CropSpec(size=size))
    return crop


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "mobilenet_v2"])
def test_numpy_forward_matches_torch_with_imagenet_weights_on_real_crops(arch: str, busbra_cases) -> None:
    import torch

    torch.manual_seed(2)
    net = build_resnet(arch, 2, 1)
    net.load_state_dict(pretrained.initial_state(arch, net))
    net.eval()
    x = np.stack([_real_crop(c) for c in busbra_cases[:2]])[:, None]
    _assert_engine_matches(InvertedResidualInference(_state(net), arch), net, x)


def test_gradcam_equals_autograd_on_the_head_activations() -> None:
    import torch

    torch.manual_seed(8)
    net = _trained_like(build_resnet("efficientnet_lite0", 2, 1), seed=3)
    model = DeepModel(_state(net), "efficientnet_lite0")
    crop = np.random.default_rng(9).normal(size=(96, 96)).astype(np.float32)
    store = {}
    hook = net.head.register_forward_hook(lambda _m, _i, out: store.update(act=out))
    with torch.enable_grad():
        logits = net(torch.from_numpy(crop[None, None]))
        (grad,) = torch.autograd.grad(logits[0, 1], store["act"])
    hook.remove()
    raw = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["act"]).sum(dim=1))[0].detach().numpy()
    assert raw.shape == (3, 3) and raw.max() > raw.min()
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    feats, cam, prob = model.features_and_gradcam(crop)
    np.testing.assert_allclose(cam[::32, ::32], expected, atol=1e-5)  # cell (i, j) sits on pixel (32 i, 32 j)
    with torch.no_grad():
        pooled = net.pooled(torch.from_numpy(crop[None, None]))[0].numpy()
    np.testing.assert_allclose(feats, pooled, atol=1e-5)
    assert prob == pytest.approx(float(torch.softmax(logits.detach().double(), 1)[0, 1]), abs=1e-5)


def test_seed_ensemble_engine_averages_the_members_maps_and_heads(tmp_path: Path) -> None:
    import torch

    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(_trained_like(build_resnet("mobilenet_v2", 2, 1), seed=seed + 10))
    tensors = engines.ensemble_tensors([_state(n) for n in nets])
    path = save_safetensors(DeepModel(tensors, "mobilenet_v2", members=3), tmp_path / "cnn.safetensors")
    model = DeepModel.from_safetensors(path, "mobilenet_v2")  # the header says 3 members
    assert model.members == 3
    x = np.random.default_rng(5).normal(size=(2, 1, 64, 64)).astype(np.float32)
    maps = np.mean([_torch_map(n, x) for n in nets], axis=0)
    act = model.engine.trunk(x)
    scale = float(np.abs(maps).max())
    assert float(np.abs(act - maps).max()) < 1e-5 * scale
    fc_w = np.mean([n.fc.weight.detach().numpy() for n in nets], axis=0)
    fc_b = np.mean([n.fc.bias.detach().numpy() for n in nets], axis=0)
    pooled, logits = model.engine.head(act)
    np.testing.assert_allclose(pooled, maps.mean(axis=(1, 2)), atol=1e-5 * scale)
    np.testing.assert_allclose(logits, maps.mean(axis=(1, 2)) @ fc_w.T + fc_b, atol=1e-4)
    assert [type(n).__name__ for n in model.member_networks()] == ["InvertedResidualNet"] * 3
    with pytest.raises(BundleError, match="none of the 3"):
        DeepModel({**tensors, "member3.fc.bias": np.zeros(2, np.float32)}, "mobilenet_v2", members=3)
    with pytest.raises(BundleError, match="do not fit"):
        DeepModel(tensors, "efficientnet_lite0", members=3)


def test_weights_of_another_backbone_are_refused() -> None:
    net = build_resnet("efficientnet_lite0", 2, 1, initialise=False)
    with pytest.raises(BundleError, match="do not fit the declared network"):
        InvertedResidualInference(_state(net), "efficientnet_lite1", source="w.safetensors")
    with pytest.raises(BundleError, match="do not fit the declared network"):
        DeepModel(_state(net), "resnet18")
